"""Reusable parts of SparseViT training (`examples/run_iml.py`): model presets, optimiser parameter groups, the
learning-rate schedule of the official recipe, reproducible data sets / samplers / collation, atomic checkpoints,
the distributed evaluation loop, robustness perturbations, metric names, the outputs of a run (model folders,
the best model, the log) and non-blocking Hub pushes.

Reproducibility contract (what makes `--resume_from_checkpoint` continue exactly):

* the sampler yields `(epoch, index)` pairs drawn from `(seed, epoch)` only (`EpochSampler`), so an epoch's order
  does not depend on how it was reached;
* augmentations of sample `index` in `epoch` are seeded by `(seed, epoch, index)` (`IMLTrainingDataset`), whatever
  the process, the DataLoader worker or the number of samples already drawn;
* the torch RNG (stochastic depth, dropout) is re-seeded before every batch from `(seed, epoch, batch, process)`
  (`batch_seed`), as fairseq does per update, so model randomness does not depend on anything consumed before;
* the optimiser, scheduler, gradient scaler and model (BatchNorm statistics included) are restored by
  `accelerator.load_state`, and the position in the epoch by skipping the batches already consumed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .configuration_sparsevit import PUBLISHED_SPARSITY_RATES, SparseViTConfig

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_PRESETS",
    "METRIC_NAMES",
    "CHECKPOINT_PREFIX",
    "COMPLETE_MARKER",
    "TRAINING_STATE_NAME",
    "scaled_sparsity_schedule",
    "preset_config",
    "parameter_groups",
    "WarmupCosineSchedule",
    "create_lr_scheduler",
    "derive_seed",
    "batch_seed",
    "EpochSampler",
    "IMLTrainingDataset",
    "IMLEvaluationDataset",
    "collate_iml",
    "Perturbation",
    "parse_robustness",
    "parse_eval_specs",
    "resolve_metric_name",
    "is_better",
    "TrainingProgress",
    "save_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "resolve_checkpoint",
    "rotate_checkpoints",
    "load_training_state",
    "evaluate",
    "trivial_baselines",
    "HubPusher",
    "create_hub_pusher",
    "write_json_atomic",
    "write_history",
    "save_model_folder",
    "save_best_model",
    "flatten_results",
]


# ------------------------------------------------------------------------------------------------------------------
# Model presets
# ------------------------------------------------------------------------------------------------------------------
def scaled_sparsity_schedule(depth3: int, depth4: int) -> tuple[list[list[int]], list[list[int]]]:
    """The published sparsity schedule resampled to other stage depths, keeping its pattern.

    Block `i` of a stage of depth `d` takes the rate of the published block at the centre of its share,
    `floor((i + 0.5) * D / d)` (D the published depth), so stage 3 of depth 4 runs S = 8, 4, 2, 1 and stage 4 of
    depth 2 runs S = 2, 1. As in the paper, the fusion head reads the last block of every run of equal S (the
    published `fused_blocks` are exactly those). Returns `(sparsity_rates, fused_blocks)`.
    """
    rates, fused = [], []
    for depth, published in zip((depth3, depth4), PUBLISHED_SPARSITY_RATES):
        if depth < 1:
            raise ValueError(f"attention stage depths must be positive, got {depth3}, {depth4}")
        stage = [published[min(len(published) - 1, int((i + 0.5) * len(published) / depth))] for i in range(depth)]
        rates.append(stage)
        fused.append([i for i in range(depth) if i == depth - 1 or stage[i + 1] != stage[i]])
    return rates, fused


def _preset(hidden_sizes, depths, head, fusion, drop_path) -> dict[str, Any]:
    rates, fused = scaled_sparsity_schedule(depths[2], depths[3])
    return {
        "hidden_sizes": list(hidden_sizes),
        "depths": list(depths),
        "attention_head_size": head,
        "fusion_hidden_size": fusion,
        "sparsity_rates": rates,
        "fused_blocks": fused,
        "drop_path_rate": drop_path,
    }


# Named model sizes. `published` is the paper's model (50 M parameters); `small` (2.8 M) trains in minutes on a
# CPU at 256 px; `tiny` (0.1 M) is for tests and smoke runs.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "published": {},
    "small": _preset([32, 64, 128, 256], [1, 2, 4, 2], 32, 256, 0.1),
    "tiny": _preset([8, 16, 32, 64], [1, 1, 2, 2], 16, 32, 0.0),
}


def preset_config(name: str, **overrides: Any) -> SparseViTConfig:
    """`SparseViTConfig` of a named preset (`MODEL_PRESETS`), with keyword overrides."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}")
    return SparseViTConfig(**{**MODEL_PRESETS[name], **overrides})


