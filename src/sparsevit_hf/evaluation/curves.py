"""Pixel F1 and IoU as functions of the threshold, streamed over batches like `IMLMetric`.

One pass over the maps gives the whole curve: per image the tampered and the predicted pixel counts above every
threshold come from two sorts and binary searches, so a sweep costs about as much as one pixel AUC. The rules are
those of `iml_metrics` (strictly above the threshold, compared in float32; per-image F1 / IoU averaged over the
tampered images, or over every image with `include_authentic`), so the curve at a threshold equals `iml_metrics`'
`pixel_f1` / `pixel_iou` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metric_inputs import PROTOCOLS, _as_list, _as_map, _validate_prediction, _validate_reference

__all__ = ["DEFAULT_THRESHOLDS", "ThresholdSweep"]

# 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


class ThresholdSweep:
    """Pixel F1 and IoU at each of `thresholds`, over images added batch by batch.

    `add_batch(predictions, references, accelerator=None)` takes what `IMLMetric.add_batch` takes (with an
    accelerator, every process calls it for every batch of a prepared loader, and each image is counted once);
    `compute()` returns `{"thresholds": [...], "pixel_f1": [...], "pixel_iou": [...], "num_images": n}` (NaN where
    no image is scored). `include_authentic=None` takes the protocol's rule, as in `IMLMetric`.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        include_authentic: bool | None = None,
        protocol: str = "exact",
    ):
        values = [float(t) for t in thresholds]
        if not values or any(not 0.0 <= t <= 1.0 for t in values) or sorted(set(values)) != values:
            raise ValueError(f"thresholds must be increasing values in [0, 1], got {list(thresholds)!r}.")
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown protocol {protocol!r}; choose one of {', '.join(map(repr, PROTOCOLS))}.")
        self.thresholds = values
        self.include_authentic = (protocol == "imdlbenco") if include_authentic is None else bool(include_authentic)
        self._float32 = np.asarray(values, dtype=np.float32)
        self._rows: list[tuple[float, ...]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def batch_rows(self, predictions: Any, references: Any) -> list[tuple[float, ...]]:
        """Per image: the tampered pixel count, then TP at each threshold, then the predicted count at each."""
        preds, refs = _as_list(predictions, "predictions"), _as_list(references, "references")
        if len(preds) != len(refs):
            raise ValueError(f"Got {len(preds)} predictions but {len(refs)} references; they must pair up one to one.")
        rows = []
        for index, (prediction, reference) in enumerate(zip(preds, refs)):
            pred = _validate_prediction(_as_map(prediction, "predictions", index), index)
            mask = _validate_reference(_as_map(reference, "references", index), index)
            if pred.shape != mask.shape:
                raise ValueError(f"predictions[{index}] has shape {pred.shape} but its mask {mask.shape}.")
            every = np.sort(pred, axis=None)
            tampered = np.sort(pred[mask])
            # Counts strictly above each threshold: everything right of the last value equal to it.
            predicted = every.size - np.searchsorted(every, self._float32, side="right")
            true_positive = tampered.size - np.searchsorted(tampered, self._float32, side="right")
            rows.append((float(tampered.size), *map(float, true_positive), *map(float, predicted)))
        return rows

    def add_rows(self, rows: Sequence[Sequence[float]]) -> None:
        """Add rows made by `batch_rows` (for a caller that gathers them itself, each image once)."""
        self._rows.extend(tuple(float(v) for v in row) for row in rows)

    def add_batch(self, predictions: Any, references: Any, *, accelerator: Any = None) -> None:
        rows = self.batch_rows(predictions, references)
        if accelerator is not None:
            rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
        self._rows.extend(tuple(row) for row in rows)

    def compute(self) -> dict[str, Any]:
        count = len(self.thresholds)
        rows = np.asarray(self._rows, dtype=np.float64).reshape(-1, 1 + 2 * count)
        positives, tp, predicted = rows[:, :1], rows[:, 1 : 1 + count], rows[:, 1 + count :]
        if not self.include_authentic:
            keep = positives[:, 0] > 0
            positives, tp, predicted = positives[keep], tp[keep], predicted[keep]
        f1 = np.zeros_like(tp)
        np.divide(2 * tp, predicted + positives, out=f1, where=(predicted + positives) > 0)
        iou = np.zeros_like(tp)
        np.divide(tp, predicted + positives - tp, out=iou, where=(predicted + positives - tp) > 0)
        empty = tp.shape[0] == 0
        return {
            "thresholds": list(self.thresholds),
            "pixel_f1": [float("nan")] * count if empty else f1.mean(axis=0).tolist(),
            "pixel_iou": [float("nan")] * count if empty else iou.mean(axis=0).tolist(),
            "num_images": int(tp.shape[0]),
        }
