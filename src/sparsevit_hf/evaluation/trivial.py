"""The trivial baselines: constant predictions that ignore the image. A model has learned something only when it
beats them (and the content-free predictors fitted on training data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .evaluator import MetricSettings


def trivial_baselines(dataset, settings: MetricSettings | None = None) -> dict[str, dict[str, Any]]:
    """Metrics of the two constant predictions on an IML data set: every pixel manipulated (probability 1) and every
    pixel authentic (probability 0), scored with `settings` (`MetricSettings`, default threshold 0.5). Only masks
    (and, for authentic rows, image headers) are read."""
    from datasets import Image as ImageFeature

    from ..data import image_size, load_mask
    from .evaluator import MetricSettings

    settings = MetricSettings() if settings is None else settings
    raw = dataset.select_columns(["image", "mask"])
    raw = raw.cast_column("image", ImageFeature(decode=False)).cast_column("mask", ImageFeature(decode=False))
    metrics = {name: settings.metric() for name in ("all_manipulated", "all_authentic")}
    for row in raw:
        if row["mask"] is None:
            width, height = image_size(row["image"])
            mask = np.zeros((height, width), dtype=bool)
        else:
            mask = load_mask(row["mask"])
        metrics["all_manipulated"].add(np.ones(mask.shape, dtype=np.float32), mask)
        metrics["all_authentic"].add(np.zeros(mask.shape, dtype=np.float32), mask)
    return {name: metric.compute() for name, metric in metrics.items()}
