"""Specification of the metrics' precision rule and of the IMDLBenCo-compatible protocol.

Expected values are worked out by hand in the comments, or come from scikit-learn / a second form of the definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sparsevit_hf.evaluation.metrics import IMLMetric, iml_metrics
from sparsevit_hf.evaluation.roc import binary_roc_auc, ungrouped_roc_auc


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float) and math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            assert a[key] == b[key], (key, a[key], b[key])


def tenths_dataset(seed=0, n=10):
    """Maps on the levels 0.0, 0.1, ..., 1.0 (float64), masks with a tampered block, every third image authentic."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        shape = (int(rng.integers(6, 20)), int(rng.integers(6, 20)))
        mask = np.zeros(shape, dtype=bool)
        if i % 3:
            mask[: shape[0] // 2, : shape[1] // 2] = True
        maps.append(np.round(np.clip(0.5 * mask + 0.6 * rng.random(shape), 0, 1), 1))
        masks.append(mask)
    return maps, masks


# ---------------------------------------------------------------------------
# One precision for the threshold
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["exact", "imdlbenco"])
@pytest.mark.parametrize("threshold", [round(0.05 * k, 2) for k in range(21)])
def test_float32_and_float64_maps_give_the_same_results_at_every_threshold(threshold, protocol):
    maps64, masks = tenths_dataset()
    maps32 = [m.astype(np.float32) for m in maps64]
    for image_score in ("max", "mean"):
        expected = iml_metrics(maps64, masks, threshold, image_score=image_score, protocol=protocol)
        assert_same(iml_metrics(maps32, masks, threshold, image_score=image_score, protocol=protocol), expected)
        tensors = [torch.from_numpy(m) for m in maps32]
        assert_same(iml_metrics(tensors, masks, threshold, image_score=image_score, protocol=protocol), expected)


def test_a_float32_pixel_equal_to_the_threshold_is_not_above_it():
    # float32(0.3) = 0.30000001 is above the float64 0.3, but the comparison is float32 against float32(0.3).
    prediction = np.array([[0.3, 0.6]], dtype=np.float32)
    mask = np.array([[0, 1]])
    result = iml_metrics([prediction], [mask], threshold=0.3)
    assert result["pixel_f1"] == 1.0  # only the 0.6 pixel is predicted tampered
    result = iml_metrics([np.full((2, 2), 0.3, dtype=np.float32)], [np.zeros((2, 2))], threshold=0.3)
    assert result["image_accuracy"] == 1.0  # its max score 0.3 is not above 0.3: predicted authentic


def test_a_float64_map_is_rounded_to_float32_before_the_comparison():
    # 0.3 + 1e-9 is a float64 above 0.3, but the same float32 as 0.3.
    prediction = np.array([[0.3 + 1e-9, 0.6]], dtype=np.float64)
    assert iml_metrics([prediction], [np.array([[0, 1]])], threshold=0.3)["pixel_f1"] == 1.0


# ---------------------------------------------------------------------------
# IMDLBenCo's pixel AUC
# ---------------------------------------------------------------------------


def test_ungrouped_auc_ranks_tied_pixels_in_pixel_order():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    # Ranked: 0.9 (+), 0.5 (-), 0.5 (+), 0.1 (-): the first negative follows 1 positive, the second 2: 3 of 4 pairs.
    assert ungrouped_roc_auc(scores, np.array([1, 0, 1, 0])) == 0.75
    # The tied pair the other way round: 0.9 (+), 0.5 (+), 0.5 (-), 0.1 (-): 2 + 2 of 4 pairs.
    assert ungrouped_roc_auc(scores, np.array([1, 1, 0, 0])) == 1.0
    # The exact AUC counts the tie as half a pair both times: (2 + 0.5 + 1) / 4.
    assert binary_roc_auc(scores, np.array([1, 0, 1, 0])) == 0.875
    assert binary_roc_auc(scores, np.array([1, 1, 0, 0])) == 0.875


def test_ungrouped_auc_of_a_constant_map_depends_on_where_the_region_is():
    scores = np.zeros((3, 3), dtype=np.float32)
    top_left, bottom_right = np.zeros((3, 3), dtype=bool), np.zeros((3, 3), dtype=bool)
    top_left[0, 0] = bottom_right[2, 2] = True
    assert ungrouped_roc_auc(scores, top_left) == 1.0  # ranked first, before all 8 negatives
    assert ungrouped_roc_auc(scores, bottom_right) == 0.0  # ranked last
    assert binary_roc_auc(scores, top_left) == binary_roc_auc(scores, bottom_right) == 0.5


def test_ungrouped_auc_is_zero_without_a_tampered_pixel_and_nan_when_all_are():
    scores = np.array([[0.2, 0.8], [0.4, 0.6]])
    assert ungrouped_roc_auc(scores, np.zeros((2, 2))) == 0.0
    assert math.isnan(ungrouped_roc_auc(scores, np.ones((2, 2))))


