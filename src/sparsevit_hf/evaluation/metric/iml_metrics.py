# Copyright the sparsevit-hf authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` metric script for image manipulation localization (IML).

Load it offline from the installed package:

    evaluate.load(str(sparsevit_hf.evaluation.metrics.EVALUATE_METRIC_SCRIPT))

It wraps sparsevit_hf.evaluation.metrics.iml_metrics, so the sparsevit-hf package must be installed.
"""

import datasets
import evaluate
import numpy as np

from sparsevit_hf.evaluation.metrics import iml_metrics

_CITATION = """\
@inproceedings{su2025sparsevit,
  title     = {Can We Get Rid of Handcrafted Feature Extractors? SparseViT: Nonsemantics-Centered,
               Parameter-Efficient Image Manipulation Localization through Spare-Coding Transformer},
  author    = {Su, Lei and Ma, Xiaochen and Zhu, Xuekang and Niu, Chaoqun and Lei, Zeyu and Zhou, Ji-Zhe},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2025}
}
"""

_DESCRIPTION = """\
Pixel- and image-level metrics of image manipulation localization: per-image pixel F1
(the field's standard number, mean over images), dataset-level F1, permuted F1, IoU and
ROC AUC, plus image-level AUC / accuracy / F1 from a pooled image score (max or mean of
the map). Authentic images (empty masks) are left out of the pixel metrics unless
include_authentic=True (then their F1 and IoU count as 0, IMDLBenCo convention).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of 2-D probability maps (H, W) (numpy arrays, torch tensors or
        nested lists; (1, H, W) is squeezed), values in [0, 1]; sizes may differ.
    references: list of binary masks (0/1 or bool), each the size of its prediction.
    threshold: a pixel / image is predicted tampered when its probability / score is
        strictly greater than this (default 0.5).
    include_authentic: count empty-mask images in the pixel metrics (default False).
    image_score: "max" (default) or "mean" pooling of a map into an image score.
Returns:
    pixel_f1, pixel_f1_dataset, pixel_f1_permuted, pixel_iou, pixel_auc, image_auc,
    image_accuracy, image_f1 (NaN where undefined), num_images, num_authentic,
    num_tampered, num_pixel_auc_images.
Examples:
    >>> metric = evaluate.load(str(sparsevit_hf.evaluation.metrics.EVALUATE_METRIC_SCRIPT))
    >>> metric.add_batch(predictions=[prob_map], references=[mask])
    >>> metric.compute(threshold=0.5)["pixel_f1"]
"""


def _as_array(x, dtype):
    # Normalise one map before `datasets` encodes it: torch tensors to numpy, a
    # leading channel of 1 squeezed, one dtype for the whole batch (pyarrow
    # refuses a batch mixing e.g. float32 and float64 arrays).
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    return x.astype(dtype, copy=False)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ImlMetrics(evaluate.Metric):
    """Image manipulation localization metrics (see sparsevit_hf.metrics)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    # Nested lists allow a different size per image; float64 keeps the
                    # probabilities exactly as given (float32 input converts losslessly).
                    "predictions": datasets.List(datasets.List(datasets.Value("float64"))),
                    "references": datasets.List(datasets.List(datasets.Value("float32"))),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2412.14598"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of probability maps and masks (tensors, arrays or nested lists)."""
        if predictions is not None:
            predictions = [_as_array(p, np.float64) for p in predictions]
        if references is not None:
            references = [_as_array(r, np.float32) for r in references]
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one probability map and its mask."""
        if prediction is not None:
            prediction = _as_array(prediction, np.float64)
        if reference is not None:
            reference = _as_array(reference, np.float32)
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, threshold=0.5, include_authentic=False, image_score="max"):
        preds = [np.asarray(p, dtype=np.float64) for p in predictions]
        refs = [np.asarray(r, dtype=np.float32) for r in references]
        return iml_metrics(
            preds,
            refs,
            threshold=threshold,
            include_authentic=include_authentic,
            image_score=image_score,
        )
