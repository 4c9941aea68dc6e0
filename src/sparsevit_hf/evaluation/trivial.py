"""The trivial baselines: constant predictions that ignore the image. A model has learned something only when it
beats them (and the content-free predictor fitted on training data, `baselines`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .evaluator import MetricSettings


def trivial_baselines(data, settings: MetricSettings | None = None) -> dict[str, dict[str, Any]]:
    """Metrics of the two constant predictions on an IML data set (or on its masks, a sequence of bool arrays):
    every pixel manipulated (probability 1) and every pixel authentic (probability 0), scored with `settings`
    (`MetricSettings`, default threshold 0.5). Of a data set only masks and image headers are read."""
    from .baselines import dataset_masks
    from .evaluator import MetricSettings

    settings = MetricSettings() if settings is None else settings
    masks = data if isinstance(data, Sequence) else dataset_masks(data)
    metrics = {name: settings.metric() for name in ("all_manipulated", "all_authentic")}
    for mask in masks:
        metrics["all_manipulated"].add(np.ones(mask.shape, dtype=np.float32), mask)
        metrics["all_authentic"].add(np.zeros(mask.shape, dtype=np.float32), mask)
    return {name: metric.compute() for name, metric in metrics.items()}
