"""ROC AUC of one score map against a binary mask, the exact way and the IMDLBenCo way.

Both take scores and labels of any shape (flattened) and count in integers; only the final division is a float.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["binary_roc_auc", "ungrouped_roc_auc"]


def _flat(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores).ravel()
    y = np.asarray(labels).ravel().astype(bool, copy=False)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if s.dtype == np.float16:
        s = s.astype(np.float32)
    return s, y


def binary_roc_auc(scores: Any, labels: Any) -> float:
    """Exact ROC AUC of `scores` against binary `labels`.

    Equals the Mann-Whitney statistic `P(s_pos > s_neg) + P(s_pos == s_neg) / 2`, i.e. the trapezoidal area under
    the ROC curve with tied scores grouped into one step, as `sklearn.metrics.roc_auc_score` computes it. Runs in
    O(n log n) with two sorts and two binary searches. NaN when only one class is present.
    """
    s, y = _flat(scores, labels)
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    # For each positive: (#negatives strictly below) + (#negatives below or equal); summed, that is twice the number
    # of (positive, negative) pairs won, ties counting 1/2.
    below = np.searchsorted(neg, pos, side="left")
    below_or_equal = np.searchsorted(neg, pos, side="right")
    twice_wins = int(below.sum(dtype=np.int64)) + int(below_or_equal.sum(dtype=np.int64))
    return twice_wins / (2.0 * n_pos * n_neg)


def ungrouped_roc_auc(scores: Any, labels: Any) -> float:
    """IMDLBenCo's pixel AUC: the ROC curve walked one pixel at a time, tied scores not grouped.

    Pixels are ranked by descending score and the curve takes one step per pixel (up for a tampered one, right for
    an authentic one), so a negative's step adds the fraction of positives ranked before it: the AUC is the number
    of (positive, negative) pairs where the positive is ranked first, over `n_pos * n_neg`. Tied scores are ranked
    in pixel order (row-major), the stable descending sort; IMDLBenCo ranks ties in whatever order its
    `torch.argsort` returns, so on maps with ties its own value depends on the device and the sort kernel.

    A mask without a tampered pixel scores 0 (IMDLBenCo returns 0.0 for it); an all-tampered mask is NaN (its
    false-positive rate divides 0 by 0).
    """
    s, y = _flat(scores, labels)
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0:
        return 0.0
    if n_neg == 0:
        return float("nan")
    ranked = y[np.argsort(-s, kind="stable")]
    positives_before = np.cumsum(ranked, dtype=np.int64)
    wins = int(positives_before[~ranked].sum(dtype=np.int64))
    return wins / (n_pos * n_neg)
