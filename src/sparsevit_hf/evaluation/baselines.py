"""Baselines that never look at the image, and the content gap: how much a model gains by reading it.

A localization F1 means little on its own: where tampering sits in a data set is often predictable (regions placed
inside the frame crowd its middle), and a fixed map that covers the usual place scores well without reading a
pixel. Two baselines bound what such location knowledge is worth:

- the **content-free predictor** (`ContentFreePredictor`), the best fixed region for a data set's masks, fitted on
  the *training* masks only (`fit_content_free`): at a working resolution of `WORKING_SIZE` x `WORKING_SIZE`, the
  candidates are every pixel, the level sets of the mean training mask (`mean mask > t` for a grid of `t`) and
  centred ellipses covering 5% to 95% of the image; the one with the highest mean per-image F1 on the training masks
  wins. It is saved with the model (`save` / `load`, `BASELINE_FILE`) and resized to each evaluated image;
- the **shuffled pairing** (`shuffled_pairing`): the model's own maps scored against the masks of *other* images
  of the set (each scored image's map paired with the next scored image's mask, in data set order). It keeps
  everything about the model's output except its relation to the image it came from.

`content_gap = pixel_f1 - max(content-free F1, shuffled F1)`: positive only when the model beats both. A baseline
that cannot be computed (no tampered training mask, fewer than two scored images) is left out of the max with a
note; with neither, the gap is NaN and the note says why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .evaluator import MetricSettings

__all__ = [
    "BASELINE_FILE",
    "WORKING_SIZE",
    "ContentFreePredictor",
    "content_free_scores",
    "content_gap",
    "dataset_kinds",
    "dataset_masks",
    "fit_content_free",
    "fit_content_free_on_dataset",
    "per_kind_gaps",
    "resize_map",
    "shuffled_pairing",
]

# File of the fitted content-free predictor in a model folder.
BASELINE_FILE = "content_free_baseline.json"
# Side of the square grid the training masks are averaged and the candidates compared on.
WORKING_SIZE = 64
# Training masks read at most (evenly spaced over the data set): the mean mask and the choice are stable far below.
MAX_TRAINING_MASKS = 5000


@dataclass(frozen=True)
class ContentFreePredictor:
    """A fixed region, the same for every image: `score` (a `(S, S)` map) resized bilinearly to the image, above
    `level`. `name` says which candidate it is; `train_f1` is its mean per-image F1 on the `num_train_masks`
    tampered training masks it was fitted on; `mean_mask` is their mean at the working size (kept for reports)."""

    name: str
    score: np.ndarray
    level: float
    train_f1: float
    num_train_masks: int
    mean_mask: np.ndarray

    def predict(self, height: int, width: int) -> np.ndarray:
        """The `(height, width)` float32 map: 1 inside the region, 0 outside."""
        return (resize_map(self.score, height, width) > self.level).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "level": self.level, "train_f1": self.train_f1,
            "num_train_masks": self.num_train_masks, "working_size": int(self.score.shape[0]),
            "score": np.round(self.score, 6).tolist(), "mean_mask": np.round(self.mean_mask, 6).tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContentFreePredictor:
        return cls(
            name=str(data["name"]), score=np.asarray(data["score"], dtype=np.float32), level=float(data["level"]),
            train_f1=float(data["train_f1"]), num_train_masks=int(data["num_train_masks"]),
            mean_mask=np.asarray(data["mean_mask"], dtype=np.float32),
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `folder/BASELINE_FILE` (JSON) atomically."""
        path = Path(folder) / BASELINE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ContentFreePredictor | None:
        """The predictor saved in a model folder, or None when it has none. A damaged file raises `ValueError`
        naming it."""
        path = Path(folder) / BASELINE_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a readable content-free baseline ({error})") from error


def resize_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float map resized bilinearly to `(height, width)` (float32); the same array when the size already fits."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == (height, width):
        return values
    return np.asarray(Image.fromarray(values).resize((width, height), Image.BILINEAR), dtype=np.float32)


