"""Image manipulation localization (IML) metrics.

The metrics follow the conventions of the field (CAT-Net / IMDLBenCo protocol):

Pixel level (per image, then averaged over images)
    A pixel is *predicted tampered* when its probability is strictly greater than
    `threshold` (comparison done in float64). For every image the confusion counts
    TP / FP / FN / TN are taken over its pixels.

    * `pixel_f1`: mean over images of `2TP / (2TP + FP + FN)` -- the number
      papers report as "pixel-level F1".
    * `pixel_f1_dataset`: F1 of the counts summed over all images (a "micro" F1).
    * `pixel_f1_permuted`: per image `max(F1(map), F1(1 - binary map))`, then the
      mean. Since inverting the binary map swaps (TP, FN) with (FN, TP) and FP with TN,
      the inverted F1 is `2FN / (2FN + TN + TP)`.
    * `pixel_iou`: mean over images of `TP / (TP + FP + FN)`.
    * `pixel_auc`: mean over images of the ROC AUC of the probabilities against the
      mask, computed exactly from ranks (Mann-Whitney U; tied scores count 1/2), which is
      the value `sklearn.metrics.roc_auc_score` returns. It is undefined for an image
      whose mask holds a single class (empty or all-ones mask); such images are left
      out of the mean (`num_pixel_auc_images` says how many images it averages).

Image level (over all images, authentic ones included)
    The image score is a pooling of the map: `"max"` (default, the maximum pixel
    probability) or `"mean"`. The label is 1 when the mask has any tampered pixel.
    The image is *predicted tampered* when its score is strictly greater than
    `threshold`.

    * `image_auc`: ROC AUC of the scores (NaN when only one class is present).
    * `image_accuracy`: fraction of images whose prediction equals the label.
    * `image_f1`: F1 of the "tampered" class, `2TP / (2TP + FP + FN)` over images
      (NaN when there is no tampered image and none is predicted tampered).

Authentic images (all-zero masks)
    By default they are left out of every pixel metric: localization is undefined on
    them, and benchmark test sets hold tampered images only. `num_authentic` reports
    how many there were. With `include_authentic=True` they enter the pixel metrics the
    IMDLBenCo way: their F1, permuted F1 and IoU count as 0 (whatever the prediction,
    even an all-clean one) and they add their FP / TN to the summed counts; their AUC
    is undefined and stays out of `pixel_auc`. Image-level metrics always use every
    image.

Edge cases
    * Tampered image, empty prediction: F1 = IoU = 0 (TP = 0). Perfect prediction:
      F1 = IoU = AUC = 1. A perfectly inverted prediction: F1 = 0, permuted F1 = 1,
      AUC = 0.
    * An all-ones mask has F1 / IoU as usual but no AUC (single class).
    * `pixel_f1_dataset` is 0 when the pixel set's summed TP, FP and FN are all 0
      (possible only with `include_authentic=True` and clean authentic images).
    * A pixel metric averaged over zero images (for example no tampered image and
      `include_authentic=False`) is NaN; so is every metric on an empty input.

Inputs
    Each prediction is a probability map in [0, 1] (numpy array or torch tensor, any
    real dtype), each reference a binary mask (bool, or 0/1 ints / floats) of the same
    size; sizes may differ between images. A map of shape (1, H, W) is squeezed to
    (H, W) (a single leading channel, as models output); any other non-2-D map is an
    error, as are values outside [0, 1] (logits?), NaN / inf, and non-binary masks.
    A batched array / tensor (N, H, W) or (N, 1, H, W) is read as N maps.

Two entry points compute the same numbers: `iml_metrics` for a list of maps,
and `IMLMetric`, which streams over batches keeping only a handful of numbers
per image (and can gather them across processes, see `IMLMetric.add_batch`).
An `evaluate` metric script wrapping `iml_metrics` ships at
`EVALUATE_METRIC_SCRIPT` (`evaluate.load(str(EVALUATE_METRIC_SCRIPT))`).
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EVALUATE_METRIC_SCRIPT",
    "IMAGE_SCORES",
    "IMLMetric",
    "binary_roc_auc",
    "iml_metrics",
    "load_evaluate_metric",
]

# Path of the `evaluate` metric script shipped with the package. Load it with
# `evaluate.load(str(EVALUATE_METRIC_SCRIPT))` (or `load_evaluate_metric`).
EVALUATE_METRIC_SCRIPT = Path(__file__).resolve().parent / "metric" / "iml_metrics.py"

# Supported poolings of a probability map into an image-level score.
IMAGE_SCORES = ("max", "mean")

# Columns of the per-image statistics rows.
_TP, _FP, _FN, _TN, _AUC, _SCORE = range(6)
_NUM_STATS = 6
_STAT_NAMES = ("tp", "fp", "fn", "tn", "auc", "score")


# ---------------------------------------------------------------------------
# Helpers: ROC AUC from ranks
# ---------------------------------------------------------------------------


def binary_roc_auc(scores: Any, labels: Any) -> float:
    """Exact ROC AUC of `scores` against binary `labels` (any shape, flattened).

    Equals the Mann-Whitney statistic `P(s_pos > s_neg) + P(s_pos == s_neg) / 2`,
    i.e. the trapezoidal area under the ROC curve with ties handled as
    `sklearn.metrics.roc_auc_score` does. Runs in O(n log n) with two sorts and two
    binary searches (no Python loop over elements); the count is done in integers,
    only the final division is a float. Returns NaN when only one class is present.
    """
    s = np.asarray(scores).ravel()
    y = np.asarray(labels).ravel().astype(bool, copy=False)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    if s.dtype == np.float16:
        s = s.astype(np.float32)
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    # For each positive: (#negatives strictly below) + (#negatives below or equal);
    # summed, that is twice the number of (pos, neg) pairs won, ties counting 1/2.
    below = np.searchsorted(neg, pos, side="left")
    below_or_equal = np.searchsorted(neg, pos, side="right")
    twice_wins = int(below.sum(dtype=np.int64)) + int(below_or_equal.sum(dtype=np.int64))
    return twice_wins / (2.0 * n_pos * n_neg)


# ---------------------------------------------------------------------------
# Helpers: input conversion and validation
# ---------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _as_map(x: Any, what: str, index: int) -> np.ndarray:
    arr = _to_numpy(x)
    original_shape = arr.shape
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        hint = ""
        if arr.ndim < 2:
            hint = (
                " If you meant to score a single image, wrap it in a list: "
                "[prediction], [reference]."
            )
        raise ValueError(
            f"{what}[{index}] has shape {tuple(original_shape)}; every {what[:-1]} must be "
            f"a 2-D (H, W) map or a (1, H, W) map with a single leading channel.{hint}"
        )
    if arr.size == 0:
        raise ValueError(f"{what}[{index}] is empty (shape {tuple(original_shape)}).")
    return arr


def _validate_prediction(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"predictions[{index}] has dtype {arr.dtype}; expected real-valued probabilities."
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad = arr[~finite]
        n_nan = int(np.isnan(bad).sum())
        raise ValueError(
            f"predictions[{index}] contains non-finite values ({n_nan} NaN, "
            f"{bad.size - n_nan} +/-inf); check the model output for that image."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"predictions[{index}] has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]. "
            "Predictions must be probabilities; this looks like logits -- apply a sigmoid "
            "first (e.g. torch.sigmoid(logits))"
            + (" -- or like a 0-255 map: divide it by 255." if lo >= 0.0 and hi <= 255.0 else ".")
        )
    return arr


def _validate_reference(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"references[{index}] has dtype {arr.dtype}; expected a binary mask.")
    is_zero = arr == 0
    binary = is_zero | (arr == 1)
    if not binary.all():
        examples = np.unique(arr[~binary])[:5].tolist()
        raise ValueError(
            f"references[{index}] is not binary: it holds values other than 0 and 1 "
            f"(e.g. {examples}). Binarise the mask first, e.g. mask > 127.5 for a 0-255 mask."
        )
    return ~is_zero


def _validate_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number in [0, 1], got {threshold!r}.")
    value = float(threshold)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
    return value


def _validate_image_score(image_score: Any) -> str:
    if image_score not in IMAGE_SCORES:
        raise ValueError(
            f"Unknown image_score {image_score!r}; choose one of {', '.join(map(repr, IMAGE_SCORES))}."
        )
    return image_score


def _as_list(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of 2-D maps, got {type(items).__name__}.")
    if isinstance(items, np.ndarray) and items.dtype == object and items.ndim == 1:
        return list(items)  # an object array holding one map per image
    if isinstance(items, np.ndarray) or hasattr(items, "detach"):
        if items.ndim < 3:
            raise ValueError(
                f"{what} is a single array of shape {tuple(items.shape)}; pass a sequence of "
                "(H, W) maps, or a batched array of shape (N, H, W) or (N, 1, H, W). "
                "To score one image, wrap it in a list."
            )
        return [items[i] for i in range(items.shape[0])]
    if not isinstance(items, Iterable):
        raise ValueError(f"{what} must be a sequence of 2-D maps, got {type(items).__name__}.")
    return list(items)


def _image_stats(
    prediction: Any, reference: Any, index: int, threshold: float, image_score: str
) -> tuple[float, float, float, float, float, float]:
    """Per-image statistics row (TP, FP, FN, TN, AUC, image score)."""
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

    predicted = pred > np.float64(threshold)
    n = mask.size
    n_pos = int(np.count_nonzero(mask))
    n_pred = int(np.count_nonzero(predicted))
    tp = int(np.count_nonzero(predicted & mask))
    fp = n_pred - tp
    fn = n_pos - tp
    tn = n - tp - fp - fn
    auc = binary_roc_auc(pred, mask)
    if image_score == "max":
        score = float(pred.max())
    else:
        score = float(pred.mean(dtype=np.float64))
    return (float(tp), float(fp), float(fn), float(tn), float(auc), score)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (only possible on authentic images)."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _metrics_from_stats(stats: np.ndarray, threshold: float, include_authentic: bool) -> dict[str, Any]:
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, _NUM_STATS)
    # Canonical row order: the results are then bit-identical whatever order (or
    # split across batches / processes) the images arrived in.
    stats = stats[np.lexsort(stats.T[::-1])]
    tp, fp, fn, tn = (stats[:, c] for c in (_TP, _FP, _FN, _TN))
    auc, score = stats[:, _AUC], stats[:, _SCORE]
    label = (tp + fn) > 0
    num_images = int(stats.shape[0])
    num_tampered = int(label.sum())

    sel = np.ones(num_images, dtype=bool) if include_authentic else label
    s_tp, s_fp, s_fn, s_tn = tp[sel], fp[sel], fn[sel], tn[sel]
    f1 = _safe_ratio(2 * s_tp, 2 * s_tp + s_fp + s_fn)
    f1_inverted = _safe_ratio(2 * s_fn, 2 * s_fn + s_tn + s_tp)
    iou = _safe_ratio(s_tp, s_tp + s_fp + s_fn)
    sel_auc = auc[sel]
    sel_auc = sel_auc[np.isfinite(sel_auc)]

    if sel.any():
        sum_tp, sum_fp, sum_fn = s_tp.sum(), s_fp.sum(), s_fn.sum()
        den = 2 * sum_tp + sum_fp + sum_fn
        f1_dataset = float(2 * sum_tp / den) if den > 0 else 0.0
    else:
        f1_dataset = float("nan")

    # Image level.
    image_pred = score > np.float64(threshold)
    i_tp = int(np.count_nonzero(image_pred & label))
    i_fp = int(np.count_nonzero(image_pred & ~label))
    i_fn = int(np.count_nonzero(~image_pred & label))
    i_den = 2 * i_tp + i_fp + i_fn
    return {
        "pixel_f1": _mean_or_nan(f1),
        "pixel_f1_dataset": f1_dataset,
        "pixel_f1_permuted": _mean_or_nan(np.maximum(f1, f1_inverted)),
        "pixel_iou": _mean_or_nan(iou),
        "pixel_auc": _mean_or_nan(sel_auc),
        "image_auc": binary_roc_auc(score, label) if num_images else float("nan"),
        "image_accuracy": float(np.mean(image_pred == label)) if num_images else float("nan"),
        "image_f1": (2 * i_tp / i_den) if i_den > 0 else float("nan"),
        "num_images": num_images,
        "num_authentic": num_images - num_tampered,
        "num_tampered": num_tampered,
        "num_pixel_auc_images": int(sel_auc.size),
    }


# ---------------------------------------------------------------------------
# Streaming metric
# ---------------------------------------------------------------------------


class IMLMetric:
    """Streaming form of `iml_metrics`: same numbers, O(1) memory per image.

    For every image it keeps only TP, FP, FN, TN at `threshold`, the pixel ROC AUC
    and the image score (label, F1, IoU and permuted F1 follow from the counts), so
    a large test set can be scored batch by batch::

        metric = IMLMetric(threshold=0.5)
        for pixel_values, masks in loader:                     # masks: (B, H, W), 0/1
            logits = model(pixel_values=pixel_values).logits  # (B, 1, h, w), low resolution
            logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear")
            metric.add_batch(torch.sigmoid(logits), masks)     # probabilities, (B, 1, H, W)
        results = metric.compute()

    `add_batch` accepts anything `iml_metrics` accepts (a list of maps of
    different sizes, or a batched array/tensor whose first axis indexes images).

    Several processes (`accelerate` / `torch.distributed`): two ways, both give
    every process the statistics of every image, counted once.

    1. *Gather per batch* (recommended with `accelerator.prepare`-d data loaders):
       `metric.add_batch(probs, masks, accelerator=accelerator)` in every process,
       for every batch. The per-image statistics of the batch are gathered with
       `accelerator.gather_for_metrics(..., use_gather_object=True)`, which drops the
       samples that `accelerate` duplicated to pad the last batch (this only works
       when it is called inside the loop over the prepared data loader, with the
       default `even_batches=True`, and it is a collective: every process must call
       it for every batch). Then `compute()` in any process.
    2. *Gather at the end*: when each process adds only its own, distinct images
       (your own sharding, no padding), call `metric.add_batch(probs, masks)`
       locally, then `metric.gather(accelerator)` (or `metric.gather()` under
       plain `torch.distributed`) once in every process, then `compute()`.
       Duplicates cannot be detected here: the caller must pass each image exactly
       once over all processes.

    Mixing the two in one metric raises `RuntimeError`; `reset()` starts over.
    """

    def __init__(self, threshold: float = 0.5, include_authentic: bool = False, image_score: str = "max"):
        self.threshold = _validate_threshold(threshold)
        self.include_authentic = bool(include_authentic)
        self.image_score = _validate_image_score(image_score)
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget every image added so far."""
        self._rows: list[tuple[float, ...]] = []
        self._scope: str | None = None  # None (empty), "local" or "global"

    def __len__(self) -> int:
        return len(self._rows)

    def _extend(self, rows: Sequence[tuple[float, ...]], scope: str) -> None:
        if self._scope is not None and self._scope != scope and self._rows:
            if scope == "global":
                raise RuntimeError(
                    "This metric already holds images added without an accelerator (local to "
                    "this process); adding gathered batches now would mix local and global "
                    "statistics. Use one way for the whole evaluation, or reset()."
                )
            raise RuntimeError(
                "This metric already holds statistics of all processes (added with an "
                "accelerator, or gather() was called); adding local images now would mix "
                "local and global statistics. Use one way for the whole evaluation, or reset()."
            )
        self._rows.extend(tuple(float(v) for v in row) for row in rows)
        if self._rows:
            self._scope = scope

    # -- adding data ----------------------------------------------------------
    def batch_stats(self, predictions: Any, references: Any) -> list[tuple[float, ...]]:
        """Per-image statistics rows `(tp, fp, fn, tn, auc, score)` of a batch (not stored)."""
        preds = _as_list(predictions, "predictions")
        refs = _as_list(references, "references")
        if len(preds) != len(refs):
            raise ValueError(
                f"Got {len(preds)} predictions but {len(refs)} references; they must pair up one to one."
            )
        return [
            _image_stats(p, r, i, self.threshold, self.image_score) for i, (p, r) in enumerate(zip(preds, refs))
        ]

    def add_batch(self, predictions: Any, references: Any, *, accelerator: Any = None) -> None:
        """Add a batch of probability maps and their binary masks.

        With `accelerator` (an `accelerate.Accelerator`), the per-image statistics
        of this batch are gathered from every process with
        `accelerator.gather_for_metrics` (duplicated tail samples dropped); every
        process must call this for every batch. See the class docstring.
        """
        rows = self.batch_stats(predictions, references)
        if accelerator is None:
            self._extend(rows, "local")
            return
        gathered = accelerator.gather_for_metrics([tuple(r) for r in rows], use_gather_object=True)
        self._extend(gathered, "global")

    def add(self, prediction: Any, reference: Any) -> None:
        """Add one image (a 2-D map and its mask)."""
        self.add_batch([prediction], [reference])

    def gather(self, accelerator: Any = None) -> IMLMetric:
        """Collect the per-image statistics of every process into every process (in place).

        For callers whose processes each added their own distinct images locally.
        A collective call: every process must call it, once. Uses
        `accelerate.utils.gather_object` when `accelerator` is given, otherwise
        `torch.distributed.all_gather_object` when a default process group is
        initialised (with NCCL, set the CUDA device of each rank first); in a single
        process it does nothing. Returns `self`.
        """
        if self._scope == "global":
            raise RuntimeError(
                "The statistics are already gathered from all processes (gather() was called, "
                "or batches were added with an accelerator); gathering again would count images twice."
            )
        local = [tuple(r) for r in self._rows]
        if accelerator is not None:
            from accelerate.utils import gather_object

            rows = gather_object(local) if accelerator.num_processes > 1 else local
        else:
            rows = local
            try:
                import torch.distributed as dist
            except ImportError:  # pragma: no cover - torch is a dependency
                dist = None
            if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                parts: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(parts, local)
                rows = [row for part in parts for row in part]
        self._rows = [tuple(float(v) for v in row) for row in rows]
        self._scope = "global"
        return self

    # -- results --------------------------------------------------------------
    def per_image_stats(self) -> dict[str, np.ndarray]:
        """Arrays over the stored images: tp, fp, fn, tn, auc, score, label, f1, f1_permuted, iou.

        `f1` / `f1_permuted` / `iou` are 0 on authentic images (IMDLBenCo rule);
        `auc` is NaN where the mask holds a single class.
        """
        stats = np.asarray(self._rows, dtype=np.float64).reshape(-1, _NUM_STATS)
        out = {name: stats[:, i].copy() for i, name in enumerate(_STAT_NAMES)}
        tp, fp, fn, tn = out["tp"], out["fp"], out["fn"], out["tn"]
        out["label"] = (tp + fn) > 0
        f1 = _safe_ratio(2 * tp, 2 * tp + fp + fn)
        out["f1"] = f1
        out["f1_permuted"] = np.maximum(f1, _safe_ratio(2 * fn, 2 * fn + tn + tp))
        out["iou"] = _safe_ratio(tp, tp + fp + fn)
        return out

    def compute(self) -> dict[str, Any]:
        """Metrics over every stored image (see `iml_metrics` for the keys)."""
        return _metrics_from_stats(
            np.asarray(self._rows, dtype=np.float64), self.threshold, self.include_authentic
        )


