"""Resumable checkpoints written atomically, the training position they carry, and the run's JSON files.

A checkpoint is `accelerator.save_state` (model, optimiser, scheduler, gradient scaler, RNG states of every process)
plus `training_state.json` (`TrainingProgress`), written into `checkpoint-<step>.tmp` and renamed once complete, with
a completion marker written last: a run killed while saving never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PREFIX = "checkpoint-"
# Written last into a checkpoint folder, before the folder gets its final name; `latest` ignores folders without it.
COMPLETE_MARKER = "checkpoint_complete.json"
# Where the training position and history live inside a checkpoint.
TRAINING_STATE_NAME = "training_state.json"
_CHECKPOINT_NAME = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")


@dataclass
class TrainingProgress:
    """Where training stands: what a checkpoint needs besides the accelerator state.

    `batches_in_epoch` is the number of batches of `epoch` already consumed (per process); `history` holds the
    records of `log.jsonl`; `best_*` track the metric that selects the best model; `run_shape` is what the position
    means (`run_shape`), checked on resume by `check_run_shape`.
    """

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    run_shape: dict[str, Any] | None = None  # `run_shape`; None in checkpoints written before it was recorded

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingProgress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _replace_atomically(path: Path, write) -> None:
    """Call `write(handle)` on a new file beside `path`, sync it and rename it over `path`.

    The temporary file is created by `open(..., "x")`, so it gets the usual permissions (0666 less the process
    umask) without reading the umask, which only `os.umask` can do, process-wide and racing other threads.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename (readers never see half a file)."""

    def write(handle) -> None:
        json.dump(data, handle, indent=2, default=_json_default)
        handle.write("\n")

    _replace_atomically(Path(path), write)


def write_history(path: str | os.PathLike, history: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite the JSON-lines log `path` (one entry per line) atomically."""

    def write(handle) -> None:
        for entry in history:
            handle.write(json.dumps(entry, default=_json_default) + "\n")

    _replace_atomically(Path(path), write)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            except OSError:  # pragma: no cover - best effort (e.g. file systems without fsync)
                pass


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    progress: TrainingProgress,
    save_total_limit: int | None = None,
    protect: Iterable[str | os.PathLike] = (),
) -> Path:
    """Save a complete, resumable checkpoint `output_dir/checkpoint-<step>` atomically.

    Every process calls this (`accelerator.save_state` is collective). The state is written into
    `checkpoint-<step>.tmp`; once every process has finished, the main process writes `training_state.json` and
    the completion marker, syncs the files to disk and renames the folder to its final name. A run killed during a
    save leaves at most a `.tmp` folder, which `latest_checkpoint` ignores and the next save removes. Then the
    oldest complete checkpoints beyond `save_total_limit` are deleted (never those in `protect`).
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{progress.completed_steps}"
    tmp = output_dir / f"{final.name}.tmp"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for stale in output_dir.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / TRAINING_STATE_NAME, progress.to_dict())
        _fsync_tree(tmp)
        write_json_atomic(
            tmp / COMPLETE_MARKER,
            {"step": progress.completed_steps, "epoch": progress.epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
        )
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it
            trash = output_dir / f"{final.name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if save_total_limit:
            rotate_checkpoints(output_dir, save_total_limit, protect=[final, *protect])
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest (lowest step) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match and path.is_dir() and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_checkpoint(value: str, output_dir: str | os.PathLike) -> Path | None:
    """`--resume_from_checkpoint`: `latest` (None when there is none yet) or a path to a complete checkpoint.

    Raises `ValueError` saying what the path is instead: missing, a run's output folder (naming its latest
    checkpoint), an interrupted save, or some other folder."""
    if value == "latest":
        return latest_checkpoint(output_dir)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    if (path / COMPLETE_MARKER).is_file():
        return path
    inside = latest_checkpoint(path)
    if inside is not None:
        raise ValueError(
            f"--resume_from_checkpoint {value}: not a checkpoint but a run's output folder; did you mean `latest` "
            f"(with --output_dir {value}) or {inside}?"
        )
    if _CHECKPOINT_NAME.match(path.name.removesuffix(".tmp")):
        raise ValueError(
            f"--resume_from_checkpoint {value}: the checkpoint is incomplete (no {COMPLETE_MARKER}; the save was "
            "probably interrupted); use an earlier checkpoint or `latest`"
        )
    raise ValueError(
        f"--resume_from_checkpoint {value}: not a checkpoint (no {COMPLETE_MARKER}); give a checkpoint-<step> "
        "folder written by run_iml.py, or `latest`"
    )


def rotate_checkpoints(
    output_dir: str | os.PathLike, save_total_limit: int, protect: Iterable[str | os.PathLike] = ()
) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most `save_total_limit` remain; returns those deleted."""
    protected = {Path(p).resolve() for p in protect}
    checkpoints = list_checkpoints(output_dir)
    excess = len(checkpoints) - int(save_total_limit)
    deleted = []
    for path in checkpoints:
        if excess <= 0:
            break
        if path.resolve() in protected:
            continue
        # Make it incomplete first: a crash during the deletion leaves nothing that looks resumable.
        (path / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
        excess -= 1
    return deleted


class ResumeError(ValueError):
    """A checkpoint cannot continue this run: it was written with another run shape or model."""


# Config fields that change the model's parameter shapes: a checkpoint of another value can never be loaded.
ARCHITECTURE_FIELDS = (
    "num_channels", "hidden_sizes", "depths", "patch_sizes", "attention_head_size", "mlp_ratio", "fusion_hidden_size",
    "fused_blocks",
)


def run_shape(args, num_processes: int, config) -> dict[str, Any]:
    """What a stored training position means: the batch layout, the seed, the input size and the model.

    The position in a checkpoint counts batches per process of this shape; resumed with another batch size,
    accumulation, process count or seed, it skips other samples than those trained on, and another model's weights
    do not fit. `args` is a `TrainingArguments`, `config` the model's config."""
    # The model's own fields (those its config class declares), not transformers' generic ones, whose set changes
    # with the transformers version.
    values = config.to_dict()
    model_config = {key: values[key] for key in vars(type(config)).get("__annotations__", {}) if key in values}
    digest = hashlib.sha256(json.dumps(model_config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": num_processes,
        "seed": args.seed,
        "image_size": args.image_size,
        "model": f"preset {args.model_preset}" if args.model_preset else f"the model of {args.model_name_or_path}",
        "model_config_digest": digest,
        "model_config": model_config,
    }


def _describe_model(shape: Mapping[str, Any]) -> str:
    config = shape["model_config"]
    return f"{shape['model']} (hidden_sizes {config.get('hidden_sizes')}, depths {config.get('depths')})"


def check_run_shape(
    stored: Mapping[str, Any] | None, current: Mapping[str, Any], checkpoint: str | os.PathLike, allow: bool = False
) -> list[str]:
    """Compare the run shape stored in `checkpoint` with this run's; return the differences (as text).

    Raises `ResumeError` listing them when the model's architecture differs (its weights cannot be loaded, whatever
    `allow` says) or, unless `allow` (`--allow_resume_mismatch`), when anything else differs. A checkpoint written
    before run shapes were recorded (`stored` None) cannot be checked and passes."""
    if stored is None:
        return []
    if stored.get("model_config_digest") != current["model_config_digest"]:
        architecture = [
            key for key in ARCHITECTURE_FIELDS if stored["model_config"].get(key) != current["model_config"].get(key)
        ]
        if architecture:
            raise ResumeError(
                f"{checkpoint} was written by {_describe_model(stored)}; this run builds {_describe_model(current)}: "
                f"{', '.join(architecture)} differ, so its weights cannot be loaded. Resume with the same "
                "--model_preset / --model_name_or_path, or start a new --output_dir."
            )
    differences = [
        f"{key} {stored.get(key)} -> {current[key]}"
        for key in current
        if key not in ("model_config", "model_config_digest") and stored.get(key) != current[key]
    ]
    differences += [
        f"model config {key} {stored['model_config'].get(key)!r} -> {value!r}"
        for key, value in current["model_config"].items()
        if stored["model_config"].get(key) != value
    ]
    if differences and not allow:
        raise ResumeError(
            f"{checkpoint} was written by a run of another shape: {'; '.join(differences)}. Its position counts "
            "batches of that shape, so resuming would skip other samples than those trained on. Resume with the "
            "same settings, or pass --allow_resume_mismatch to continue anyway (the data order then differs from "
            "an uninterrupted run)."
        )
    return differences


def load_training_state(checkpoint: str | os.PathLike) -> TrainingProgress:
    """The `TrainingProgress` stored in a checkpoint."""
    path = Path(checkpoint) / TRAINING_STATE_NAME
    if not path.is_file():
        raise ValueError(f"{checkpoint} has no {TRAINING_STATE_NAME}: not a checkpoint written by run_iml.py")
    return TrainingProgress.from_dict(json.loads(path.read_text(encoding="utf-8")))
