"""How a training run is described: its hyper-parameters (for trackers and `all_results.json`) and the fields of
its model card (`hub.RunInfo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluation.sets import is_synthetic_spec
from ..utils import is_local_path
from .arguments import TrainingArguments


def run_settings(
    args: TrainingArguments, accelerator, *, steps_per_epoch: int, total_steps: int, warmup_steps: int
) -> dict[str, Any]:
    """The hyper-parameters of the run, as the trackers and the card show them."""
    return {
        "model_preset": args.model_preset,
        "model_name_or_path": args.model_name_or_path,
        "uniformer_checkpoint": Path(args.uniformer_checkpoint).name if args.uniformer_checkpoint else None,
        "official_reinit": args.official_reinit,
        "train_data": list(args.train_data),
        "eval_data": dict(args.eval_sets),
        "image_size": args.image_size,
        "augmentation": args.augment,
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
        "total_train_batch_size": (
            args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        ),
        "mixed_precision": accelerator.mixed_precision,
        "max_grad_norm": args.max_grad_norm,
        "seed": args.seed,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
    }


def is_hub_id(spec: str) -> bool:
    """Whether a model name or data spec names a Hub repository (listed as base model / data set on the card)."""
    return not is_synthetic_spec(spec) and not is_local_path(spec)


def _model_description(args: TrainingArguments) -> str:
    if args.model_name_or_path:
        return f"`{args.model_name_or_path}` (fine-tuned)"
    text = f"`{args.model_preset}` preset"
    if args.uniformer_checkpoint:
        text += f", backbone from `{Path(args.uniformer_checkpoint).name}`"
        if args.official_reinit:
            text += " (official re-initialisation)"
    return text


def _baseline_sentences(results: dict[str, dict[str, Any]]) -> list[str]:
    """Per set: the notes of undefined baselines, and the content gap per manipulation kind."""
    sentences = []
    for name, metrics in results.items():
        if metrics.get("baseline_note"):
            sentences.append(f"`{name}`: {metrics['baseline_note']}.")
        kinds = metrics.get("per_kind") or {}
        if kinds:
            parts = [
                f"{kind} {row['content_gap']:+.3f} (pixel F1 {row['pixel_f1']:.3f}, {row['num_tampered']} images)"
                for kind, row in kinds.items()
            ]
            sentences.append(f"Content gap per manipulation kind on `{name}`: {', '.join(parts)}.")
    return sentences


def card_run_info(
    args: TrainingArguments,
    settings: dict[str, Any],
    results: dict[str, dict[str, Any]],
    num_parameters: int,
    summary: dict[str, Any],
    example_image: str | None,
) -> dict[str, Any]:
    """The `hub.RunInfo` fields describing this run. `settings` are `run_settings` plus `num_parts`,
    `num_train_samples`, `samples_per_epoch` and `config`; `summary` holds `train_steps`, `best_metric`,
    `best_step` and `weights` (`best` or `final`) as far as known."""
    from ..hub import card_eval_results
    from ..hub.card import BASELINE_NOTES, DEFAULT_EVAL_NOTES

    parts = ", ".join(f"`{spec}`" for spec in args.train_data)
    if settings["num_parts"] > 1:
        per_part = args.samples_per_dataset or settings["samples_per_epoch"] // settings["num_parts"]
        sampling = f"{per_part} samples per part and epoch, drawn evenly from each part"
    else:
        sampling = "one pass over the data per epoch"
    evaluated = ", ".join(f"`{name}` (`{spec}`)" for name, spec in args.eval_sets.items()) or "no held-out set"
    training_data = (
        f"Trained with `examples/run_iml.py` on {parts} ({settings['num_train_samples']} images, {sampling}), "
        f"images resized to {args.image_size} x {args.image_size}, "
        + ("with the official training augmentations. " if args.augment else "without augmentation. ")
        + f"Evaluated on {evaluated}."
    )
    if args.builtin_synthetic or any(is_synthetic_spec(spec) for spec in args.train_data):
        training_data += (
            " The synthetic data set is built by `sparsevit_hf.data.synthetic` from scikit-image's sample photographs "
            "(splicing, copy-move and removal with JPEG traces); it is a demonstration, not a benchmark."
        )
    batch = (
        f"{settings['total_train_batch_size']} ({args.per_device_train_batch_size} per device x "
        f"{settings['num_processes']} process(es) x {args.gradient_accumulation_steps} accumulation)"
    )
    hyperparameters = {
        "Model": _model_description(args),
        "Input": f"RGB resized to {args.image_size} x {args.image_size} (bilinear), ImageNet mean/std",
        "Optimizer": f"AdamW, betas ({args.adam_beta1}, {args.adam_beta2}), eps {args.adam_epsilon}, weight decay "
        f"{args.weight_decay} (none on biases, norm weights, layer scales and fusion weights)",
        "Learning rate": f"{args.learning_rate:g}, {settings['warmup_steps']} warm-up steps, then per-step "
        f"half-cycle cosine to {args.min_lr:g}",
        "Batch size": batch,
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
    if args.model_preset and args.model_preset != "published" and not args.model_name_or_path:
        config = settings.get("config", {})
        description = (
            f"This checkpoint uses the `{args.model_preset}` size preset (`SparseViTConfig.from_preset`; widths "
            f"{config.get('hidden_sizes')}, depths {config.get('depths')}, sparsity rates "
            f"{config.get('sparsity_rates')}), not the published 50 M-parameter model."
        )
    base_model = args.model_name_or_path
    return {
        "eval_notes": " ".join([DEFAULT_EVAL_NOTES, BASELINE_NOTES, *_baseline_sentences(results)]),
        "model_id": args.hub_model_id or Path(args.output_dir).resolve().name,
        "base_model": base_model if base_model and is_hub_id(base_model) else None,
        "datasets": [spec for spec in args.train_data if is_hub_id(spec)],
        "training_data": training_data,
        "hyperparameters": hyperparameters,
        "eval_results": card_eval_results(results),
        "num_parameters": f"{num_parameters / 1e6:.2f} M",
        "description": description,
        "example_image": example_image,
    }
