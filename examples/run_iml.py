#!/usr/bin/env python
"""Train SparseViT for image manipulation localization with 🤗 Accelerate.

    accelerate launch examples/run_iml.py                       # built-in synthetic data, small model
    accelerate launch examples/run_iml.py \\
        --train_data /data/catnet_train.json --eval_data casia=/data/CASIAv1 columbia=/data/Columbia \\
        --uniformer_checkpoint uniformer_base_ls_in1k.pth --output_dir outputs/sparsevit

One process per device through `accelerate launch` (DDP on several GPUs or machines; FSDP2 / DeepSpeed from the
accelerate config, ready-made ones in examples/accelerate_configs/, not yet verified on a GPU), also plain
`python examples/run_iml.py`. A CPU try-out of two processes (gloo):

    accelerate launch --multi_gpu --num_processes 2 examples/run_iml.py --cpu

(`--cpu` after the script is this script's flag: Accelerate refuses its own `--cpu` together with `--multi_gpu`, and
`accelerate launch --cpu --num_processes 2` starts a single process.)

The defaults are the official recipe: AdamW (lr 2e-4, betas 0.9/0.999, weight decay 0.05 except biases, norms,
layer scales and fusion weights), 4 warm-up epochs then a per-step half-cycle cosine to 5e-7, batch 16 per device,
200 epochs, seed 42, the official augmentations, 512 px.
Without --train_data it trains the `small` preset at 256 px on the built-in synthetic data set and evaluates on its
held-out split. See `python examples/run_iml.py --help` for every option.

The script parses and checks its arguments, builds the model and the data, and hands them to
`sparsevit_hf.training.IMLTrainer`, which trains, evaluates, keeps the best model, checkpoints, writes the card and
pushes to the Hub. Only the standard library is imported before the arguments are parsed, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger("run_iml")

SYNTHETIC_TRAIN = "synthetic:train"
SYNTHETIC_EVAL = "synthetic=synthetic:test:num_images=200"
MODEL_PRESET_NAMES = ("published", "small", "tiny")  # configuration_sparsevit.PRESETS (here: --help needs no torch)
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
    add = model.add_argument
    add("--model_preset", choices=MODEL_PRESET_NAMES, default=None,
        help="size of a fresh model: published (the paper's), small (quick runs), tiny (tests). Default: "
        "published, or small for the built-in synthetic data")
    add("--model_name_or_path", default=None, help="save_pretrained folder (or Hub id) to fine-tune")
    add("--uniformer_checkpoint", default=None,
        help="ImageNet UniFormer-B checkpoint (uniformer_base[_ls]_in1k.pth) to initialise the backbone from "
        "(published size only)")
    add("--official_reinit", action="store_true",
        help="after loading --uniformer_checkpoint, re-initialise Linear and LayerNorm layers as the official code "
        "does")
    add("--drop_path_rate", type=float, default=None, help="stochastic depth rate (default: the preset's)")
    add("--dice_loss_weight", type=float, default=None,
        help="weight of a soft Dice term added to the BCE loss (default: the model's, 0 = the official BCE alone)")
    add("--gradient_checkpointing", action="store_true", help="trade compute for memory")

    data = parser.add_argument_group("data")
    add = data.add_argument
    add("--train_data", nargs="+", action="extend", default=None, metavar="SPEC",
        help="training data: Tp/+Gt/ folder, JSON pair list, combined [kind, path] JSON, datasets folder or Hub "
        "id, or synthetic[:split][:key=value,...]; several specs are combined and sampled evenly")
    add("--eval_data", nargs="+", action="extend", default=None, metavar="NAME=SPEC",
        help="named evaluation sets, e.g. casia=/data/CASIAv1 synthetic=synthetic:test")
    add("--samples_per_dataset", type=int, default=None,
        help="samples drawn from each training part per epoch (default: one pass for a single data set, 1840 "
        "per part, the CAT-Net protocol, for combined data)")
    add("--synthetic_options", type=json.loads, default=None, metavar="JSON",
        help="generation parameters of synthetic data sets (SyntheticTamperingConfig), e.g. "
        "'{\"region_fraction\": [0.05, 0.3]}'")
    add("--image_size", type=int, default=None, help="model input side in pixels (default 512; 256 for synthetic)")
    add("--no_augmentation", action="store_true", help="train without the official augmentations")
    add("--skip_corrupt", action="store_true", help="drop unreadable samples of folder / JSON data sets")
    add("--max_train_samples", type=int, default=None, help="use only the first N training samples")
    add("--max_eval_samples", type=int, default=None, help="evaluate on the first N samples of each set")
    add("--dataloader_num_workers", type=int, default=2, help="DataLoader worker processes per device")

    optim = parser.add_argument_group("optimisation (defaults: the official recipe)")
    add = optim.add_argument
    add("--learning_rate", type=float, default=2e-4, help="AdamW learning rate after warm-up")
    add("--min_lr", type=float, default=5e-7, help="end of the cosine schedule")
    add("--weight_decay", type=float, default=0.05,
        help="AdamW weight decay (none on biases, norms, layer scales and fusion weights)")
    add("--adam_beta1", type=float, default=0.9, help="AdamW beta1")
    add("--adam_beta2", type=float, default=0.999, help="AdamW beta2")
    add("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    add("--warmup_epochs", type=float, default=4.0, help="linear warm-up length in epochs")
    add("--warmup_steps", type=int, default=None, help="warm-up length in steps (overrides --warmup_epochs)")
    add("--num_train_epochs", type=int, default=200, help="training epochs (unless --max_train_steps)")
    add("--max_train_steps", type=int, default=None,
        help="stop after this many optimisation steps (the schedule spans them)")
    add("--per_device_train_batch_size", type=int, default=16, help="training batch per process")
    add("--per_device_eval_batch_size", type=int, default=16, help="evaluation batch per process")
    add("--gradient_accumulation_steps", type=int, default=1, help="batches per optimisation step")
    add("--max_grad_norm", type=float, default=None, help="clip gradients to this norm (default: no clipping)")
    add("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
        help="default: the accelerate config / launcher setting")
    add("--seed", type=int, default=42, help="seed of the model init, data order and augmentations")
    add("--cpu", action="store_true",
        help="train on CPU. N CPU processes (gloo): `accelerate launch --multi_gpu --num_processes N "
        "examples/run_iml.py --cpu` (this flag after the script; accelerate's own --cpu refuses --multi_gpu)")

    evaluation = parser.add_argument_group("evaluation")
    add = evaluation.add_argument
    add("--eval_every_epochs", type=int, default=1, help="evaluate every N epochs (0: only at the end)")
    add("--eval_steps", type=int, default=None, help="also evaluate every N optimisation steps")
    add("--metric_for_best_model", default=None,
        help="<set>/<metric> deciding the best model (default: <first set>/pixel_f1)")
    add("--greater_is_better", choices=("auto", "true", "false"), default="auto",
        help="direction of --metric_for_best_model (auto: lower is better for loss only)")
    add("--load_best_model_at_end", action="store_true",
        help="save (and push) the best evaluated weights instead of the last ones")
    add("--threshold", type=float, default=0.5, help="probability threshold of the pixel metrics")
    add("--include_authentic", action="store_true",
        help="count authentic images in the pixel metrics (F1 0 each, IMDLBenCo rule)")
    add("--robustness", nargs="+", action="extend", default=None, metavar="KIND:VALUES",
        help=f"at the end, re-evaluate every set under degradations: {PERTURBATION_HELP}")

    checkpoints = parser.add_argument_group("checkpoints and output")
    add = checkpoints.add_argument
    add("--output_dir", default="outputs/sparsevit-iml", help="where everything is written")
    add("--checkpointing_steps", default=None,
        help="save a resumable checkpoint every N optimisation steps, or 'epoch' at the end of every epoch")
    add("--save_total_limit", type=int, default=None, help="keep only the last K checkpoints")
    add("--resume_from_checkpoint", default=None, metavar="PATH|latest",
        help="continue a run exactly from a checkpoint folder, or from the latest complete one in --output_dir")
    add("--allow_resume_mismatch", action="store_true",
        help="resume although the batch size, accumulation, process count, seed, image size or model settings "
        "differ from the checkpoint's (refused by default: the stored position would skip other samples)")

    tracking = parser.add_argument_group("logging")
    add = tracking.add_argument
    add("--with_tracking", action="store_true", help="log with accelerate trackers")
    add("--report_to", default="tensorboard", help="tracker(s): tensorboard, wandb, all, ...")
    add("--project_name", default="sparsevit-iml", help="tracker project / run name")
    add("--logging_steps", type=int, default=50, help="log the training loss every N steps")

    hub = parser.add_argument_group("hugging face hub")
    add = hub.add_argument
    add("--push_to_hub", action="store_true", help="push the model at every evaluation and at the end")
    add("--hub_model_id", default=None, help="repository id (default: the output folder's name)")
    add("--hub_token", default=None, help="token (default: the stored login or HF_TOKEN)")
    add("--hub_private_repo", action="store_true", help="create the repository private")
    add("--push_checkpoints", action="store_true", help="also upload checkpoints and logs")
    return parser


def _check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    def positive(*names: str, allow_zero: bool = False) -> None:
        for name in names:
            value = getattr(args, name)
            if value is not None and (value < 0 or (value == 0 and not allow_zero)):
                parser.error(f"--{name} must be {'>= 0' if allow_zero else 'positive'}, got {value}")

    positive("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
    positive("num_train_epochs", "max_train_steps", "samples_per_dataset", "logging_steps")
    positive("max_train_samples", "max_eval_samples", "save_total_limit", "eval_steps")
    positive("warmup_epochs", "warmup_steps", "eval_every_epochs", "dataloader_num_workers", allow_zero=True)
    positive("learning_rate", "min_lr", "weight_decay", "adam_epsilon", allow_zero=True)
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
    if args.dice_loss_weight is not None and args.dice_loss_weight < 0:
        parser.error(f"--dice_loss_weight must be >= 0, got {args.dice_loss_weight}")
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.image_size < 32 or args.image_size % 32:
        parser.error(f"--image_size must be a multiple of 32 (at least 32), got {args.image_size}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every argument (nothing is loaded or computed yet); errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from sparsevit_hf.evaluation import is_synthetic_spec, parse_eval_specs, parse_robustness, resolve_metric_name
    from sparsevit_hf.training import resolve_checkpoint
    from sparsevit_hf.utils import is_local_path

    args.builtin_synthetic = args.train_data is None
    if args.builtin_synthetic:
        args.train_data = [SYNTHETIC_TRAIN]
        if args.eval_data is None:
            args.eval_data = [SYNTHETIC_EVAL]
    if args.model_preset is None and args.model_name_or_path is None:
        args.model_preset = "small" if args.builtin_synthetic else "published"
    if args.image_size is None:
        args.image_size = 256 if args.builtin_synthetic else 512
    args.augment = not args.no_augmentation
    _check_ranges(parser, args)

    def missing(spec: str) -> bool:  # a local path that does not exist (Hub ids and synthetic specs pass)
        return not is_synthetic_spec(spec) and is_local_path(spec) and not Path(spec).expanduser().exists()

    # Model source.
    if args.model_name_or_path is not None:
        if args.model_preset is not None or args.uniformer_checkpoint is not None:
            parser.error("--model_name_or_path fine-tunes a saved model: do not combine it with --model_preset or "
                         "--uniformer_checkpoint")
        if missing(args.model_name_or_path):
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
        if missing(spec):
            parser.error(f"--train_data {spec}: no such file or folder")
    try:
        args.eval_sets = parse_eval_specs(args.eval_data or [])
    except ValueError as error:
        parser.error(str(error))
    for name, spec in args.eval_sets.items():
        if missing(spec):
            parser.error(f"--eval_data {name}={spec}: no such file or folder")
    if args.synthetic_options is not None:
        if not isinstance(args.synthetic_options, dict):
            parser.error("--synthetic_options must be a JSON object")
        try:
            args.synthetic_config = _synthetic_config(args.synthetic_options)
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
        if "@" in args.metric_for_best_model.rpartition("/")[0]:
            parser.error(f"--metric_for_best_model {args.metric_for_best_model}: robustness sets are evaluated only "
                         "at the end and cannot select the best model")
    else:
        args.greater_is_better = True
    if args.load_best_model_at_end and args.metric_for_best_model is None:
        parser.error("--load_best_model_at_end needs an evaluation set (--eval_data)")

    # Checkpoints and output.
    output = Path(args.output_dir).expanduser()
    existing = next(path for path in (output, *output.parents) if path.exists())
    if not existing.is_dir():
        parser.error(f"--output_dir {args.output_dir}: {existing} is a file, not a folder")
    if args.checkpointing_steps not in (None, "epoch"):
        bad = f"--checkpointing_steps must be a positive integer or 'epoch', got {args.checkpointing_steps!r}"
        try:
            args.checkpointing_steps = int(args.checkpointing_steps)
        except ValueError:
            parser.error(bad)
        if args.checkpointing_steps < 1:
            parser.error(bad)
    if args.resume_from_checkpoint not in (None, "latest"):
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


def _synthetic_config(options: dict[str, Any]):
    from sparsevit_hf.data.synthetic import SyntheticTamperingConfig

    return SyntheticTamperingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


# ------------------------------------------------------------------------------------------------------------------
# Building the run
# ------------------------------------------------------------------------------------------------------------------
def load_data(args):
    """The training data (`TrainingData`) and the evaluation sets (`{name: Dataset}`) the arguments name."""
    from sparsevit_hf.evaluation import load_evaluation_sets
    from sparsevit_hf.training import load_training_data

    options: dict[str, Any] = {"skip_corrupt": args.skip_corrupt}
    if args.synthetic_options:
        options["synthetic_options"] = {"config": args.synthetic_config}
    train_data = load_training_data(args.train_data, args.max_train_samples, **options)
    return train_data, load_evaluation_sets(args.eval_sets, args.max_eval_samples, **options)


def build_model_and_processor(args):
    """A fresh model of a preset (optionally with the ImageNet UniFormer-B backbone) or a saved one to fine-tune,
    and the processor, set to the training input size."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
    from sparsevit_hf.inference.loading import load_pretrained

    overrides = {} if args.drop_path_rate is None else {"drop_path_rate": args.drop_path_rate}
    if args.dice_loss_weight is not None:
        overrides["dice_loss_weight"] = args.dice_loss_weight
    processor = None
    if args.model_name_or_path is not None:  # missing or unexpected weights raise ModelLoadError
        model = load_pretrained(AutoModelForSemanticSegmentation, args.model_name_or_path, token=args.hub_token,
                                **overrides)
        try:
            processor = AutoImageProcessor.from_pretrained(args.model_name_or_path, token=args.hub_token)
        except (OSError, ValueError):
            logger.warning("%s has no image processor; using the default one", args.model_name_or_path)
    else:
        config = SparseViTConfig.from_preset(args.model_preset, **overrides)
        if args.uniformer_checkpoint is not None:
            from sparsevit_hf.convert import init_from_uniformer

            model, report = init_from_uniformer(args.uniformer_checkpoint, config, reinit=args.official_reinit)
            logger.info("Backbone initialised from %s (%d tensors%s)", args.uniformer_checkpoint, report.converted,
                        ", then the official re-initialisation" if args.official_reinit else "")
        else:
            model = SparseViTForManipulationLocalization(config)
    processor = processor or SparseViTImageProcessor()
    processor.size = {"height": args.image_size, "width": args.image_size}
    processor.do_resize = True
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, processor