def _working_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """The fraction of each working-grid cell that is tampered (box filter), flattened."""
    picture = Image.fromarray(mask.astype(np.float32))
    return np.asarray(picture.resize((size, size), Image.BOX), dtype=np.float32).reshape(-1)


def dataset_masks(dataset) -> Iterator[np.ndarray]:
    """Every row's mask as an `(H, W)` bool array, all-False for an authentic row (its size from the image
    header); only masks and headers are decoded."""
    from datasets import Image as ImageFeature

    from ..data import image_size, load_mask

    raw = dataset.select_columns(["image", "mask"])
    raw = raw.cast_column("image", ImageFeature(decode=False)).cast_column("mask", ImageFeature(decode=False))
    for row in raw:
        if row["mask"] is None:
            width, height = image_size(row["image"])
            yield np.zeros((height, width), dtype=bool)
        else:
            yield load_mask(row["mask"])


def dataset_kinds(dataset) -> list[str] | None:
    """The manipulation kind of every row, or None when the set does not record kinds: the synthetic data set's
    `kind` column, or for a folder written by `sparsevit-synthesize` the kinds of its manifest."""
    if "kind" in dataset.column_names:
        return [str(kind) for kind in dataset["kind"]]
    if len(dataset) == 0:
        return None
    from datasets import Image as ImageFeature

    from ..data.synthetic import MANIFEST_NAME

    paths = [row["path"] for row in dataset.cast_column("image", ImageFeature(decode=False))["image"]]
    if not all(paths):
        return None
    root = Path(paths[0]).resolve().parent.parent  # <root>/Tp/<file>, <root>/Au/<file>
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        by_path = {str((root / entry["image"]).resolve()): str(entry["kind"]) for entry in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):  # no manifest, or not one this version can read
        return None
    kinds = [by_path.get(str(Path(path).resolve())) for path in paths]
    return None if None in kinds else kinds


def _centred_ellipse(size: int, fraction: float) -> np.ndarray:
    # An ellipse with the image's aspect covering `fraction` of it: pi * r^2 = fraction (unit square, r in [0, 1]).
    radius = math.sqrt(fraction / math.pi)
    coordinates = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    distance = np.hypot(coordinates[:, None], coordinates[None, :])
    return (distance <= radius).astype(np.float32)


def _candidates(mean_mask: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """(name, score map, level) of every candidate region."""
    size = mean_mask.shape[0]
    result = [("every pixel", np.ones_like(mean_mask), 0.5)]
    levels = np.unique(np.quantile(mean_mask, np.linspace(0.0, 0.98, 50)))
    result += [(f"mean training mask > {level:.3f}", mean_mask, float(level)) for level in levels]
    result += [
        (f"centred ellipse over {round(100 * f)}% of the image", _centred_ellipse(size, f), 0.5)
        for f in np.arange(0.05, 0.96, 0.05)
    ]
    return result


def fit_content_free(
    masks: Iterable[np.ndarray], size: int = WORKING_SIZE, max_masks: int | None = None
) -> ContentFreePredictor | None:
    """The best fixed region for `masks` (the *training* masks; see the module docstring), or None when none of
    them has a tampered pixel. Authentic (empty) masks are skipped: localization is scored on tampered images.

    Each mask is reduced to the working grid as the tampered fraction of each cell, so the per-image F1 of a
    candidate there (`2 * overlap / (mask area + region area)`) is close to its F1 at full size.
    """
    rows = [_working_mask(mask, size) for mask in masks if np.any(mask)]
    if max_masks is not None and len(rows) > max_masks:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, max_masks).round().astype(int)]
    if not rows:
        return None
    stacked = np.stack(rows)  # (N, S*S)
    mean_mask = stacked.mean(axis=0).reshape(size, size)
    candidates = _candidates(mean_mask)
    regions = np.stack([(score > level).reshape(-1) for _, score, level in candidates]).astype(np.float32)  # (K, S*S)
    overlap = stacked @ regions.T  # (N, K)
    denominator = stacked.sum(axis=1, keepdims=True) + regions.sum(axis=1)[None, :]
    f1 = np.divide(2 * overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0).mean(axis=0)
    best = int(np.argmax(f1))  # ties: the first, "every pixel" before any smaller region
    name, score, level = candidates[best]
    return ContentFreePredictor(name, score.astype(np.float32), level, float(f1[best]), len(rows), mean_mask)


