"""Evaluation of image manipulation localization: the field's metrics, named evaluation sets, robustness
perturbations, the trivial and content-free baselines, the content gap, and the evaluation loop shared by training
and stand-alone evaluation (`sparsevit-evaluate`)."""

from .baselines import (
    BASELINE_FILE,
    ContentFreePredictor,
    content_gap,
    fit_content_free,
    fit_content_free_on_dataset,
    shuffled_pairing,
)
from .evaluator import (
    METRIC_NAMES,
    Evaluator,
    MetricSettings,
    SetEvaluation,
    evaluate,
    flatten_results,
    resolve_metric_name,
)
from .metrics import (
    EVALUATE_METRIC_SCRIPT,
    IMAGE_SCORES,
    PROTOCOLS,
    IMLMetric,
    binary_roc_auc,
    iml_metrics,
    load_evaluate_metric,
)
from .robustness import PERTURBATION_KINDS, Perturbation, parse_robustness
from .roc import ungrouped_roc_auc
from .sets import IMLEvaluationDataset, collate_iml, is_synthetic_spec, load_evaluation_sets, parse_eval_specs
from .trivial import trivial_baselines

__all__ = [
    "BASELINE_FILE",
    "ContentFreePredictor",
    "SetEvaluation",
    "content_gap",
    "fit_content_free",
    "fit_content_free_on_dataset",
    "shuffled_pairing",
    "EVALUATE_METRIC_SCRIPT",
    "Evaluator",
    "IMAGE_SCORES",
    "PROTOCOLS",
    "IMLEvaluationDataset",
    "IMLMetric",
    "METRIC_NAMES",
    "MetricSettings",
    "PERTURBATION_KINDS",
    "Perturbation",
    "binary_roc_auc",
    "collate_iml",
    "evaluate",
    "flatten_results",
    "iml_metrics",
    "is_synthetic_spec",
    "load_evaluate_metric",
    "ungrouped_roc_auc",
    "load_evaluation_sets",
    "parse_eval_specs",
    "parse_robustness",
    "resolve_metric_name",
    "trivial_baselines",
]