def make_accelerator(args):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    cpu = args.cpu
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())
    if not cpu and world_size > 1 and not has_accelerator:
        cpu = True  # several processes but no device: run them on CPU (gloo) instead of silently running alone
    project = ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(Path(args.output_dir) / "runs"))
    return Accelerator(
        cpu=cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        project_config=project,
        **({"log_with": args.report_to} if args.with_tracking else {}),
    )


def _set_up_logging(accelerator) -> None:
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING)
    main = accelerator.is_local_main_process
    for name in ("run_iml", "sparsevit_hf"):
        logging.getLogger(name).setLevel(logging.INFO if main else logging.ERROR)
    for library in (datasets, transformers):
        library.utils.logging.set_verbosity(logging.WARNING if main else logging.ERROR)


# ------------------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # before any import of the package: --help and argument errors need no torch
    from sparsevit_hf.training.interruption import EXIT_INTERRUPTED, interrupted_message, resume_command

    accelerator = make_accelerator(args)
    interrupts = []

    def on_interrupt(signum, frame):
        # Remembered as well as raised: a KeyboardInterrupt raised while DataLoader workers shut down can be
        # swallowed by a destructor, and the run must still not end with status 0.
        interrupts.append(signum)
        raise KeyboardInterrupt

    # Python lets only the main thread set signal handlers (main() may also be called from another one).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main_thread else None
    try:
        status = run(args, accelerator)
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
        # Tears down the process group on every exit path: a gloo group left to the interpreter's
        # shutdown can abort the process ("terminate called without an active exception").
        accelerator.end_training()
    if status == EXIT_INTERRUPTED or interrupts:
        if accelerator.is_main_process:
            script = sys.argv[0] if argv is None else os.path.relpath(__file__)
            arguments = sys.argv[1:] if argv is None else argv
            command = resume_command(script, arguments, accelerator.num_processes)
            print(interrupted_message(args.output_dir, command), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return status


def run(args, accelerator) -> int:
    """Build the data, the model and the trainer, and train; returns the process exit status."""
    from accelerate.utils import set_seed

    from sparsevit_hf.inference.loading import ModelLoadError
    from sparsevit_hf.training import HubSync, IMLTrainer, ResumeError, TrainingArguments, log_distributed_setup

    _set_up_logging(accelerator)
    log_distributed_setup(accelerator)  # warns on an engine that fell back (FSDP / DeepSpeed) or a slow precision
    set_seed(args.seed)

    hub = None
    if args.push_to_hub:  # before any work: a bad token or id fails now, not after hours
        try:
            args.hub_model_id, hub = HubSync.create_on_main_process(
                accelerator, args.hub_model_id, token=args.hub_token, private=args.hub_private_repo,
                push_checkpoints=args.push_checkpoints,
            )
        except RuntimeError as error:
            logger.error("%s", error)
            return 1

    try:
        with accelerator.main_process_first():
            train_data, eval_sets = load_data(args)
    except (ValueError, OSError, ImportError) as error:
        logger.error("Cannot load the data: %s", error)
        return 2
    logger.info("Training data: %d samples in %d part(s): %s", len(train_data.dataset), len(train_data.sizes),
                ", ".join(train_data.names))
    try:
        model, processor = build_model_and_processor(args)
    except ModelLoadError as error:
        logger.error("%s", error)
        return 2
    logger.info("Model: %.2f M parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    try:
        trainer = IMLTrainer(
            model, processor, TrainingArguments.from_namespace(args), train_data, eval_sets, accelerator, hub=hub
        )
    except ValueError as error:  # e.g. an epoch smaller than one batch
        logger.error("%s", error)
        return 2
    try:
        return trainer.train()
    except (ResumeError, ModelLoadError) as error:  # a checkpoint that cannot continue this run
        logger.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