def test_ungrouped_auc_without_ties_equals_scikit_learn():
    rng = np.random.default_rng(3)
    scores, labels = rng.random(5000), rng.random(5000) < 0.3
    assert ungrouped_roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def trapezoid_under_the_pixel_by_pixel_curve(scores, labels):
    """The definition in its other form: the ROC polyline with one vertex per pixel, area by the trapezoid rule."""
    order = np.argsort(-scores.ravel(), kind="stable")
    ranked = labels.ravel()[order].astype(np.float64)
    tpr = np.concatenate([[0.0], np.cumsum(ranked) / ranked.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(1 - ranked) / (1 - ranked).sum()])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


@pytest.mark.parametrize("seed", range(4))
def test_ungrouped_auc_is_the_area_under_the_pixel_by_pixel_curve(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((24, 31)) * 4) / 4  # five levels: many ties
    labels = rng.random((24, 31)) < 0.25
    assert ungrouped_roc_auc(scores, labels) == pytest.approx(
        trapezoid_under_the_pixel_by_pixel_curve(scores, labels), abs=1e-12
    )


# ---------------------------------------------------------------------------
# protocol="imdlbenco" in iml_metrics / IMLMetric
# ---------------------------------------------------------------------------

TAMPERED_MAP = np.array([[0.9, 0.2], [0.6, 0.1]], dtype=np.float32)
TAMPERED_MASK = np.array([[1, 1], [0, 0]])
AUTHENTIC_MAP = np.array([[0.7, 0.1], [0.1, 0.1]], dtype=np.float32)
AUTHENTIC_MASK = np.zeros((2, 2))


def test_imdlbenco_protocol_on_a_hand_computed_pair():
    maps, masks = [TAMPERED_MAP, AUTHENTIC_MAP], [TAMPERED_MASK, AUTHENTIC_MASK]
    # Tampered image at 0.5: TP 1 (0.9), FP 1 (0.6), FN 1 (0.2), TN 1: F1 2/4, IoU 1/3; ranked 0.9 (+), 0.6 (-),
    # 0.2 (+), 0.1 (-): AUC 3/4. Authentic image: F1 = IoU = AUC = 0. Image scores (max) 0.9 and 0.7: both above.
    exact = iml_metrics(maps, masks)
    assert (exact["pixel_f1"], exact["pixel_iou"], exact["pixel_auc"]) == (0.5, pytest.approx(1 / 3), 0.75)
    assert exact["num_pixel_auc_images"] == 1
    imdlbenco = iml_metrics(maps, masks, protocol="imdlbenco")
    assert imdlbenco["pixel_f1"] == 0.25
    assert imdlbenco["pixel_iou"] == pytest.approx(1 / 6)
    assert imdlbenco["pixel_auc"] == 0.375
    assert imdlbenco["pixel_f1_permuted"] == 0.25  # the inverted map scores 2FN / (2FN + TN + TP) = 2/5 < 1/2
    assert imdlbenco["num_pixel_auc_images"] == 2
    for key in ("image_auc", "image_accuracy", "image_f1"):
        assert imdlbenco[key] == exact[key]
    assert (imdlbenco["image_auc"], imdlbenco["image_accuracy"], imdlbenco["image_f1"]) == (1.0, 0.5, 2 / 3)


def test_imdlbenco_protocol_takes_the_data_sets_labels_at_image_level():
    # The second image has a mask file whose binarised mask is empty: label 1 from the data set.
    maps, masks = [TAMPERED_MAP, AUTHENTIC_MAP], [TAMPERED_MASK, AUTHENTIC_MASK]
    result = iml_metrics(maps, masks, protocol="imdlbenco", labels=[1, 1])
    assert (result["num_tampered"], result["num_authentic"]) == (2, 0)
    assert (result["image_accuracy"], result["image_f1"]) == (1.0, 1.0)
    assert math.isnan(result["image_auc"])  # one class
    assert result["pixel_f1"] == 0.25  # pixel metrics read the masks only
    metric = IMLMetric(protocol="imdlbenco")
    metric.add(TAMPERED_MAP, TAMPERED_MASK, label=1)
    metric.add_batch([AUTHENTIC_MAP], [AUTHENTIC_MASK], labels=torch.tensor([1]))
    assert_same(metric.compute(), result)
    assert metric.per_image_stats()["label"].tolist() == [True, True]


def test_imdlbenco_image_f1_is_zero_where_the_exact_one_is_undefined():
    maps, masks = [AUTHENTIC_MAP * 0.5], [AUTHENTIC_MASK]  # no tampered image, none predicted tampered
    assert math.isnan(iml_metrics(maps, masks)["image_f1"])
    assert iml_metrics(maps, masks, protocol="imdlbenco")["image_f1"] == 0.0