# ---------------------------------------------------------------------------
# One-shot function
# ---------------------------------------------------------------------------


def iml_metrics(
    predictions: Any,
    references: Any,
    threshold: float = 0.5,
    include_authentic: bool = False,
    image_score: str = "max",
) -> dict[str, Any]:
    """Pixel- and image-level manipulation-localization metrics.

    Args:
        predictions: sequence of per-image probability maps (numpy arrays or torch
            tensors, real values in [0, 1], shape (H, W) or (1, H, W); sizes may differ
            between images), or one batched array/tensor (N, H, W) / (N, 1, H, W).
        references: the binary masks, same length, each the size of its prediction
            (bool, or int/float holding only 0 and 1; (1, H, W) is squeezed too).
        threshold: a pixel (an image) is predicted tampered when its probability
            (its score) is strictly greater than this; in [0, 1].
        include_authentic: include images with an empty mask in the pixel metrics,
            IMDLBenCo way (F1 / IoU / permuted F1 of 0; AUC excluded). Default: leave
            them out.
        image_score: pooling of a map into an image score, `"max"` or `"mean"`.

    Returns:
        dict with `pixel_f1`, `pixel_f1_dataset`, `pixel_f1_permuted`,
        `pixel_iou`, `pixel_auc`, `image_auc`, `image_accuracy`, `image_f1`
        (floats; NaN where undefined, see the module docstring), and the counts
        `num_images`, `num_authentic`, `num_tampered`, `num_pixel_auc_images`.

    Raises:
        ValueError: different numbers of predictions and references; a prediction and
            its mask of different shapes (the message names the index and both shapes);
            a map that is not 2-D (or (1, H, W)); predictions outside [0, 1] (logits?)
            or with NaN / inf; a non-binary mask; `threshold` outside [0, 1]; an
            unknown `image_score`.
    """
    metric = IMLMetric(threshold=threshold, include_authentic=include_authentic, image_score=image_score)
    metric.add_batch(predictions, references)
    return metric.compute()


def load_evaluate_metric(**kwargs: Any) -> Any:
    """`evaluate.load` the IML metric script shipped with this package (works offline).

    Keyword arguments go to `evaluate.load` (`cache_dir`, `keep_in_memory`,
    `experiment_id`, ...). Requires the `evaluate` package.
    """
    import evaluate

    return evaluate.load(str(EVALUATE_METRIC_SCRIPT), **kwargs)