def fit_content_free_on_dataset(dataset, size: int = WORKING_SIZE) -> ContentFreePredictor | None:
    """`fit_content_free` on a data set's masks (evenly spaced rows, at most `MAX_TRAINING_MASKS` read)."""
    if len(dataset) > MAX_TRAINING_MASKS:
        dataset = dataset.select(np.linspace(0, len(dataset) - 1, MAX_TRAINING_MASKS).round().astype(int).tolist())
    return fit_content_free(dataset_masks(dataset), size)


def content_free_scores(
    predictor: ContentFreePredictor | None, masks: Sequence[np.ndarray], settings: MetricSettings
) -> tuple[dict[str, Any], np.ndarray]:
    """`iml_metrics` of the content-free predictor on `masks` (one per image, in data set order) with `settings`,
    and its per-image F1 (NaN for every image when there is no predictor)."""
    if predictor is None:
        return {}, np.full(len(masks), np.nan)
    metric = settings.metric()
    for mask in masks:
        metric.add(predictor.predict(*mask.shape), mask)
    return metric.compute(), metric.per_image_stats()["f1"]


def _scored(masks: Sequence[np.ndarray], include_authentic: bool) -> list[int]:
    return [i for i, mask in enumerate(masks) if include_authentic or mask.any()]


def shuffled_pairing(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], settings: MetricSettings
) -> tuple[dict[str, Any], np.ndarray]:
    """The model's maps scored against other images' masks: the k-th scored image's map (resized bilinearly to the
    mask) against the (k+1)-th scored image's mask, cyclically, in data set order; scored images are the tampered
    ones (every image with `include_authentic`). Returns the metrics and the per-image F1 indexed by the image
    whose *mask* was scored (NaN for images not scored); empty metrics when fewer than two images are scored."""
    include = bool(settings.metric().include_authentic)
    scored = _scored(masks, include)
    per_image = np.full(len(masks), np.nan)
    if len(scored) < 2:
        return {}, per_image
    metric = settings.metric()
    for position, index in enumerate(scored):
        target = scored[(position + 1) % len(scored)]
        metric.add(resize_map(maps[index], *masks[target].shape), masks[target])
    per_image[np.roll(np.asarray(scored), -1)] = metric.per_image_stats()["f1"]
    return metric.compute(), per_image


def content_gap(pixel_f1: float, content_free_f1: float, shuffled_f1: float) -> float:
    """`pixel_f1 - max(content_free_f1, shuffled_f1)`, the max taken over the baselines that are defined; NaN when
    neither is (or `pixel_f1` is not)."""
    baselines = [value for value in (content_free_f1, shuffled_f1) if value is not None and not math.isnan(value)]
    if not baselines or pixel_f1 is None or math.isnan(pixel_f1):
        return float("nan")
    return float(pixel_f1 - max(baselines))


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def per_kind_gaps(
    kinds: Sequence[str], masks: Sequence[np.ndarray], model_f1: np.ndarray, content_free_f1: np.ndarray,
    shuffled_f1: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per manipulation kind (of tampered images): the model's, the content-free and the shuffled pixel F1 (the
    latter over the images whose masks were scored) and the content gap. Arrays are per image in data set order."""
    table: dict[str, dict[str, Any]] = {}
    tampered = np.asarray([mask.any() for mask in masks], dtype=bool)
    kinds_array = np.asarray(kinds, dtype=object)
    for kind in dict.fromkeys(k for k, t in zip(kinds, tampered) if t):
        chosen = tampered & (kinds_array == kind)
        entry = {
            "num_tampered": int(chosen.sum()),
            "pixel_f1": _mean(model_f1[chosen]),
            "content_free_f1": _mean(content_free_f1[chosen]),
            "shuffled_f1": _mean(shuffled_f1[chosen]),
        }
        entry["content_gap"] = content_gap(entry["pixel_f1"], entry["content_free_f1"], entry["shuffled_f1"])
        table[kind] = entry
    return table
