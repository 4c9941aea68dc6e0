"""The field's metrics of image manipulation localization."""

from .metrics import (
    EVALUATE_METRIC_SCRIPT,
    IMAGE_SCORES,
    PROTOCOLS,
    IMLMetric,
    binary_roc_auc,
    iml_metrics,
    load_evaluate_metric,
)
from .roc import ungrouped_roc_auc

__all__ = [
    "EVALUATE_METRIC_SCRIPT",
    "IMAGE_SCORES",
    "PROTOCOLS",
    "IMLMetric",
    "binary_roc_auc",
    "iml_metrics",
    "load_evaluate_metric",
    "ungrouped_roc_auc",
]