def test_imdlbenco_pixel_auc_is_nan_when_a_mask_is_all_tampered():
    maps, masks = [TAMPERED_MAP, TAMPERED_MAP], [TAMPERED_MASK, np.ones((2, 2))]
    assert iml_metrics(maps, masks)["pixel_auc"] == 0.75  # exact: the all-tampered mask is left out
    assert math.isnan(iml_metrics(maps, masks, protocol="imdlbenco")["pixel_auc"])


def test_imdlbenco_protocol_may_still_leave_authentic_images_out():
    maps, masks = [TAMPERED_MAP, AUTHENTIC_MAP], [TAMPERED_MASK, AUTHENTIC_MASK]
    result = iml_metrics(maps, masks, protocol="imdlbenco", include_authentic=False)
    assert (result["pixel_f1"], result["pixel_auc"], result["num_pixel_auc_images"]) == (0.5, 0.75, 1)
    # ... and the exact protocol may let them in, with their AUC left out.
    result = iml_metrics(maps, masks, include_authentic=True)
    assert (result["pixel_f1"], result["pixel_auc"], result["num_pixel_auc_images"]) == (0.25, 0.75, 1)


def test_imdlbenco_streaming_over_any_split_equals_the_one_shot_result():
    maps, masks = tenths_dataset(seed=5, n=9)
    labels = [int(m.any()) for m in masks]
    labels[0] = 1
    expected = iml_metrics(maps, masks, protocol="imdlbenco", labels=labels)
    metric = IMLMetric(protocol="imdlbenco")
    for start, stop in ((6, 9), (0, 2), (2, 6)):
        metric.add_batch(maps[start:stop], masks[start:stop], labels[start:stop])
    assert_same(metric.compute(), expected)


def test_protocol_errors():
    with pytest.raises(ValueError, match="Unknown protocol 'imdl'"):
        IMLMetric(protocol="imdl")
    with pytest.raises(ValueError, match="protocol='imdlbenco' only"):
        iml_metrics([TAMPERED_MAP], [TAMPERED_MASK], labels=[1])
    with pytest.raises(ValueError, match=r"labels\[0\] is 2"):
        iml_metrics([TAMPERED_MAP], [TAMPERED_MASK], protocol="imdlbenco", labels=[2])
    with pytest.raises(ValueError, match="Got 2 labels for 1 predictions"):
        iml_metrics([TAMPERED_MAP], [TAMPERED_MASK], protocol="imdlbenco", labels=[1, 0])


# ---------------------------------------------------------------------------
# Threshold sweep
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["exact", "imdlbenco"])
def test_the_threshold_sweep_equals_iml_metrics_at_every_threshold(protocol):
    from sparsevit_hf.evaluation.curves import DEFAULT_THRESHOLDS, ThresholdSweep

    maps, masks = tenths_dataset(seed=2, n=8)
    sweep = ThresholdSweep(protocol=protocol)
    sweep.add_batch(maps[:5], masks[:5])
    sweep.add_batch([torch.from_numpy(m.astype(np.float32)) for m in maps[5:]], masks[5:])
    curve = sweep.compute()
    assert curve["thresholds"] == list(DEFAULT_THRESHOLDS)
    for threshold, f1, iou in zip(curve["thresholds"], curve["pixel_f1"], curve["pixel_iou"]):
        expected = iml_metrics(maps, masks, threshold, protocol=protocol)
        assert f1 == pytest.approx(expected["pixel_f1"], abs=1e-12), threshold
        assert iou == pytest.approx(expected["pixel_iou"], abs=1e-12), threshold
    assert curve["num_images"] == (8 if protocol == "imdlbenco" else sum(m.any() for m in masks))


def test_the_threshold_sweep_refuses_unordered_thresholds_and_is_nan_without_images():
    from sparsevit_hf.evaluation.curves import ThresholdSweep

    with pytest.raises(ValueError, match="increasing"):
        ThresholdSweep([0.5, 0.3])
    with pytest.raises(ValueError, match="increasing"):
        ThresholdSweep([0.5, 1.5])
    curve = ThresholdSweep([0.3, 0.5]).compute()
    assert all(math.isnan(v) for v in curve["pixel_f1"]) and curve["num_images"] == 0


def test_the_shared_evaluation_settings_carry_the_protocol():
    from sparsevit_hf.evaluation import MetricSettings

    assert MetricSettings().metric().include_authentic is False
    imdlbenco = MetricSettings(protocol="imdlbenco").metric()
    assert (imdlbenco.protocol, imdlbenco.include_authentic) == ("imdlbenco", True)
    assert MetricSettings(include_authentic=False, protocol="imdlbenco").metric().include_authentic is False
