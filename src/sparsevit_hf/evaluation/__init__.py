"""The field's metrics of image manipulation localization."""

from .metrics import (
    EVALUATE_METRIC_SCRIPT,
    IMAGE_SCORES,
    IMLMetric,
    binary_roc_auc,
    iml_metrics,
    load_evaluate_metric,
)

__all__ = [
    "EVALUATE_METRIC_SCRIPT",
    "IMAGE_SCORES",
    "IMLMetric",
    "binary_roc_auc",
    "iml_metrics",
    "load_evaluate_metric",
]
