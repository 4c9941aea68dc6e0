"""Image manipulation localization (IML) metrics.

The metrics follow the conventions of the field (CAT-Net / IMDLBenCo protocol), with exact definitions by default
(`protocol="exact"`) and IMDLBenCo's own on request (`protocol="imdlbenco"`, see "Protocols" below).

Precision
    Every map is compared in float32, the precision models output: maps of another dtype (float64, float16,
    bfloat16, bool, integers) are converted to float32 first, and the threshold is rounded to float32 too. So a
    float32 map and its float64 copy give the same result at every threshold, and a pixel whose float32 value is
    the float32 of the threshold (0.3 stored as float32 is 0.30000001) is not above it, as in PyTorch and in
    IMDLBenCo. The pixel AUC and the image scores are computed from the same float32 values.

Pixel level (per image, then averaged over images)
    A pixel is *predicted tampered* when its probability is strictly greater than
    `threshold`. For every image the confusion counts TP / FP / FN / TN are taken over its pixels.

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

Protocols
    `protocol="exact"` (default) is everything above. `protocol="imdlbenco"` computes what IMDLBenCo 0.1.45's
    evaluators and test loop report, so that numbers compare with published IMDLBenCo tables. Difference by
    difference:

    1. Authentic images enter the pixel metrics (`include_authentic` defaults to True): F1, permuted F1 and IoU
       count them as 0, as above.
    2. `pixel_auc` is IMDLBenCo's per-image AUC (`roc.ungrouped_roc_auc`): the ROC curve walked one pixel at a
       time without grouping tied scores, so on maps with ties it depends on the order of the tied pixels (here
       pixel order; in IMDLBenCo the order its unstable `torch.argsort` returns). An image without a tampered
       pixel scores AUC 0 and counts in the mean; an all-tampered mask gives NaN, which makes the mean NaN, as in
       IMDLBenCo. `num_pixel_auc_images` counts every image of the pixel metrics.
    3. The image label is the data set's label when `labels=` are given (IMDLBenCo: 1 for every image with a
       mask file, 0 for "Negative"; its test scripts re-derive it as "the un-binarised mask has a non-zero
       value"); without `labels=` it is "the mask has a tampered pixel". A tampered image whose binarised mask is
       empty is then a tampered image at image level and a pixel-level 0 (F1, IoU, AUC).
    4. `image_f1` is 0, not NaN, when no image is both tampered and predicted tampered (IMDLBenCo guards its
       divisions with 1e-9).

    The same otherwise: per-image F1 / IoU at the strict threshold averaged over images, the permuted F1 (its
    "double" mode), image AUC (scikit-learn) and accuracy. IMDLBenCo computes in float32 with 1e-8 guards in its
    divisions, which moves F1 and IoU by less than 1e-7. `pixel_f1_dataset` is not an IMDLBenCo metric and keeps
    its definition. IMDLBenCo's test loop in resize mode scores maps against the mask resized to the model input
    (nearest neighbour), not at the original size: that is the evaluation loop's choice, not the metric's.

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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metric_inputs import (
    IMAGE_SCORES,
    PROTOCOLS,
    _as_list,
    _to_numpy,
    _validate_image_score,
    _validate_protocol,
    _validate_threshold,
)
from .metric_stats import _NUM_STATS, _STAT_NAMES, _image_stats, _metrics_from_stats, _safe_ratio
from .roc import binary_roc_auc

__all__ = [
    "EVALUATE_METRIC_SCRIPT",
    "IMAGE_SCORES",
    "PROTOCOLS",
    "IMLMetric",
    "binary_roc_auc",
    "iml_metrics",
    "load_evaluate_metric",
]

# Path of the `evaluate` metric script shipped with the package. Load it with
# `evaluate.load(str(EVALUATE_METRIC_SCRIPT))` (or `load_evaluate_metric`).
EVALUATE_METRIC_SCRIPT = Path(__file__).resolve().parent / "metric" / "iml_metrics.py"


# ---------------------------------------------------------------------------
# Streaming metric
# ---------------------------------------------------------------------------


class IMLMetric:
    """Streaming form of `iml_metrics`: same numbers, O(1) memory per image.

    For every image it keeps only TP, FP, FN, TN at `threshold`, the pixel ROC AUC,
    the image score and the image label (F1, IoU and permuted F1 follow from the
    counts), so a large test set can be scored batch by batch::

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

    `protocol` chooses the definitions (`"exact"` or `"imdlbenco"`, see the module
    docstring); `include_authentic=None` takes the protocol's rule (exact: False,
    imdlbenco: True).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        include_authentic: bool | None = None,
        image_score: str = "max",
        protocol: str = "exact",
    ):
        self.threshold = _validate_threshold(threshold)
        self.protocol = _validate_protocol(protocol)
        self.include_authentic = (protocol == "imdlbenco") if include_authentic is None else bool(include_authentic)
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
    def batch_stats(self, predictions: Any, references: Any, labels: Any = None) -> list[tuple[float, ...]]:
        """Per-image statistics rows `(tp, fp, fn, tn, auc, score, label)` of a batch (not stored)."""
        preds = _as_list(predictions, "predictions")
        refs = _as_list(references, "references")
        if len(preds) != len(refs):
            raise ValueError(
                f"Got {len(preds)} predictions but {len(refs)} references; they must pair up one to one."
            )
        if labels is None:
            labels = [None] * len(preds)
        else:
            if self.protocol != "imdlbenco":
                raise ValueError(
                    "labels= is read by protocol='imdlbenco' only; under the exact protocol an image is tampered "
                    "when its mask has a tampered pixel."
                )
            labels = list(_to_numpy(labels).reshape(-1)) if hasattr(labels, "shape") else list(labels)
            if len(labels) != len(preds):
                raise ValueError(f"Got {len(labels)} labels for {len(preds)} predictions; give one label per image.")
        threshold = np.float32(self.threshold)
        return [
            _image_stats(p, r, i, threshold, self.image_score, self.protocol, label)
            for i, (p, r, label) in enumerate(zip(preds, refs, labels))
        ]

    def add_batch(self, predictions: Any, references: Any, labels: Any = None, *, accelerator: Any = None) -> None:
        """Add a batch of probability maps and their binary masks.

        `labels` (protocol `"imdlbenco"` only): the images' labels from the data
        set (0 authentic, 1 tampered), used at image level instead of "the mask has
        a tampered pixel".

        With `accelerator` (an `accelerate.Accelerator`), the per-image statistics
        of this batch are gathered from every process with
        `accelerator.gather_for_metrics` (duplicated tail samples dropped); every
        process must call this for every batch. See the class docstring.
        """
        rows = self.batch_stats(predictions, references, labels)
        if accelerator is None:
            self._extend(rows, "local")
            return
        gathered = accelerator.gather_for_metrics([tuple(r) for r in rows], use_gather_object=True)
        self._extend(gathered, "global")

    def add_stats(self, rows: Sequence[Sequence[float]], *, gathered: bool = False) -> None:
        """Add per-image statistics rows made by `batch_stats`: for a caller that gathers them itself (with other
        per-image data, from every process: `gathered=True`, then the same rules as an accelerator's batches)."""
        self._extend(rows, "global" if gathered else "local")

    def add(self, prediction: Any, reference: Any, label: Any = None) -> None:
        """Add one image (a 2-D map and its mask, and under protocol `"imdlbenco"` optionally its label)."""
        self.add_batch([prediction], [reference], None if label is None else [label])

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
        `auc` is the protocol's per-image AUC (exact: NaN where the mask holds a
        single class); `label` is the image label (bool).
        """
        stats = np.asarray(self._rows, dtype=np.float64).reshape(-1, _NUM_STATS)
        out = {name: stats[:, i].copy() for i, name in enumerate(_STAT_NAMES)}
        tp, fp, fn, tn = out["tp"], out["fp"], out["fn"], out["tn"]
        out["label"] = out["label"] > 0
        f1 = _safe_ratio(2 * tp, 2 * tp + fp + fn)
        out["f1"] = f1
        out["f1_permuted"] = np.maximum(f1, _safe_ratio(2 * fn, 2 * fn + tn + tp))
        out["iou"] = _safe_ratio(tp, tp + fp + fn)
        return out

    def compute(self) -> dict[str, Any]:
        """Metrics over every stored image (see `iml_metrics` for the keys)."""
        return _metrics_from_stats(
            np.asarray(self._rows, dtype=np.float64), self.threshold, self.include_authentic, self.protocol
        )


# ---------------------------------------------------------------------------
# One-shot function
# ---------------------------------------------------------------------------


def iml_metrics(
    predictions: Any,
    references: Any,
    threshold: float = 0.5,
    include_authentic: bool | None = None,
    image_score: str = "max",
    protocol: str = "exact",
    labels: Any = None,
) -> dict[str, Any]:
    """Pixel- and image-level manipulation-localization metrics.

    Args:
        predictions: sequence of per-image probability maps (numpy arrays or torch
            tensors, real values in [0, 1], shape (H, W) or (1, H, W); sizes may differ
            between images), or one batched array/tensor (N, H, W) / (N, 1, H, W).
        references: the binary masks, same length, each the size of its prediction
            (bool, or int/float holding only 0 and 1; (1, H, W) is squeezed too).
        threshold: a pixel (an image) is predicted tampered when its probability
            (its score) is strictly greater than this; in [0, 1]; compared in float32.
        include_authentic: include images with an empty mask in the pixel metrics,
            IMDLBenCo way (F1 / IoU / permuted F1 of 0; AUC excluded under the exact
            protocol, 0 under IMDLBenCo's). Default (None): the protocol's rule, out
            for `"exact"`, in for `"imdlbenco"`.
        image_score: pooling of a map into an image score, `"max"` or `"mean"`.
        protocol: `"exact"` (default) or `"imdlbenco"` (IMDLBenCo's definitions, see
            the module docstring).
        labels: `"imdlbenco"` only: per-image labels from the data set (0 / 1), the
            image-level label instead of "the mask has a tampered pixel".

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
            unknown `image_score` or `protocol`; `labels` under the exact protocol,
            or a label other than 0 / 1.
    """
    metric = IMLMetric(
        threshold=threshold, include_authentic=include_authentic, image_score=image_score, protocol=protocol
    )
    metric.add_batch(predictions, references, labels)
    return metric.compute()


def load_evaluate_metric(**kwargs: Any) -> Any:
    """`evaluate.load` the IML metric script shipped with this package (works offline).

    Keyword arguments go to `evaluate.load` (`cache_dir`, `keep_in_memory`,
    `experiment_id`, ...). Requires the `evaluate` package.
    """
    import evaluate

    return evaluate.load(str(EVALUATE_METRIC_SCRIPT), **kwargs)
