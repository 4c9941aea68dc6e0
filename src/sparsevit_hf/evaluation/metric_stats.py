"""Per-image statistics rows (TP, FP, FN, TN, AUC, image score, label) and the metrics computed from a set of
rows: the arithmetic shared by `iml_metrics` and the streaming `IMLMetric` (definitions in `metrics`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .metric_inputs import _as_map, _to_numpy, _validate_label, _validate_prediction, _validate_reference
from .roc import binary_roc_auc, ungrouped_roc_auc

# Columns of the per-image statistics rows.
_TP, _FP, _FN, _TN, _AUC, _SCORE, _LABEL = range(7)
_NUM_STATS = 7
_STAT_NAMES = ("tp", "fp", "fn", "tn", "auc", "score", "label")


def _image_stats(
    prediction: Any,
    reference: Any,
    index: int,
    threshold: np.float32,
    image_score: str,
    protocol: str,
    label: Any = None,
) -> tuple[float, ...]:
    """Per-image statistics row (TP, FP, FN, TN, AUC, image score, image label)."""
    pred = _as_map(prediction, "predictions", index)
    ref = _as_map(reference, "references", index)
    if pred.shape != ref.shape:
        raise ValueError(
            f"predictions[{index}] has shape {tuple(_to_numpy(prediction).shape)} but "
            f"references[{index}] has shape {tuple(_to_numpy(reference).shape)}; each "
            "prediction must have the size of its mask."
        )
    pred = _validate_prediction(pred, index)
    mask = _validate_reference(ref, index)

    predicted = pred > threshold  # float32 against float32
    n = mask.size
    n_pos = int(np.count_nonzero(mask))
    n_pred = int(np.count_nonzero(predicted))
    tp = int(np.count_nonzero(predicted & mask))
    fp = n_pred - tp
    fn = n_pos - tp
    tn = n - tp - fp - fn
    if protocol == "exact":
        auc = binary_roc_auc(pred, mask)
    else:
        auc = ungrouped_roc_auc(pred, mask)
    if image_score == "max":
        score = float(pred.max())
    else:
        score = float(pred.mean(dtype=np.float64))
    image_label = n_pos > 0 if label is None else _validate_label(label, index)
    return (float(tp), float(fp), float(fn), float(tn), float(auc), score, float(image_label))



def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (only possible on authentic images)."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _metrics_from_stats(stats: np.ndarray, threshold: float, include_authentic: bool, protocol: str) -> dict[str, Any]:
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, _NUM_STATS)
    # Canonical row order: the results are then bit-identical whatever order (or
    # split across batches / processes) the images arrived in.
    stats = stats[np.lexsort(stats.T[::-1])]
    tp, fp, fn, tn = (stats[:, c] for c in (_TP, _FP, _FN, _TN))
    auc, score = stats[:, _AUC], stats[:, _SCORE]
    label = stats[:, _LABEL] > 0
    num_images = int(stats.shape[0])
    num_tampered = int(label.sum())

    sel = np.ones(num_images, dtype=bool) if include_authentic else (tp + fn) > 0
    s_tp, s_fp, s_fn, s_tn = tp[sel], fp[sel], fn[sel], tn[sel]
    f1 = _safe_ratio(2 * s_tp, 2 * s_tp + s_fp + s_fn)
    f1_inverted = _safe_ratio(2 * s_fn, 2 * s_fn + s_tn + s_tp)
    iou = _safe_ratio(s_tp, s_tp + s_fp + s_fn)
    sel_auc = auc[sel]
    if protocol == "exact":
        sel_auc = sel_auc[np.isfinite(sel_auc)]

    if sel.any():
        sum_tp, sum_fp, sum_fn = s_tp.sum(), s_fp.sum(), s_fn.sum()
        den = 2 * sum_tp + sum_fp + sum_fn
        f1_dataset = float(2 * sum_tp / den) if den > 0 else 0.0
    else:
        f1_dataset = float("nan")

    # Image level. The scores are float32 values (or means of float32 values) held in float64, so comparing them
    # with the float32 threshold in float64 is the float32 comparison.
    image_pred = score > float(np.float32(threshold))
    i_tp = int(np.count_nonzero(image_pred & label))
    i_fp = int(np.count_nonzero(image_pred & ~label))
    i_fn = int(np.count_nonzero(~image_pred & label))
    i_den = 2 * i_tp + i_fp + i_fn
    if protocol == "imdlbenco" and i_tp == 0:
        image_f1 = 0.0
    else:
        image_f1 = (2 * i_tp / i_den) if i_den > 0 else float("nan")
    return {
        "pixel_f1": _mean_or_nan(f1),
        "pixel_f1_dataset": f1_dataset,
        "pixel_f1_permuted": _mean_or_nan(np.maximum(f1, f1_inverted)),
        "pixel_iou": _mean_or_nan(iou),
        "pixel_auc": _mean_or_nan(sel_auc),
        "image_auc": binary_roc_auc(score, label) if num_images else float("nan"),
        "image_accuracy": float(np.mean(image_pred == label)) if num_images else float("nan"),
        "image_f1": image_f1,
        "num_images": num_images,
        "num_authentic": num_images - num_tampered,
        "num_tampered": num_tampered,
        "num_pixel_auc_images": int(sel_auc.size),
    }
