#!/usr/bin/env python
"""Train SparseViT for image manipulation localization with 🤗 Accelerate.

    accelerate launch examples/run_iml.py                       # built-in synthetic data, small model
    accelerate launch examples/run_iml.py \\
        --train_data /data/catnet_train.json --eval_data casia=/data/CASIAv1 columbia=/data/Columbia \\
        --uniformer_checkpoint uniformer_base_ls_in1k.pth --output_dir outputs/sparsevit

One process per device through `accelerate launch` (DDP on several GPUs or machines; FSDP / DeepSpeed from the
accelerate config), also plain `python examples/run_iml.py`. The defaults are the official recipe: AdamW (lr 2e-4,
betas 0.9/0.999, weight decay 0.05 except biases, norms, layer scales and fusion weights), 4 warm-up epochs then a
per-step half-cycle cosine to 5e-7, batch 16 per device, 200 epochs, seed 42, the official augmentations, 512 px.
Without --train_data it trains the `small` preset at 256 px on the built-in synthetic data set and evaluates on its
held-out split. See `python examples/run_iml.py --help` for every option.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("run_iml")

SYNTHETIC_TRAIN = "synthetic:train"
SYNTHETIC_EVAL = "synthetic=synthetic:test:num_images=200"
MODEL_PRESET_NAMES = ("published", "small", "tiny")  # training.MODEL_PRESETS (kept here so --help needs no torch)
PERTURBATION_HELP = "jpeg:Q1,Q2 (quality 1-100), blur:K1,K2 (odd kernel >= 3), noise:S1,S2 (sigma, 8-bit units)"


# ------------------------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only (not None / False, whose meaning the help text gives)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train SparseViT (image manipulation localization) with Hugging Face Accelerate.",
        formatter_class=_HelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_preset", choices=MODEL_PRESET_NAMES, default=None,
        help="size of a fresh model: published (the paper's), small (quick runs), tiny (tests). Default: published, "
        "or small for the built-in synthetic data",
    )
    model.add_argument("--model_name_or_path", default=None, help="save_pretrained folder (or Hub id) to fine-tune")
    model.add_argument(
        "--uniformer_checkpoint", default=None,
        help="ImageNet UniFormer-B checkpoint (uniformer_base[_ls]_in1k.pth) to initialise the backbone from "
        "(published size only)",
    )
    model.add_argument(
        "--official_reinit", action="store_true",
        help="after loading --uniformer_checkpoint, re-initialise Linear and LayerNorm layers as the official code does",
    )
    model.add_argument("--drop_path_rate", type=float, default=None, help="stochastic depth rate (default: the preset's)")
    model.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--train_data", nargs="+", action="extend", default=None, metavar="SPEC",
        help="training data: Tp/+Gt/ folder, JSON pair list, combined [kind, path] JSON, datasets folder or Hub id, "
        "or synthetic[:split][:key=value,...]; several specs are combined and sampled evenly",
    )
    data.add_argument(
        "--eval_data", nargs="+", action="extend", default=None, metavar="NAME=SPEC",
        help="named evaluation sets, e.g. casia=/data/CASIAv1 synthetic=synthetic:test",
    )
    data.add_argument(
        "--samples_per_dataset", type=int, default=None,
        help="samples drawn from each training part per epoch (default: one pass for a single data set, 1840 per "
        "part, the CAT-Net protocol, for combined data)",
    )
    data.add_argument(
        "--synthetic_options", type=json.loads, default=None, metavar="JSON",
        help='generation parameters of synthetic data sets (SyntheticTamperingConfig), e.g. \'{"region_fraction": [0.05, 0.3]}\'',
    )
    data.add_argument("--image_size", type=int, default=None, help="model input side in pixels (default 512; 256 for synthetic)")
    data.add_argument("--no_augmentation", action="store_true", help="train without the official augmentations")
    data.add_argument("--skip_corrupt", action="store_true", help="drop unreadable samples of folder / JSON data sets")
    data.add_argument("--max_train_samples", type=int, default=None, help="use only the first N training samples")
    data.add_argument("--max_eval_samples", type=int, default=None, help="evaluate on the first N samples of each set")
    data.add_argument("--dataloader_num_workers", type=int, default=2, help="DataLoader worker processes per device")

    optim = parser.add_argument_group("optimisation (defaults: the official recipe)")
    optim.add_argument("--learning_rate", type=float, default=2e-4, help="AdamW learning rate after warm-up")
    optim.add_argument("--min_lr", type=float, default=5e-7, help="end of the cosine schedule")
    optim.add_argument(
        "--weight_decay", type=float, default=0.05,
        help="AdamW weight decay (none on biases, norms, layer scales and fusion weights)",
    )
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1")
    optim.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2")
    optim.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    optim.add_argument("--warmup_epochs", type=float, default=4.0, help="linear warm-up length in epochs")
    optim.add_argument("--warmup_steps", type=int, default=None, help="warm-up length in steps (overrides --warmup_epochs)")
    optim.add_argument("--num_train_epochs", type=int, default=200, help="training epochs (unless --max_train_steps)")
    optim.add_argument("--max_train_steps", type=int, default=None, help="stop after this many optimisation steps (the schedule spans them)")
    optim.add_argument("--per_device_train_batch_size", type=int, default=16, help="training batch per process")
    optim.add_argument("--per_device_eval_batch_size", type=int, default=16, help="evaluation batch per process")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimisation step")
    optim.add_argument("--max_grad_norm", type=float, default=None, help="clip gradients to this norm (default: no clipping)")
    optim.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
        help="default: the accelerate config / launcher setting",
    )
    optim.add_argument("--seed", type=int, default=42, help="seed of the model init, data order and augmentations")
    optim.add_argument(
        "--cpu", action="store_true",
        help="train on CPU (with `accelerate launch --multi_gpu --num_processes N` this runs N CPU processes on gloo)",
    )

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval_every_epochs", type=int, default=1, help="evaluate every N epochs (0: only at the end)")
    evaluation.add_argument("--eval_steps", type=int, default=None, help="also evaluate every N optimisation steps")
    evaluation.add_argument(
        "--metric_for_best_model", default=None,
        help="<set>/<metric> deciding the best model (default: <first set>/pixel_f1)",
    )
    evaluation.add_argument(
        "--greater_is_better", choices=("auto", "true", "false"), default="auto",
        help="direction of --metric_for_best_model (auto: lower is better for loss only)",
    )
    evaluation.add_argument(
        "--load_best_model_at_end", action="store_true",
        help="save (and push) the best evaluated weights instead of the last ones",
    )
    evaluation.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the pixel metrics")
    evaluation.add_argument(
        "--include_authentic", action="store_true",
        help="count authentic images in the pixel metrics (F1 0 each, IMDLBenCo rule)",
    )
    evaluation.add_argument(
        "--robustness", nargs="+", action="extend", default=None, metavar="KIND:VALUES",
        help=f"at the end, re-evaluate every set under degradations: {PERTURBATION_HELP}",
    )

    checkpoints = parser.add_argument_group("checkpoints and output")
    checkpoints.add_argument("--output_dir", default="outputs/sparsevit-iml", help="where everything is written")
    checkpoints.add_argument(
        "--checkpointing_steps", default=None,
        help="save a resumable checkpoint every N optimisation steps, or 'epoch' at the end of every epoch",
    )
    checkpoints.add_argument("--save_total_limit", type=int, default=None, help="keep only the last K checkpoints")
    checkpoints.add_argument(
        "--resume_from_checkpoint", default=None, metavar="PATH|latest",
        help="continue a run exactly from a checkpoint folder, or from the latest complete one in --output_dir",
    )

    tracking = parser.add_argument_group("logging")
    tracking.add_argument("--with_tracking", action="store_true", help="log with accelerate trackers")
    tracking.add_argument("--report_to", default="tensorboard", help="tracker(s): tensorboard, wandb, all, ...")
    tracking.add_argument("--project_name", default="sparsevit-iml", help="tracker project / run name")
    tracking.add_argument("--logging_steps", type=int, default=50, help="log the training loss every N steps")

    hub = parser.add_argument_group("hugging face hub")
    hub.add_argument("--push_to_hub", action="store_true", help="push the model at every evaluation and at the end")
    hub.add_argument("--hub_model_id", default=None, help="repository id (default: the output folder's name)")
    hub.add_argument("--hub_token", default=None, help="token (default: the stored login or HF_TOKEN)")
    hub.add_argument("--hub_private_repo", action="store_true", help="create the repository private")
    hub.add_argument("--push_checkpoints", action="store_true", help="also upload checkpoints and logs")
    return parser


def _positive(parser, args, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            parser.error(f"--{name} must be {'>= 0' if allow_zero else 'positive'}, got {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every argument (nothing is loaded or computed yet); errors exit with status 2."""
    from sparsevit_hf.training import parse_eval_specs, parse_robustness, resolve_metric_name

    parser = build_parser()
    args = parser.parse_args(argv)

    args.builtin_synthetic = args.train_data is None
    if args.builtin_synthetic:
        args.train_data = [SYNTHETIC_TRAIN]
        if args.eval_data is None:
            args.eval_data = [SYNTHETIC_EVAL]
    if args.model_preset is None and args.model_name_or_path is None:
        args.model_preset = "small" if args.builtin_synthetic else "published"
    if args.image_size is None:
        args.image_size = 256 if args.builtin_synthetic else 512

    _positive(parser, args, "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
    _positive(parser, args, "num_train_epochs", "max_train_steps", "samples_per_dataset", "logging_steps")
    _positive(parser, args, "max_train_samples", "max_eval_samples", "save_total_limit", "eval_steps")
    _positive(parser, args, "warmup_epochs", "warmup_steps", "eval_every_epochs", "dataloader_num_workers", allow_zero=True)
    _positive(parser, args, "learning_rate", "min_lr", "weight_decay", "adam_epsilon", allow_zero=True)
    if args.learning_rate == 0:
        parser.error("--learning_rate must be positive")
    if args.min_lr > args.learning_rate:
        parser.error(f"--min_lr ({args.min_lr}) must not exceed --learning_rate ({args.learning_rate})")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(args, name) < 1.0:
            parser.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if args.max_grad_norm is not None and args.max_grad_norm <= 0:
        parser.error(f"--max_grad_norm must be positive, got {args.max_grad_norm}")
    if args.drop_path_rate is not None and not 0.0 <= args.drop_path_rate < 1.0:
        parser.error(f"--drop_path_rate must be in [0, 1), got {args.drop_path_rate}")
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.image_size < 32 or args.image_size % 32:
        parser.error(f"--image_size must be a multiple of 32 (at least 32), got {args.image_size}")

    # Model source.
    if args.model_name_or_path is not None:
        if args.model_preset is not None or args.uniformer_checkpoint is not None:
            parser.error("--model_name_or_path fine-tunes a saved model: do not combine it with --model_preset or --uniformer_checkpoint")
        if _looks_like_path(args.model_name_or_path) and not Path(args.model_name_or_path).expanduser().exists():
            parser.error(f"--model_name_or_path {args.model_name_or_path}: no such folder")
    if args.official_reinit and args.uniformer_checkpoint is None:
        parser.error("--official_reinit only applies together with --uniformer_checkpoint")
    if args.uniformer_checkpoint is not None:
        if not Path(args.uniformer_checkpoint).expanduser().is_file():
            parser.error(f"--uniformer_checkpoint {args.uniformer_checkpoint}: no such file")
        if args.model_preset != "published":
            parser.error("--uniformer_checkpoint holds UniFormer-B weights: use it with --model_preset published")

    # Data.
    for spec in args.train_data:
        problem = _missing_path(spec)
        if problem:
            parser.error(f"--train_data {spec}: {problem}")
    try:
        args.eval_sets = parse_eval_specs(args.eval_data or [])
    except ValueError as error:
        parser.error(str(error))
    for name, spec in args.eval_sets.items():
        problem = _missing_path(spec)
        if problem:
            parser.error(f"--eval_data {name}={spec}: {problem}")
    if args.synthetic_options is not None and not isinstance(args.synthetic_options, dict):
        parser.error("--synthetic_options must be a JSON object")
    if args.synthetic_options is not None:
        from sparsevit_hf.data.synthetic import SyntheticTamperingConfig

        try:
            SyntheticTamperingConfig(**_synthetic_config_kwargs(args.synthetic_options))
        except (TypeError, ValueError) as error:
            parser.error(f"--synthetic_options: {error}")

    # Evaluation.
    try:
        args.perturbations = parse_robustness(args.robustness or [])
    except ValueError as error:
        parser.error(str(error))
    set_names = list(args.eval_sets) + [f"{name}@{p.name}" for name in args.eval_sets for p in args.perturbations]
    if args.metric_for_best_model is None:
        args.metric_for_best_model = f"{next(iter(args.eval_sets))}/pixel_f1" if args.eval_sets else None
    elif not args.eval_sets:
        parser.error("--metric_for_best_model needs at least one --eval_data set")
    if args.metric_for_best_model is not None:
        try:
            args.metric_for_best_model = resolve_metric_name(args.metric_for_best_model, set_names)
        except ValueError as error:
            parser.error(str(error))
        if args.greater_is_better == "auto":
            args.greater_is_better = not args.metric_for_best_model.endswith("/loss")
        else:
            args.greater_is_better = args.greater_is_better == "true"
        robust_metric = "@" in args.metric_for_best_model.rpartition("/")[0]
        if robust_metric:
            parser.error(
                f"--metric_for_best_model {args.metric_for_best_model}: robustness sets are evaluated only at the end "
                "and cannot select the best model"
            )
    if args.load_best_model_at_end and args.metric_for_best_model is None:
        parser.error("--load_best_model_at_end needs an evaluation set (--eval_data)")

    # Checkpoints.
    if args.checkpointing_steps is not None:
        if args.checkpointing_steps != "epoch":
            try:
                args.checkpointing_steps = int(args.checkpointing_steps)
            except ValueError:
                parser.error(f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps!r}")
            if args.checkpointing_steps < 1:
                parser.error(f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps}")
    if args.resume_from_checkpoint not in (None, "latest"):
        from sparsevit_hf.training import resolve_checkpoint

        try:
            resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
        except ValueError as error:
            parser.error(str(error))

    # Hub.
    if (args.hub_model_id or args.hub_private_repo or args.push_checkpoints) and not args.push_to_hub:
        parser.error("--hub_model_id, --hub_private_repo and --push_checkpoints need --push_to_hub")
    if args.push_to_hub and args.hub_model_id is None:
        args.hub_model_id = Path(args.output_dir).resolve().name
    return args


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1 or spec.endswith(".json")


def _missing_path(spec: str) -> str | None:
    """A message when a data spec names a local path that does not exist (Hub ids and synthetic specs pass)."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return None
    path = Path(spec).expanduser()
    if path.exists():
        return None
    if _looks_like_path(spec):
        return "no such file or folder"
    return None


def _synthetic_config_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}


# ------------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------------
def load_training_data(args):
    """Concatenate every --train_data spec (each may itself be combined); returns (dataset, part sizes, names)."""
    from datasets import concatenate_datasets

    from sparsevit_hf.data import iml_features, load_iml_bundle

    parts, sizes, names = [], [], []
    for spec in args.train_data:
        bundle = load_iml_bundle(spec, split=_default_split(spec, "train"), **_data_options(args))
        parts.append(bundle.dataset.select_columns(["image", "mask", "label"]).cast(iml_features()))
        sizes.extend(bundle.sizes)
        names.extend(bundle.names)
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if args.max_train_samples is not None and args.max_train_samples < len(dataset):
        dataset = dataset.select(range(args.max_train_samples))
        sizes, names = _truncate_parts(sizes, names, args.max_train_samples)
    return dataset, sizes, names


def _truncate_parts(sizes, names, limit):
    kept_sizes, kept_names, total = [], [], 0
    for size, name in zip(sizes, names):
        take = min(size, limit - total)
        if take <= 0:
            break
        kept_sizes.append(take)
        kept_names.append(name)
        total += take
    return kept_sizes, kept_names


def load_evaluation_data(args) -> dict[str, Any]:
    from sparsevit_hf.data import load_iml_dataset

    sets = {}
    for name, spec in args.eval_sets.items():
        dataset = load_iml_dataset(spec, split=_default_split(spec, "test"), **_data_options(args))
        if args.max_eval_samples is not None and args.max_eval_samples < len(dataset):
            dataset = dataset.select(range(args.max_eval_samples))
        sets[name] = dataset
    return sets


def _default_split(spec: str, split: str) -> str | None:
    # Only the synthetic data set needs a split when none is in the spec; other loaders take their own default.
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return split
    return None


def _data_options(args) -> dict[str, Any]:
    options: dict[str, Any] = {"skip_corrupt": args.skip_corrupt}
    if args.synthetic_options:
        from sparsevit_hf.data.synthetic import SyntheticTamperingConfig

        options["synthetic_options"] = {"config": SyntheticTamperingConfig(**_synthetic_config_kwargs(args.synthetic_options))}
    return options


# ------------------------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------------------------
def build_model_and_processor(args):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from sparsevit_hf import SparseViTImageProcessor
    from sparsevit_hf.training import preset_config

    overrides = {} if args.drop_path_rate is None else {"drop_path_rate": args.drop_path_rate}
    processor = None
    if args.model_name_or_path is not None:
        model = AutoModelForSemanticSegmentation.from_pretrained(args.model_name_or_path, token=args.hub_token, **overrides)
        try:
            processor = AutoImageProcessor.from_pretrained(args.model_name_or_path, token=args.hub_token)
        except (OSError, ValueError):
            logger.warning("%s has no image processor; using the default one", args.model_name_or_path)
    else:
        config = preset_config(args.model_preset, **overrides)
        if args.uniformer_checkpoint is not None:
            from sparsevit_hf.convert import init_from_uniformer

            model, report = init_from_uniformer(args.uniformer_checkpoint, config, reinit=args.official_reinit)
            logger.info(
                "Backbone initialised from %s (%d tensors%s)", args.uniformer_checkpoint, report.converted,
                ", then the official re-initialisation" if args.official_reinit else "",
            )
        else:
            from sparsevit_hf import SparseViTForManipulationLocalization

            model = SparseViTForManipulationLocalization(config)
    if processor is None:
        processor = SparseViTImageProcessor()
    processor.size = {"height": args.image_size, "width": args.image_size}
    processor.do_resize = True
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, processor


# ------------------------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------------------------
def training_settings(args, accelerator, steps_per_epoch: int, total_steps: int, warmup_steps: int) -> dict[str, Any]:
    """The hyper-parameters of the run, for the model card and the trackers."""
    return {
        "model_preset": args.model_preset,
        "model_name_or_path": args.model_name_or_path,
        "uniformer_checkpoint": Path(args.uniformer_checkpoint).name if args.uniformer_checkpoint else None,
        "official_reinit": args.official_reinit,
        "train_data": list(args.train_data),
        "eval_data": dict(args.eval_sets),
        "image_size": args.image_size,
        "augmentation": not args.no_augmentation,
        "learning_rate": args.learning_rate,
        "min_lr": args.min_lr,
        "weight_decay": args.weight_decay,
        "adam_betas": [args.adam_beta1, args.adam_beta2],
        "adam_epsilon": args.adam_epsilon,
        "lr_schedule": "linear warm-up, then per-step half-cycle cosine",
        "warmup_steps": warmup_steps,
        "num_train_epochs": args.num_train_epochs,
        "max_train_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": accelerator.num_processes,
        "total_train_batch_size": args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps,
        "mixed_precision": accelerator.mixed_precision,
        "max_grad_norm": args.max_grad_norm,
        "seed": args.seed,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
    }


def _is_hub_id(spec: str) -> bool:
    return not (spec == "synthetic" or spec.startswith("synthetic:") or Path(spec).expanduser().exists()
                or _looks_like_path(spec))


def card_run_info(args, settings: dict[str, Any], results: dict[str, dict[str, Any]], num_parameters: int,
                  summary: dict[str, Any], example_image: str | None) -> dict[str, Any]:
    """The `hub.RunInfo` fields describing this run."""
    from sparsevit_hf import hub

    parts = ", ".join(f"`{spec}`" for spec in args.train_data)
    sampling = (
        f"{args.samples_per_dataset or settings['samples_per_epoch'] // max(1, settings['num_parts'])} samples per part "
        "and epoch, drawn evenly from each part" if settings["num_parts"] > 1 else "one pass over the data per epoch"
    )
    evaluated = ", ".join(f"`{name}` (`{spec}`)" for name, spec in args.eval_sets.items()) or "no held-out set"
    training_data = (
        f"Trained with `examples/run_iml.py` on {parts} ({settings['num_train_samples']} images, {sampling}), "
        f"images resized to {args.image_size} x {args.image_size}, "
        + ("with the official training augmentations. " if not args.no_augmentation else "without augmentation. ")
        + f"Evaluated on {evaluated}."
    )
    if args.builtin_synthetic or any(spec.startswith("synthetic") for spec in args.train_data):
        training_data += (
            " The synthetic data set is built by `sparsevit_hf.data.synthetic` from scikit-image's sample photographs "
            "(splicing, copy-move and removal with JPEG traces); it is a demonstration, not a benchmark."
        )
    hyperparameters = {
        "Model": (f"`{args.model_name_or_path}` (fine-tuned)" if args.model_name_or_path else
                  f"`{args.model_preset}` preset" + (f", backbone from `{Path(args.uniformer_checkpoint).name}`"
                                                     + (" (official re-initialisation)" if args.official_reinit else "")
                                                     if args.uniformer_checkpoint else "")),
        "Input": f"RGB resized to {args.image_size} x {args.image_size} (bilinear), ImageNet mean/std",
        "Optimizer": f"AdamW, betas ({args.adam_beta1}, {args.adam_beta2}), eps {args.adam_epsilon}, weight decay "
                     f"{args.weight_decay} (none on biases, norm weights, layer scales and fusion weights)",
        "Learning rate": f"{args.learning_rate:g}, {settings['warmup_steps']} warm-up steps, then per-step half-cycle "
                         f"cosine to {args.min_lr:g}",
        "Batch size": f"{settings['total_train_batch_size']} ({args.per_device_train_batch_size} per device x "
                      f"{settings['num_processes']} process(es) x {args.gradient_accumulation_steps} accumulation)",
        "Steps": f"{summary.get('train_steps', settings['max_train_steps'])} of {settings['max_train_steps']} "
                 f"({settings['steps_per_epoch']} per epoch)",
        "Precision": settings["mixed_precision"],
        "Gradient clipping": args.max_grad_norm if args.max_grad_norm is not None else "none",
        "Seed": args.seed,
    }
    if summary.get("best_step") is not None:
        hyperparameters["Best model"] = (
            f"{args.metric_for_best_model} = {summary['best_metric']:.4f} at step {summary['best_step']}"
            + (" (these weights)" if summary.get("weights") == "best" else "")
        )
    description = None
    if args.model_preset and args.model_preset != "published":
        config = settings.get("config", {})
        description = (
            f"This checkpoint uses the `{args.model_preset}` size preset of `sparsevit_hf.training` "
            f"(widths {config.get('hidden_sizes')}, depths {config.get('depths')}, sparsity rates "
            f"{config.get('sparsity_rates')}), not the published 50 M-parameter model."
        )
    return {
        "model_id": args.hub_model_id or Path(args.output_dir).resolve().name,
        "base_model": args.model_name_or_path if args.model_name_or_path and _is_hub_id(args.model_name_or_path) else None,
        "datasets": [spec for spec in args.train_data if _is_hub_id(spec)],
        "training_data": training_data,
        "hyperparameters": hyperparameters,
        "eval_results": hub.card_eval_results(results),
        "num_parameters": f"{num_parameters / 1e6:.2f} M",
        "description": description,
        "example_image": example_image,
    }


# ------------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------------
def make_accelerator(args):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    cpu = args.cpu
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())
    if not cpu and world_size > 1 and not has_accelerator:
        cpu = True  # several processes but no device: run them on CPU (gloo) instead of silently running alone
    kwargs = {}
    if args.with_tracking:
        kwargs["log_with"] = args.report_to
    return Accelerator(
        cpu=cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(Path(args.output_dir) / "runs")),
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    try:
        return train(args, accelerator)
    finally:
        # Tears down the process group on every exit path: a gloo group left to the interpreter's
        # shutdown can abort the process ("terminate called without an active exception").
        accelerator.end_training()


def train(args, accelerator) -> int:
    """Load the data and model, train, evaluate, save and push; returns the process exit status."""
    import datasets
    import torch
    import transformers
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from sparsevit_hf import hub
    from sparsevit_hf import training as T

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logger.setLevel(logging.INFO)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        logger.setLevel(logging.ERROR)
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    logger.info(
        "%d process(es), distributed type %s, device %s, mixed precision %s",
        accelerator.num_processes, accelerator.distributed_type, accelerator.device, accelerator.mixed_precision,
    )
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    # ---- resume point (resolved early: `latest` must not pick a checkpoint written by this run)
    resume_from = None
    if args.resume_from_checkpoint is not None:
        resume_from = T.resolve_checkpoint(args.resume_from_checkpoint, output_dir)
        if resume_from is None:
            logger.info("--resume_from_checkpoint latest: no complete checkpoint in %s yet, starting afresh", output_dir)

    # ---- hub repository (before any training: a bad token or id fails now, not after hours)
    pusher = None
    if args.push_to_hub:
        from accelerate.utils import broadcast_object_list

        status = [None, args.hub_model_id]
        if accelerator.is_main_process:
            try:
                status[1], pusher = T.create_hub_pusher(
                    args.hub_model_id, args.hub_token, args.hub_private_repo, args.push_checkpoints
                )
            except Exception as error:
                status[0] = f"{type(error).__name__}: {error}"
        status = broadcast_object_list(status)
        if status[0] is not None:
            logger.error("Cannot create the Hub repository %s: %s", args.hub_model_id, status[0])
            return 1
        args.hub_model_id = status[1]

    # ---- data
    try:
        with accelerator.main_process_first():
            train_dataset, part_sizes, part_names = load_training_data(args)
            eval_datasets = load_evaluation_data(args)
    except (ValueError, OSError, ImportError) as error:
        logger.error("Cannot load the data: %s", error)
        return 2
    logger.info("Training data: %d samples in %d part(s): %s", len(train_dataset), len(part_sizes), ", ".join(part_names))

    model, processor = build_model_and_processor(args)
    num_parameters = sum(p.numel() for p in model.parameters())
    logger.info("Model: %.2f M parameters", num_parameters / 1e6)

    per_dataset = args.samples_per_dataset
    if per_dataset is None and len(part_sizes) > 1:
        from sparsevit_hf.data import DEFAULT_PER_DATASET

        per_dataset = DEFAULT_PER_DATASET
    sampler = T.EpochSampler(part_sizes, per_dataset, seed=args.seed)
    train_set = T.IMLTrainingDataset(
        train_dataset, processor, args.image_size, seed=args.seed, augment=not args.no_augmentation
    )
    loader_kwargs = {"num_workers": args.dataloader_num_workers, "collate_fn": T.collate_iml}
    if args.dataloader_num_workers > 0:
        loader_kwargs["persistent_workers"] = False
    # Its own generator: creating a loader iterator then never draws from the global torch RNG.
    train_loader = torch.utils.data.DataLoader(
        train_set, sampler=sampler, batch_size=args.per_device_train_batch_size, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed), **loader_kwargs,
    )
    if len(train_loader) == 0:
        logger.error(
            "An epoch holds %d samples, fewer than one batch of %d: lower --per_device_train_batch_size",
            len(sampler), args.per_device_train_batch_size,
        )
        return 2
    eval_loaders = {}
    for name, dataset in eval_datasets.items():
        variants = [(name, None)] + [(f"{name}@{p.name}", p) for p in args.perturbations]
        for set_name, perturbation in variants:
            eval_loaders[set_name] = torch.utils.data.DataLoader(
                T.IMLEvaluationDataset(dataset, processor, perturbation, seed=args.seed),
                batch_size=args.per_device_eval_batch_size, shuffle=False, **loader_kwargs,
            )

    optimizer = torch.optim.AdamW(
        T.parameter_groups(model, args.weight_decay), lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
    )
    names = list(eval_loaders)
    model, optimizer, train_loader, *prepared = accelerator.prepare(model, optimizer, train_loader, *eval_loaders.values())
    eval_loaders = dict(zip(names, prepared))

    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else round(args.warmup_epochs * steps_per_epoch)
    lr_scheduler = T.create_lr_scheduler(optimizer, args.learning_rate, args.min_lr, warmup_steps, total_steps)
    accelerator.register_for_checkpointing(lr_scheduler)
    settings = training_settings(args, accelerator, steps_per_epoch, total_steps, min(warmup_steps, total_steps - 1))
    settings.update(
        num_parts=len(part_sizes), num_train_samples=len(train_dataset), samples_per_epoch=len(sampler),
        config={k: getattr(accelerator.unwrap_model(model).config, k) for k in ("hidden_sizes", "depths", "sparsity_rates")},
    )
    example_image = hub.write_widget_example(output_dir, args.image_size) if accelerator.is_main_process else None

    if args.with_tracking:
        accelerator.init_trackers(args.project_name, config={k: _scalar(v) for k, v in settings.items() if k != "config"})

    main_sets = [name for name in eval_loaders if "@" not in name]
    robust_sets = [name for name in eval_loaders if "@" in name]
    progress = T.TrainingProgress()
    if resume_from is not None:
        accelerator.print(f"Resuming from {resume_from}")
        accelerator.load_state(str(resume_from))
        progress = T.load_training_state(resume_from)
    history_path = output_dir / "log.jsonl"
    if accelerator.is_main_process:
        T.write_history(history_path, progress.history)

    logger.info("***** Training *****")
    logger.info("  samples per epoch = %d, epochs = %d, steps per epoch = %d, total steps = %d, warm-up steps = %d",
                len(sampler), num_epochs, steps_per_epoch, total_steps, settings["warmup_steps"])
    logger.info("  batch per device = %d, processes = %d, accumulation = %d, total batch = %d",
                args.per_device_train_batch_size, accelerator.num_processes, args.gradient_accumulation_steps,
                settings["total_train_batch_size"])

    def run_evaluation(set_names: list[str]) -> dict[str, dict[str, Any]]:
        results = {}
        for set_name in set_names:
            results[set_name] = T.evaluate(
                model, eval_loaders[set_name], accelerator, processor, threshold=args.threshold,
                include_authentic=args.include_authentic, description=f"eval {set_name}",
            )
        return results

    def record(entry: dict[str, Any]) -> None:
        progress.history.append(entry)
        if accelerator.is_main_process:
            T.write_history(history_path, progress.history)

    last_eval: dict[str, Any] = {"step": None, "results": {}}
    best_dir = output_dir / "best_model"

    def evaluate_and_track(epoch: int, push: bool = True) -> None:
        results = run_evaluation(main_sets)
        step = progress.completed_steps
        last_eval.update(step=step, results=results)
        entry = {"epoch": epoch + 1, "step": step, "eval": results}
        log = {f"eval/{k}": v for k, v in T.flatten_results(results).items() if not k.rpartition("/")[2].startswith("num_")}
        summary = ", ".join(f"{name} pixel_f1 {r['pixel_f1']:.4f} loss {r['loss']:.4f}" for name, r in results.items())
        accelerator.print(f"epoch {epoch + 1} step {step}: {summary}")
        if args.metric_for_best_model is not None:
            set_name, _, metric = args.metric_for_best_model.rpartition("/")
            value = results[set_name][metric]
            if T.is_better(value, progress.best_metric, args.greater_is_better):
                progress.best_metric, progress.best_step = float(value), step
                T.save_best_model(accelerator, model, processor, best_dir, {"step": step, "epoch": epoch + 1, "results": results})
            entry["best_metric"], entry["best_step"] = progress.best_metric, progress.best_step
        record(entry)
        if args.with_tracking:
            accelerator.log(log, step=step)
        if args.push_to_hub and push:
            T.save_model_folder(accelerator, model, processor, output_dir)
            if accelerator.is_main_process:
                summary = {"train_steps": step, "best_metric": progress.best_metric, "best_step": progress.best_step}
                hub.write_model_card(output_dir, card_run_info(args, settings, results, num_parameters, summary, example_image))
                pusher.push(output_dir, f"Training in progress: step {step}, epoch {epoch + 1}")

    def checkpoint(epoch: int, batches_in_epoch: int) -> None:
        progress.epoch, progress.batches_in_epoch = epoch, batches_in_epoch
        path = T.save_checkpoint(accelerator, output_dir, progress, args.save_total_limit)
        logger.info("Saved checkpoint %s", path)

    # ---- the loop
    start_epoch, skip_batches = progress.epoch, progress.batches_in_epoch
    progress_bar = tqdm(total=total_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process, desc="train")
    start_time = time.time()
    loss_sum = torch.zeros((), device=accelerator.device)
    loss_count = 0
    epoch = start_epoch
    for epoch in range(start_epoch, num_epochs):
        if progress.completed_steps >= total_steps:
            break
        model.train()
        sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        consumed = skip_batches if epoch == start_epoch else 0
        loader = train_loader
        if consumed >= len(train_loader):  # resumed from a checkpoint taken after the epoch's last batch
            loader = []
        elif consumed:
            from accelerate import skip_first_batches

            loader = skip_first_batches(train_loader, consumed)
            loader.set_epoch(epoch)
        for batch in loader:
            torch.manual_seed(T.batch_seed(args.seed, epoch, consumed, accelerator.process_index))
            consumed += 1
            with accelerator.accumulate(model):
                outputs = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
                loss = outputs.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            loss_count += 1
            if not accelerator.sync_gradients:
                continue
            lr_scheduler.step()
            progress.completed_steps += 1
            progress_bar.update(1)
            step = progress.completed_steps
            if step % args.logging_steps == 0 or step == total_steps:
                mean_loss = accelerator.reduce(loss_sum / max(1, loss_count), reduction="mean").item()
                lr = optimizer.param_groups[0]["lr"]
                progress_bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
                record({"epoch": epoch + 1, "step": step, "train_loss": mean_loss, "learning_rate": lr})
                if args.with_tracking:
                    accelerator.log({"train/loss": mean_loss, "train/learning_rate": lr, "train/epoch": epoch + 1}, step=step)
                loss_sum.zero_()
                loss_count = 0
            if args.eval_steps and step % args.eval_steps == 0 and main_sets:
                evaluate_and_track(epoch)
                model.train()
            if isinstance(args.checkpointing_steps, int) and step % args.checkpointing_steps == 0:
                checkpoint(epoch, consumed)
            if step >= total_steps:
                break
        if consumed < len(train_loader):  # stopped inside the epoch (--max_train_steps)
            break
        if main_sets and args.eval_every_epochs and (epoch + 1) % args.eval_every_epochs == 0:
            if last_eval["step"] != progress.completed_steps:
                evaluate_and_track(epoch)
        if args.checkpointing_steps == "epoch":
            checkpoint(epoch + 1, 0)
    progress_bar.close()
    train_runtime = time.time() - start_time

    # ---- final evaluation, robustness and outputs
    if main_sets and last_eval["step"] != progress.completed_steps:
        evaluate_and_track(min(epoch, num_epochs - 1), push=False)  # the final push follows
    final_results = dict(last_eval["results"])
    if args.load_best_model_at_end and progress.best_step is not None and progress.best_step != progress.completed_steps:
        logger.info("Loading the best model (step %d, %s = %.4f)", progress.best_step, args.metric_for_best_model, progress.best_metric)
        from safetensors.torch import load_file

        accelerator.unwrap_model(model).load_state_dict(load_file(str(best_dir / "model.safetensors")))
        final_results = json.loads((best_dir / "eval_results.json").read_text())["results"]
    if robust_sets:
        final_results.update(run_evaluation(robust_sets))
        record({"step": progress.completed_steps, "robustness": {k: final_results[k] for k in robust_sets}})

    T.save_model_folder(accelerator, model, processor, output_dir)
    exit_code = 0
    if accelerator.is_main_process:
        baselines = {name: T.trivial_baselines(dataset, args.threshold, args.include_authentic)
                     for name, dataset in eval_datasets.items()}
        for name, values in baselines.items():
            model_f1 = final_results.get(name, {}).get("pixel_f1", float("nan"))
            logger.info(
                "%s: pixel_f1 %.4f (trivial baselines: all-manipulated %.4f, all-authentic %.4f)", name, model_f1,
                values["all_manipulated"]["pixel_f1"], values["all_authentic"]["pixel_f1"],
            )
        all_results = {
            "train_runtime": train_runtime,
            "train_steps": progress.completed_steps,
            "epochs": num_epochs,
            "num_processes": accelerator.num_processes,
            "best_metric": progress.best_metric,
            "best_step": progress.best_step,
            "metric_for_best_model": args.metric_for_best_model,
            "weights": "best" if args.load_best_model_at_end and progress.best_step is not None else "final",
            **T.flatten_results(final_results),
            "baselines": {name: {kind: {k: v for k, v in m.items() if not k.startswith("num_")} for kind, m in b.items()}
                          for name, b in baselines.items()},
        }
        train_losses = [e["train_loss"] for e in progress.history if "train_loss" in e]
        if train_losses:
            all_results["train_loss"] = train_losses[-1]
        T.write_json_atomic(output_dir / "all_results.json", all_results)
        hub.write_model_card(output_dir, card_run_info(args, settings, final_results, num_parameters, all_results, example_image))
        if pusher is not None:
            error = pusher.finish(output_dir, "End of training")
            if error is not None:
                logger.error(
                    "The final push to the Hub (%s) failed: %s. The model is saved in %s; upload it with "
                    "`hf upload %s %s`.", args.hub_model_id, error, output_dir, args.hub_model_id, output_dir,
                )
                exit_code = 1
    accelerator.wait_for_everyone()
    return exit_code


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


if __name__ == "__main__":
    sys.exit(main())