# ------------------------------------------------------------------------------------------------------------------
# Optimisation
# ------------------------------------------------------------------------------------------------------------------
# Parameters that never get weight decay besides biases and normalisation weights (all 0-/1-D tensors): the
# per-channel fusion weights gamma_k of the LFF head are stored as one (maps, channels) matrix.
NO_DECAY_NAMES = ("fusion_weights",)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups of the official recipe: `weight_decay` on weight matrices and convolution kernels;
    none on biases, LayerNorm / BatchNorm weights, the layer-scale vectors and the fusion weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim <= 1 or name.endswith(NO_DECAY_NAMES) or "layer_scale" in name:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


@dataclass(frozen=True)
class WarmupCosineSchedule:
    """Learning-rate multiplier of the official recipe, per optimisation step (a `LambdaLR` lambda).

    Linear warm-up from 0 over `warmup_steps`, then a half-cycle cosine from the base rate down to `min_lr` at
    `total_steps`: `lr(step) = min_lr + (base_lr - min_lr) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2`.
    The multiplier returned is `lr(step) / base_lr`; step `k` (0-based) is the k-th update.
    """

    base_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.base_lr if self.base_lr else 0.0


def create_lr_scheduler(
    optimizer: torch.optim.Optimizer, base_lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` with `WarmupCosineSchedule` (picklable, so it is saved with `accelerator.save_state`)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))
    schedule = WarmupCosineSchedule(base_lr, min_lr, warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# ------------------------------------------------------------------------------------------------------------------
# Seeds
# ------------------------------------------------------------------------------------------------------------------
def derive_seed(*values: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (NumPy `SeedSequence`; well mixed, deterministic)."""
    entropy = [int(v) % (1 << 64) for v in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def batch_seed(seed: int, epoch: int, batch_index: int, process_index: int) -> int:
    """Seed of the torch RNG for one training batch (stochastic depth, dropout) of one process."""
    return derive_seed(seed, 1, epoch, batch_index, process_index)


# ------------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------------
class EpochSampler(torch.utils.data.Sampler):
    """Yields `(epoch, index)` pairs: the `data.BalancedSampler` order of the current epoch, tagged with the epoch
    so that the data set can seed each sample's augmentation from `(seed, epoch, index)`.

    `per_dataset` None means one full pass over every part (a seeded permutation for a single data set);
    otherwise that many samples are drawn from each part (the CAT-Net protocol for combined data sets).
    Call `set_epoch` before each epoch (`accelerate`'s data loaders forward it).
    """

    def __init__(self, sizes: Sequence[int], per_dataset: int | Sequence[int] | None = None, seed: int = 0):
        from .data.loaders import BalancedSampler

        sizes = [int(size) for size in sizes]
        self.inner = BalancedSampler(sizes, sizes if per_dataset is None else per_dataset, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.inner.set_epoch(epoch)
        return ((epoch, index) for index in self.inner)


_WARM_UP_IMAGE = np.zeros((32, 32, 3), dtype=np.uint8)


class IMLTrainingDataset(torch.utils.data.Dataset):
    """Training view of an IML `datasets.Dataset`: decode, augment (seeded by `(seed, epoch, index)`), process.

    Items are `{"pixel_values": (3, S, S) float32, "labels": (S, S) float32}`. Keys are `(epoch, index)` pairs
    (`EpochSampler`) or plain indices (epoch 0).
    """

    def __init__(
        self,
        dataset,
        processor,
        image_size: int,
        seed: int = 0,
        augment: bool = True,
        augmentation_kwargs: Mapping[str, Any] | None = None,
    ):
        from .data.loaders import with_decoding

        self.rows = with_decoding(dataset.select_columns(["image", "mask"]))
        self.processor = processor
        self.seed = int(seed)
        self.transform = None
        if augment:
            from .data.augmentations import training_transforms

            self.transform = training_transforms(image_size, seed=self.seed, **dict(augmentation_kwargs or {}))
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _prepare_worker(self) -> None:
        # `JointTransform` re-seeds itself from the worker's torch seed on its first call inside each DataLoader
        # worker, which would override our explicit per-sample seed for that one call. One throw-away call per
        # worker consumes that automatic re-seed; from then on `set_seed` alone decides.
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self.transform(_WARM_UP_IMAGE, None)
            self._worker_seed = info.seed

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, (tuple, list)) else (0, key)
        row = self.rows[int(index)]
        image, mask = row["image"], row["mask"]
        if self.transform is not None:
            self._prepare_worker()
            self.transform.set_seed(derive_seed(self.seed, 0, epoch, index))
            image, mask = self.transform(image, mask)
        encoding = self.processor(images=image, segmentation_maps=mask, return_tensors="pt")
        return {"pixel_values": encoding["pixel_values"][0], "labels": encoding["labels"][0]}


class IMLEvaluationDataset(torch.utils.data.Dataset):
    """Evaluation view: decode, optionally degrade (`Perturbation`), process.

    Items are `{"pixel_values", "labels"}` at the model input size plus `"mask"`, the ground truth at the original
    image size (bool NumPy array), against which the metrics are computed.
    """

    def __init__(self, dataset, processor, perturbation: Perturbation | None = None, seed: int = 0):
        from .data.loaders import with_decoding

        self.rows = with_decoding(dataset.select_columns(["image", "mask"]))
        self.processor = processor
        self.perturbation = perturbation
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[int(index)]
        image, mask = row["image"], row["mask"]
        if self.perturbation is not None:
            image = self.perturbation(image, derive_seed(self.seed, 2, index))
        encoding = self.processor(images=image, segmentation_maps=mask, return_tensors="pt")
        return {
            "pixel_values": encoding["pixel_values"][0],
            "labels": encoding["labels"][0],
            "mask": np.asarray(mask, dtype=bool),
        }


def collate_iml(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape (`pixel_values`, `labels`); keep anything else (original-size masks) as lists."""
    batch: dict[str, Any] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor) and all(value.shape == values[0].shape for value in values):
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch


# ------------------------------------------------------------------------------------------------------------------
# Robustness perturbations
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Perturbation:
    """One test-time degradation of `perturbations.py`: `jpeg` (quality), `blur` (kernel size) or `noise` (sigma in
    8-bit units). Called on an `(H, W, 3)` uint8 array with a seed (used by `noise`), returns the degraded array."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.kind}{value}"

    def __call__(self, image: np.ndarray, seed: int = 0) -> np.ndarray:
        from PIL import Image

        from .data import perturbations

        picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
        if self.kind == "jpeg":
            picture = perturbations.jpeg_compress(picture, int(self.value))
        elif self.kind == "blur":
            picture = perturbations.gaussian_blur(picture, int(self.value))
        else:
            picture = perturbations.gaussian_noise(picture, float(self.value), seed=seed)
        return np.asarray(picture)


_PERTURBATION_KINDS = {"jpeg": int, "blur": int, "noise": float}


def parse_robustness(specs: Iterable[str]) -> list[Perturbation]:
    """Parse `kind:v1,v2,...` items (`jpeg:50,70,90 blur:3,7 noise:5,15`) into checked `Perturbation`s."""
    result: list[Perturbation] = []
    for spec in specs:
        kind, sep, values = str(spec).partition(":")
        kind = kind.strip().lower()
        if kind not in _PERTURBATION_KINDS or not sep or not values.strip():
            raise ValueError(
                f"bad robustness spec {spec!r}: expected KIND:V1,V2,... with KIND one of "
                f"{', '.join(_PERTURBATION_KINDS)} (e.g. jpeg:50,70,90 blur:3,7 noise:5,15)"
            )
        for text in values.split(","):
            try:
                value = _PERTURBATION_KINDS[kind](text.strip())
            except ValueError:
                raise ValueError(f"bad value {text.strip()!r} in robustness spec {spec!r}") from None
            perturbation = Perturbation(kind, value)
            try:  # the perturbation functions validate their own arguments
                perturbation(np.zeros((8, 8, 3), dtype=np.uint8))
            except (TypeError, ValueError) as error:
                raise ValueError(f"bad robustness spec {spec!r}: {error}") from None
            if perturbation not in result:
                result.append(perturbation)
    return result


# ------------------------------------------------------------------------------------------------------------------
# Evaluation sets and metric names
# ------------------------------------------------------------------------------------------------------------------
# Metrics reported per evaluation set (`metrics.iml_metrics` plus the loss).
METRIC_NAMES = (
    "pixel_f1",
    "pixel_f1_dataset",
    "pixel_f1_permuted",
    "pixel_iou",
    "pixel_auc",
    "image_auc",
    "image_accuracy",
    "image_f1",
    "loss",
)
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def parse_eval_specs(items: Iterable[str]) -> dict[str, str]:
    """Parse `name=spec` items into an ordered `{name: spec}`; names are letters, digits, `_ . -`."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, spec = str(item).partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise ValueError(
                f"bad --eval_data {item!r}: give each evaluation set a name, as NAME=SPEC (e.g. casia=/data/CASIAv1 "
                "or synthetic=synthetic:test)"
            )
        if not _SET_NAME.match(name):
            raise ValueError(f"bad evaluation set name {name!r}: use letters, digits, '_', '.' and '-' only")
        if name in result:
            raise ValueError(f"evaluation set name {name!r} is given twice")
        result[name] = spec
    return result


def resolve_metric_name(metric: str, set_names: Sequence[str]) -> str:
    """Check `--metric_for_best_model` and return it as `<set>/<metric>`.

    `set_names` are the evaluated set names (robustness variants included, e.g. `casia@jpeg70`). A bare metric
    name is accepted when there is exactly one set. Raises `ValueError` listing the valid choices.
    """
    metric = metric.strip()
    if "/" in metric:
        set_name, _, name = metric.rpartition("/")
    elif len(set_names) == 1:
        set_name, name = set_names[0], metric
    else:
        raise ValueError(
            f"--metric_for_best_model {metric!r} must name its evaluation set as <set>/<metric> when there are "
            f"several sets ({', '.join(set_names)})"
        )
    if set_name not in set_names:
        raise ValueError(
            f"--metric_for_best_model {metric!r}: unknown evaluation set {set_name!r}; evaluated sets: "
            f"{', '.join(set_names) or '(none)'}"
        )
    if name not in METRIC_NAMES:
        raise ValueError(
            f"--metric_for_best_model {metric!r}: unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}"
        )
    return f"{set_name}/{name}"


def is_better(value: float, best: float | None, greater_is_better: bool) -> bool:
    """Whether `value` improves on `best` (NaN never does; anything beats no best yet)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best if greater_is_better else value < best


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------------------------
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
    records of `log.jsonl`; `best_*` track `--metric_for_best_model`.
    """

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingProgress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=_json_default)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
    """`--resume_from_checkpoint`: `latest` (None when there is none yet) or a path to a complete checkpoint."""
    if value == "latest":
        return latest_checkpoint(output_dir)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {value}: the checkpoint is incomplete (no {COMPLETE_MARKER}; the save was "
            "probably interrupted); use an earlier checkpoint or `latest`"
        )
    return path


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


def load_training_state(checkpoint: str | os.PathLike) -> TrainingProgress:
    """The `TrainingProgress` stored in a checkpoint."""
    path = Path(checkpoint) / TRAINING_STATE_NAME
    if not path.is_file():
        raise ValueError(f"{checkpoint} has no {TRAINING_STATE_NAME}: not a checkpoint written by run_iml.py")
    return TrainingProgress.from_dict(json.loads(path.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataloader,
    accelerator,
    processor,
    threshold: float = 0.5,
    include_authentic: bool = False,
    image_score: str = "max",
    description: str | None = None,
) -> dict[str, Any]:
    """Metrics of `model` on a prepared evaluation data loader (`IMLEvaluationDataset` + `collate_iml`).

    Every process runs its shard; per-image statistics are gathered with `IMLMetric.add_batch(...,
    accelerator=...)`, which drops the samples `accelerate` repeats to even out the last batch, so each image is
    counted exactly once. Predictions are mapped back to each image's original size (bilinear, like the
    processor's post-processing) before scoring. Returns `iml_metrics`' keys plus `loss` (the training BCE, per
    image at the model input size, averaged over images).
    """
    from tqdm.auto import tqdm

    from .evaluation.metrics import IMLMetric

    was_training = model.training
    model.eval()
    metric = IMLMetric(threshold=threshold, include_authentic=include_authentic, image_score=image_score)
    loss_sum, loss_count = 0.0, 0
    for batch in tqdm(dataloader, desc=description, disable=not accelerator.is_local_main_process, leave=False):
        outputs = model(pixel_values=batch["pixel_values"])
        logits = outputs.logits.float()
        labels = batch["labels"].float()
        upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        per_image = F.binary_cross_entropy_with_logits(upsampled, labels, reduction="none").mean(dim=(1, 2))
        per_image = accelerator.gather_for_metrics(per_image)
        loss_sum += float(per_image.sum())
        loss_count += int(per_image.numel())
        masks = batch["mask"]
        probabilities = processor.post_process_semantic_segmentation(
            logits, target_sizes=[mask.shape for mask in masks], return_probabilities=True
        )
        metric.add_batch([p["probabilities"].cpu() for p in probabilities], masks, accelerator=accelerator)
    results = metric.compute()
    results["loss"] = loss_sum / loss_count if loss_count else float("nan")
    model.train(was_training)
    return results


def trivial_baselines(
    dataset, threshold: float = 0.5, include_authentic: bool = False, image_score: str = "max"
) -> dict[str, dict[str, Any]]:
    """Metrics of the two constant predictions on an IML data set: every pixel manipulated (probability 1) and every
    pixel authentic (probability 0). A model has learned something when it beats both. Only masks (and, for
    authentic rows, image headers) are read."""
    from datasets import Image as ImageFeature

    from .data.loaders import image_size, load_mask
    from .evaluation.metrics import IMLMetric

    raw = dataset.select_columns(["image", "mask"])
    raw = raw.cast_column("image", ImageFeature(decode=False)).cast_column("mask", ImageFeature(decode=False))
    metrics = {
        name: IMLMetric(threshold, include_authentic, image_score) for name in ("all_manipulated", "all_authentic")
    }
    for row in raw:
        if row["mask"] is None:
            width, height = image_size(row["image"])
            mask = np.zeros((height, width), dtype=bool)
        else:
            mask = load_mask(row["mask"])
        metrics["all_manipulated"].add(np.ones(mask.shape, dtype=np.float32), mask)
        metrics["all_authentic"].add(np.zeros(mask.shape, dtype=np.float32), mask)
    return {name: metric.compute() for name, metric in metrics.items()}


# ------------------------------------------------------------------------------------------------------------------
# Outputs of a run
# ------------------------------------------------------------------------------------------------------------------
def save_model_folder(accelerator, model: nn.Module, processor, folder: str | os.PathLike, state_dict=None) -> None:
    """`save_pretrained` of the (unwrapped) model, with its config, auto_map and code files, and of the processor.
    Call it on every process: gathering a sharded state dict is collective; only the main process writes."""
    unwrapped = accelerator.unwrap_model(model)
    if state_dict is None:
        state_dict = accelerator.get_state_dict(model)
    unwrapped.save_pretrained(
        folder, is_main_process=accelerator.is_main_process, save_function=accelerator.save, state_dict=state_dict
    )
    if accelerator.is_main_process:
        processor.save_pretrained(folder)


def save_best_model(accelerator, model: nn.Module, processor, folder: str | os.PathLike, eval_results: Any) -> None:
    """Replace the model folder `folder` (with `eval_results.json`) atomically: write `<folder>.tmp`, then swap it
    in, so that a crash at any moment leaves a complete best model. Call it on every process."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    save_model_folder(accelerator, model, processor, tmp)
    if accelerator.is_main_process:
        write_json_atomic(tmp / "eval_results.json", eval_results)
        old = folder.with_name(f"{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def flatten_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{set: {metric: value}} -> {"set/metric": value}, the keys of trackers and all_results.json."""
    return {f"{name}/{key}": value for name, metrics in results.items() for key, value in metrics.items()}


def write_history(path: str | os.PathLike, history: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite the JSON-lines log `path` (one entry per line) atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for entry in history:
            handle.write(json.dumps(entry, default=float) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------------------
# Hub
# ------------------------------------------------------------------------------------------------------------------
class HubPusher:
    """Pushes a folder to a Hub model repository without blocking training.

    Each `push` snapshots the folder (so that training may rewrite it meanwhile) and hands the upload to a
    background thread through `upload` (a callable `upload(folder, commit_message) -> Any`). One upload runs at a
    time; a push requested while another is running replaces any push still waiting (the newest state wins). A
    failed upload is logged as a warning and training goes on: the next push uploads the whole folder again.
    `finish` waits for the uploads and then does the final push in the foreground; it returns the error of the
    final push (None on success), so that the caller can exit non-zero.
    """

    def __init__(
        self,
        upload: Callable[[str, str], Any],
        ignore_patterns: Sequence[str] = (),
        staging_dir: str | os.PathLike | None = None,
    ):
        self.upload = upload
        self.ignore_patterns = list(ignore_patterns)
        self.staging_dir = staging_dir
        self.failures: list[str] = []
        self.successes = 0
        self._lock = threading.Lock()
        self._pending: tuple[str, str] | None = None
        self._thread: threading.Thread | None = None

    def _snapshot(self, folder: str | os.PathLike) -> str:
        import fnmatch

        folder = Path(folder)
        snapshot = Path(tempfile.mkdtemp(prefix="sparsevit-push-", dir=self.staging_dir))
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(relative, pattern) for pattern in self.ignore_patterns):
                continue
            if path.is_file():
                target = snapshot / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        return str(snapshot)

    def _run(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._thread = None
                    return
            snapshot, message = job
            try:
                self.upload(snapshot, message)
                self.successes += 1
            except Exception as error:
                self.failures.append(f"{message}: {error}")
                logger.warning(
                    "Push to the Hub failed (%s: %s); training goes on, the next push retries.", message, error
                )
            finally:
                shutil.rmtree(snapshot, ignore_errors=True)

    def push(self, folder: str | os.PathLike, commit_message: str) -> None:
        """Snapshot `folder` now and upload it in the background."""
        snapshot = self._snapshot(folder)
        with self._lock:
            if self._pending is not None:
                shutil.rmtree(self._pending[0], ignore_errors=True)
            self._pending = (snapshot, commit_message)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hub-push", daemon=True)
                self._thread.start()

    def wait(self) -> None:
        """Wait for the background uploads."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join()

    def finish(self, folder: str | os.PathLike, commit_message: str) -> Exception | None:
        """Wait for background uploads, then push `folder` in the foreground; returns the error, if any."""
        self.wait()
        snapshot = self._snapshot(folder)
        try:
            self.upload(snapshot, commit_message)
            self.successes += 1
            return None
        except Exception as error:
            self.failures.append(f"{commit_message}: {error}")
            return error
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)


def create_hub_pusher(
    repo_id: str, token: str | None = None, private: bool = False, push_checkpoints: bool = False
) -> tuple[str, HubPusher]:
    """Create the Hub model repository now (a bad token or id fails before training, not after it) and return its
    full id with a `HubPusher` whose uploads go through `sparsevit_hf.hub.push_to_hub`: the model files only, or
    with `push_checkpoints` also the resumable checkpoints, the log and the TensorBoard runs (a second commit)."""
    from huggingface_hub import HfApi

    from .hub.card import UPLOAD_IGNORE_PATTERNS, push_to_hub

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id

    def upload(folder: str, message: str) -> None:
        push_to_hub(folder, repo_id, token=token, private=private, commit_message=message)
        if push_checkpoints:
            api.upload_folder(
                repo_id=repo_id, folder_path=folder, repo_type="model", commit_message=f"{message} (checkpoints, logs)",
                allow_patterns=["checkpoint-*", "log.jsonl", "all_results.json", "runs/*"],
                ignore_patterns=["*.tmp", ".*", "*/.*"],
            )

    # A snapshot copies only what an upload may send: not what push_to_hub filters out, the best-model copy, swap
    # leftovers or the log; with push_checkpoints it keeps the checkpoints, runs and log for the second upload.
    ignore = list(UPLOAD_IGNORE_PATTERNS) + ["best_model*", "*.old", "log.jsonl"]
    if push_checkpoints:
        ignore = [p for p in ignore if p not in ("checkpoint-*", "runs/*", "log.jsonl", "*optimizer.*", "*scheduler.*",
                                                  "*scaler.*", "*rng_state*", "*.pt", "*.pth", "*.ckpt")]
    return repo_id, HubPusher(upload, ignore_patterns=ignore)
