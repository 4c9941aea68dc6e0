"""Specification of the image manipulation localization metrics (sparsevit_hf.evaluation.metrics).

Reference values come from scikit-learn (f1_score, jaccard_score, roc_auc_score,
accuracy_score), computed independently of the package.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, roc_auc_score

from sparsevit_hf.evaluation.metrics import (
    EVALUATE_METRIC_SCRIPT,
    IMLMetric,
    binary_roc_auc,
    iml_metrics,
    load_evaluate_metric,
)

SRC_DIR = Path(__file__).resolve().parents[1] / "src"

PIXEL_KEYS = ("pixel_f1", "pixel_f1_dataset", "pixel_f1_permuted", "pixel_iou", "pixel_auc")
IMAGE_KEYS = ("image_auc", "image_accuracy", "image_f1")
COUNT_KEYS = ("num_images", "num_authentic", "num_tampered", "num_pixel_auc_images")


# ---------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------


def quantised_map(rng, shape, levels=6, dtype=np.float32):
    """Random probabilities on a few levels (many ties), 0.5 included as a level."""
    return (np.round(rng.random(shape) * levels) / levels).astype(dtype)


def blob_mask(rng, shape, fraction=0.3):
    """A rectangle of tampered pixels plus some scattered ones."""
    h, w = shape
    mask = rng.random(shape) < fraction / 4
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    mask[y0 : y0 + h // 3 + 1, x0 : x0 + w // 3 + 1] = True
    return mask


def make_dataset(seed=0, n=12, authentic_every=4):
    """Mixed sizes, some authentic images, maps correlated with the masks."""
    rng = np.random.default_rng(seed)
    preds, masks = [], []
    for i in range(n):
        shape = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
        if authentic_every and i % authentic_every == authentic_every - 1:
            mask = np.zeros(shape, dtype=bool)
        else:
            mask = blob_mask(rng, shape)
        noise = quantised_map(rng, shape, levels=8, dtype=np.float64)
        pred = np.clip(0.45 * mask + 0.6 * noise, 0, 1)
        preds.append(np.round(pred * 10) / 10)  # few levels again: ties
        masks.append(mask)
    return preds, masks


def sklearn_reference(preds, masks, threshold=0.5, include_authentic=False, image_score="max"):
    """The metrics computed with scikit-learn, image by image."""
    f1s, f1_perm, ious, aucs, all_y, all_b = [], [], [], [], [], []
    scores, labels = [], []
    for p, m in zip(preds, masks):
        y = np.asarray(m).ravel().astype(int)
        b = (np.asarray(p).ravel() > threshold).astype(int)
        tampered = y.any()
        scores.append(float(np.max(p)) if image_score == "max" else float(np.mean(p, dtype=np.float64)))
        labels.append(int(tampered))
        if not tampered and not include_authentic:
            continue
        all_y.append(y)
        all_b.append(b)
        f1 = f1_score(y, b, zero_division=0.0)
        f1s.append(f1)
        f1_perm.append(max(f1, f1_score(y, 1 - b, zero_division=0.0)))
        ious.append(jaccard_score(y, b, zero_division=0.0))
        if 0 < y.sum() < y.size:
            aucs.append(roc_auc_score(y, np.asarray(p).ravel()))
    labels = np.array(labels)
    image_pred = (np.array(scores) > threshold).astype(int)
    return {
        "pixel_f1": np.mean(f1s),
        "pixel_f1_dataset": f1_score(np.concatenate(all_y), np.concatenate(all_b), zero_division=0.0),
        "pixel_f1_permuted": np.mean(f1_perm),
        "pixel_iou": np.mean(ious),
        "pixel_auc": np.mean(aucs),
        "image_auc": roc_auc_score(labels, scores),
        "image_accuracy": accuracy_score(labels, image_pred),
        "image_f1": f1_score(labels, image_pred),
        "num_images": len(preds),
        "num_authentic": int((labels == 0).sum()),
        "num_pixel_auc_images": len(aucs),
    }


def assert_same_results(a, b):
    """Equal dicts, NaN equal to NaN, exact equality."""
    assert a.keys() == b.keys()
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, float) and math.isnan(va):
            assert isinstance(vb, float) and math.isnan(vb), key
        else:
            assert va == vb, (key, va, vb)


# ---------------------------------------------------------------------------
# Agreement with scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.7])
@pytest.mark.parametrize("image_score", ["max", "mean"])
def test_metrics_match_sklearn_on_mixed_sizes_with_ties(threshold, image_score):
    preds, masks = make_dataset(seed=1)
    got = iml_metrics(preds, masks, threshold=threshold, image_score=image_score)
    want = sklearn_reference(preds, masks, threshold=threshold, image_score=image_score)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["num_tampered"] == got["num_images"] - got["num_authentic"]


def test_metrics_with_authentic_included_match_sklearn_with_zero_division_zero():
    preds, masks = make_dataset(seed=2)
    got = iml_metrics(preds, masks, include_authentic=True)
    want = sklearn_reference(preds, masks, include_authentic=True)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("levels", [1, 2, 5, 255, None])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_binary_roc_auc_equals_sklearn_including_ties(levels, dtype):
    rng = np.random.default_rng(levels or 0)
    for _ in range(5):
        n = int(rng.integers(2, 3000))
        y = rng.random(n) < rng.uniform(0.05, 0.95)
        y[0], y[1] = True, False
        s = rng.random(n)
        if levels is not None:
            s = np.round(s * levels) / levels
        s = s.astype(dtype)
        assert binary_roc_auc(s, y) == pytest.approx(roc_auc_score(y, s.astype(np.float64)), abs=1e-12)


def test_binary_roc_auc_is_nan_with_a_single_class():
    assert math.isnan(binary_roc_auc(np.array([0.1, 0.9]), np.array([1, 1])))
    assert math.isnan(binary_roc_auc(np.array([0.1, 0.9]), np.array([0, 0])))


def test_pixel_auc_of_a_2048_square_map_is_exact_and_fast():
    rng = np.random.default_rng(3)
    pred = quantised_map(rng, (2048, 2048), levels=1000)
    mask = blob_mask(rng, (2048, 2048))
    start = time.perf_counter()
    got = iml_metrics([pred], [mask])
    elapsed = time.perf_counter() - start
    assert got["pixel_auc"] == pytest.approx(roc_auc_score(mask.ravel(), pred.ravel()), abs=1e-12)
    assert elapsed < 10.0  # about 0.5 s on one CPU core; generous for slow CI machines


# ---------------------------------------------------------------------------
# Hand-made cases
# ---------------------------------------------------------------------------


def square_mask(shape=(8, 8)):
    mask = np.zeros(shape, dtype=bool)
    mask[2:6, 1:5] = True
    return mask


def test_perfect_prediction_scores_one_everywhere():
    mask = square_mask()
    got = iml_metrics([mask.astype(np.float32)], [mask])
    for key in ("pixel_f1", "pixel_f1_dataset", "pixel_f1_permuted", "pixel_iou", "pixel_auc"):
        assert got[key] == 1.0, key
    assert got["image_accuracy"] == 1.0 and got["image_f1"] == 1.0
    assert math.isnan(got["image_auc"])  # a single (tampered) image: one class only
    assert (got["num_images"], got["num_authentic"], got["num_tampered"]) == (1, 0, 1)


def test_inverted_prediction_has_f1_zero_but_permuted_f1_one_and_auc_zero():
    mask = square_mask()
    got = iml_metrics([(~mask).astype(np.float32)], [mask])
    assert got["pixel_f1"] == 0.0
    assert got["pixel_iou"] == 0.0
    assert got["pixel_f1_permuted"] == 1.0
    assert got["pixel_auc"] == 0.0


def test_empty_prediction_on_tampered_image_has_f1_and_iou_zero_and_auc_one_half():
    mask = square_mask()
    got = iml_metrics([np.zeros(mask.shape)], [mask])
    assert got["pixel_f1"] == 0.0
    assert got["pixel_iou"] == 0.0
    assert got["pixel_f1_dataset"] == 0.0
    assert got["pixel_auc"] == 0.5  # every pixel tied
    # The inverted binary map predicts everything tampered: F1 = 2P / (2P + N).
    positives, negatives = mask.sum(), (~mask).sum()
    assert got["pixel_f1_permuted"] == pytest.approx(2 * positives / (2 * positives + negatives))
    assert got["image_accuracy"] == 0.0  # score 0 is not > 0.5: predicted authentic


def test_all_ones_mask_has_f1_but_no_pixel_auc():
    mask = np.ones((6, 7), dtype=np.uint8)
    pred = np.zeros((6, 7))
    pred[:3] = 0.9
    got = iml_metrics([pred], [mask])
    tp, fn = 21, 21
    assert got["pixel_f1"] == pytest.approx(2 * tp / (2 * tp + fn))
    assert got["pixel_iou"] == pytest.approx(tp / (tp + fn))
    assert math.isnan(got["pixel_auc"])
    assert got["num_pixel_auc_images"] == 0


def test_threshold_is_strict_a_pixel_equal_to_it_is_not_predicted_tampered():
    mask = square_mask()
    got = iml_metrics([mask * 0.5], [mask], threshold=0.5)
    assert got["pixel_f1"] == 0.0
    got = iml_metrics([mask * 0.5], [mask], threshold=0.49)
    assert got["pixel_f1"] == 1.0


def test_authentic_images_are_left_out_of_pixel_metrics_by_default():
    mask = square_mask()
    authentic = np.zeros((5, 5), dtype=bool)
    noisy_authentic_pred = np.full((5, 5), 0.9)
    alone = iml_metrics([mask * 1.0], [mask])
    both = iml_metrics([mask * 1.0, noisy_authentic_pred], [mask, authentic])
    for key in PIXEL_KEYS:
        assert both[key] == alone[key], key
    assert both["num_authentic"] == 1 and both["num_images"] == 2 and both["num_tampered"] == 1
    # Image level uses every image: the authentic one scores 0.9 -> wrongly tampered.
    assert both["image_accuracy"] == 0.5
    assert both["image_auc"] == 1.0  # the tampered image still scores higher (1.0 > 0.9)


def test_include_authentic_counts_authentic_images_with_f1_and_iou_zero_and_no_auc():
    mask = square_mask()
    authentic = np.zeros((5, 5), dtype=bool)
    clean_pred = np.zeros((5, 5))  # a perfect answer on the authentic image still scores 0
    got = iml_metrics([mask * 1.0, clean_pred], [mask, authentic], include_authentic=True)
    assert got["pixel_f1"] == 0.5
    assert got["pixel_iou"] == 0.5
    assert got["pixel_f1_permuted"] == 0.5
    assert got["pixel_auc"] == 1.0  # the authentic image has no AUC and is not averaged
    assert got["num_pixel_auc_images"] == 1
    assert got["pixel_f1_dataset"] == 1.0  # it adds no TP / FP / FN
    # False positives on an authentic image do lower the summed-count F1.
    got = iml_metrics([mask * 1.0, np.ones((5, 5))], [mask, authentic], include_authentic=True)
    tp = mask.sum()
    assert got["pixel_f1_dataset"] == pytest.approx(2 * tp / (2 * tp + 25))


def test_pixel_metrics_are_nan_when_there_is_no_tampered_image():
    preds = [np.zeros((4, 4)), np.full((3, 5), 0.8)]
    masks = [np.zeros((4, 4)), np.zeros((3, 5))]
    got = iml_metrics(preds, masks)
    for key in PIXEL_KEYS:
        assert math.isnan(got[key]), key
    assert got["num_authentic"] == 2 and got["num_pixel_auc_images"] == 0
    assert math.isnan(got["image_auc"])  # one class only
    assert got["image_accuracy"] == 0.5
    assert got["image_f1"] == 0.0  # one false positive, no true positive


def test_image_f1_is_nan_without_tampered_images_or_positive_predictions():
    got = iml_metrics([np.zeros((4, 4))], [np.zeros((4, 4))])
    assert math.isnan(got["image_f1"])
    assert got["image_accuracy"] == 1.0


def test_empty_input_gives_nan_metrics_and_zero_counts():
    got = iml_metrics([], [])
    for key in PIXEL_KEYS + IMAGE_KEYS:
        assert math.isnan(got[key]), key
    for key in COUNT_KEYS:
        assert got[key] == 0, key


def test_image_score_mean_pools_the_map_mean():
    mask = square_mask()
    pred = np.where(mask, 0.9, 0.2)
    got_max = iml_metrics([pred], [mask], image_score="max")
    got_mean = iml_metrics([pred], [mask], image_score="mean")
    assert got_max["image_accuracy"] == 1.0  # max 0.9 > 0.5
    assert got_mean["image_accuracy"] == 0.0  # mean 0.375 <= 0.5


# ---------------------------------------------------------------------------
# Input forms
# ---------------------------------------------------------------------------


def test_torch_tensors_give_the_same_results_as_numpy_arrays():
    preds, masks = make_dataset(seed=4)
    want = iml_metrics(preds, masks)
    got = iml_metrics([torch.from_numpy(p) for p in preds], [torch.from_numpy(m) for m in masks])
    assert_same_results(got, want)


def test_a_batched_n1hw_tensor_is_read_as_n_maps_and_masks_may_be_int_or_float():
    rng = np.random.default_rng(5)
    preds = [quantised_map(rng, (16, 20)) for _ in range(3)]
    masks = [blob_mask(rng, (16, 20)) for _ in range(3)]
    want = iml_metrics(preds, masks)
    batch = torch.from_numpy(np.stack(preds))[:, None]  # (N, 1, H, W)
    assert_same_results(iml_metrics(batch, torch.from_numpy(np.stack(masks)).long()), want)
    assert_same_results(iml_metrics(np.stack(preds), np.stack(masks).astype(np.float32)), want)
    assert_same_results(iml_metrics([p[None] for p in preds], [m[None] for m in masks]), want)


def test_an_object_array_of_maps_is_read_as_a_sequence():
    preds, masks = make_dataset(seed=12, n=4)
    obj_preds = np.empty(len(preds), dtype=object)
    obj_masks = np.empty(len(masks), dtype=object)
    obj_preds[:], obj_masks[:] = preds, masks
    assert_same_results(iml_metrics(obj_preds, obj_masks), iml_metrics(preds, masks))


def test_half_precision_and_bool_predictions_are_accepted():
    mask = square_mask()
    assert iml_metrics([torch.from_numpy(mask).half()], [mask])["pixel_f1"] == 1.0
    assert iml_metrics([torch.from_numpy(mask).bfloat16()], [mask])["pixel_f1"] == 1.0
    assert iml_metrics([mask], [mask])["pixel_f1"] == 1.0


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def test_error_on_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        iml_metrics([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])


def test_error_on_shape_mismatch_names_index_and_both_shapes():
    with pytest.raises(ValueError, match=r"predictions\[1\] has shape \(4, 5\).*references\[1\] has shape \(5, 4\)"):
        iml_metrics([np.zeros((2, 2)), np.zeros((4, 5))], [np.zeros((2, 2)), np.zeros((5, 4))])


def test_error_on_predictions_outside_unit_interval_suggests_sigmoid():
    with pytest.raises(ValueError, match=r"predictions\[0\].*outside \[0, 1\].*logits.*sigmoid"):
        iml_metrics([np.array([[-2.0, 3.0]])], [np.array([[0, 1]])])


def test_error_on_a_0_255_prediction_also_suggests_dividing_by_255():
    with pytest.raises(ValueError, match="divide it by 255"):
        iml_metrics([np.array([[0, 255]], dtype=np.uint8)], [np.array([[0, 1]])])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_on_non_finite_prediction_names_the_index(bad):
    pred = np.full((3, 3), 0.5)
    pred[1, 1] = bad
    with pytest.raises(ValueError, match=r"predictions\[1\] contains non-finite"):
        iml_metrics([np.zeros((3, 3)), pred], [np.zeros((3, 3)), np.zeros((3, 3))])


@pytest.mark.parametrize("mask", [np.array([[0, 255]]), np.array([[0.0, 0.5]]), np.array([[0, 2]])])
def test_error_on_non_binary_reference(mask):
    with pytest.raises(ValueError, match=r"references\[0\] is not binary"):
        iml_metrics([np.zeros((1, 2))], [mask])


@pytest.mark.parametrize(
    "shape", [(5,), (2, 4, 4), (4, 4, 1), (1, 1, 4, 4)], ids=["1d", "2-channel", "hwc", "4d-per-item"]
)
def test_error_on_maps_that_are_not_2d_or_1hw(shape):
    with pytest.raises(ValueError, match=r"predictions\[0\] has shape .*2-D \(H, W\)"):
        iml_metrics([np.zeros(shape)], [np.zeros(shape)])


def test_error_on_a_single_unwrapped_2d_map_says_to_wrap_it_in_a_list():
    with pytest.raises(ValueError, match="wrap it in a list"):
        iml_metrics(np.zeros((4, 4)), np.zeros((4, 4)))


def test_error_on_empty_map():
    with pytest.raises(ValueError, match="empty"):
        iml_metrics([np.zeros((0, 4))], [np.zeros((0, 4))])


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "0.5", True])
def test_error_on_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match="threshold"):
        iml_metrics([np.zeros((2, 2))], [np.zeros((2, 2))], threshold=threshold)
    with pytest.raises(ValueError, match="threshold"):
        IMLMetric(threshold=threshold)


def test_error_on_unknown_image_score():
    with pytest.raises(ValueError, match="Unknown image_score 'median'"):
        iml_metrics([np.zeros((2, 2))], [np.zeros((2, 2))], image_score="median")


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("include_authentic", [False, True])
def test_streaming_over_arbitrary_splits_equals_batch_result_exactly(include_authentic):
    preds, masks = make_dataset(seed=6, n=20)
    want = iml_metrics(preds, masks, threshold=0.4, include_authentic=include_authentic)
    rng = np.random.default_rng(7)
    for _ in range(5):
        order = rng.permutation(len(preds))
        cuts = np.sort(rng.choice(np.arange(1, len(preds)), size=int(rng.integers(1, 8)), replace=False))
        metric = IMLMetric(threshold=0.4, include_authentic=include_authentic)
        for chunk in np.split(order, cuts):
            metric.add_batch([preds[i] for i in chunk], [masks[i] for i in chunk])
        assert len(metric) == len(preds)
        assert_same_results(metric.compute(), want)


def test_streaming_add_single_images_and_reset():
    preds, masks = make_dataset(seed=8, n=6)
    metric = IMLMetric()
    for p, m in zip(preds, masks):
        metric.add(p, m)
    assert_same_results(metric.compute(), iml_metrics(preds, masks))
    metric.reset()
    assert len(metric) == 0
    assert metric.compute()["num_images"] == 0


def test_streaming_keeps_only_per_image_statistics():
    preds, masks = make_dataset(seed=9, n=5)
    metric = IMLMetric()
    metric.add_batch(preds, masks)
    stats = metric.per_image_stats()
    assert set(stats) >= {"tp", "fp", "fn", "tn", "auc", "score", "label", "f1", "f1_permuted", "iou"}
    assert all(v.shape == (5,) for v in stats.values())
    sizes = [m.size for m in masks]
    np.testing.assert_array_equal(stats["tp"] + stats["fp"] + stats["fn"] + stats["tn"], sizes)
    np.testing.assert_array_equal(stats["label"], [m.any() for m in masks])


def test_streaming_validation_error_leaves_the_metric_unchanged():
    metric = IMLMetric()
    metric.add(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError):
        metric.add_batch([np.zeros((2, 2)), np.full((2, 2), 7.0)], [np.ones((2, 2))] * 2)
    assert len(metric) == 1


class _FakeAccelerator:
    """Single-process stand-in: gather_for_metrics returns its input."""

    num_processes = 1

    def gather_for_metrics(self, data, use_gather_object=False):
        assert use_gather_object
        return list(data)


def test_mixing_local_and_gathered_statistics_is_refused():
    metric = IMLMetric()
    metric.add(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="local"):
        metric.add_batch([np.zeros((2, 2))], [np.ones((2, 2))], accelerator=_FakeAccelerator())
    metric.gather()  # single process: a no-op that marks the statistics global
    with pytest.raises(RuntimeError, match="already"):
        metric.gather()
    with pytest.raises(RuntimeError, match="local"):
        metric.add(np.zeros((2, 2)), np.ones((2, 2)))
    metric.reset()
    metric.add_batch([np.zeros((2, 2))], [np.ones((2, 2))], accelerator=_FakeAccelerator())
    assert len(metric) == 1


_DISTRIBUTED_SCRIPT = textwrap.dedent(
    '''
    import json, sys
    import numpy as np, torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from sparsevit_hf.evaluation.metrics import IMLMetric

    def make_data(n=11, seed=0):
        rng = np.random.default_rng(seed)
        data = []
        for i in range(n):
            shape = (20 + 3 * (i % 4), 24)
            pred = (np.round(rng.random(shape) * 6) / 6).astype(np.float32)
            mask = rng.random(shape) < (0.0 if i % 5 == 0 else 0.3)
            data.append((pred, mask))
        return data

    if __name__ == "__main__":
        accelerator = Accelerator(cpu=True)
        data = make_data()
        tensors = [(torch.from_numpy(p), torch.from_numpy(m)) for p, m in data]
        # 11 images, 2 per process and step: the last step is padded with a duplicate.
        loader = accelerator.prepare(
            DataLoader(tensors, batch_size=2, collate_fn=lambda b: ([p for p, _ in b], [m for _, m in b]))
        )
        per_batch = IMLMetric(threshold=0.4)
        for preds, masks in loader:
            per_batch.add_batch(preds, masks, accelerator=accelerator)

        rank, world = accelerator.process_index, accelerator.num_processes
        mine = data[rank::world]
        with_accelerate = IMLMetric(threshold=0.4)
        with_accelerate.add_batch([p for p, _ in mine], [m for _, m in mine])
        with_accelerate.gather(accelerator)
        with_torch = IMLMetric(threshold=0.4)
        with_torch.add_batch([p for p, _ in mine], [m for _, m in mine])
        with_torch.gather()
        out = {
            "world": world,
            "local_images": len(mine),
            "per_batch": per_batch.compute(),
            "gather_accelerate": with_accelerate.compute(),
            "gather_torch": with_torch.compute(),
        }
        with open(f"{sys.argv[1]}.{rank}.json", "w") as f:
            json.dump(out, f)
        # As run_iml.py does: a gloo group left to interpreter shutdown can abort the process.
        accelerator.end_training()
    '''
)


def test_two_process_gloo_run_counts_every_image_exactly_once(tmp_path):
    pytest.importorskip("accelerate")
    script = tmp_path / "distributed_metric.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC_DIR), str(tmp_path), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    # `accelerate launch --cpu` starts several CPU processes only through MPI, so use
    # torchrun (what `accelerate launch` wraps for GPUs); Accelerator() picks up its env.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    sys.path.insert(0, str(tmp_path))
    try:
        import distributed_metric
    finally:
        sys.path.remove(str(tmp_path))
    data = distributed_metric.make_data()
    want = iml_metrics([p for p, _ in data], [m for _, m in data], threshold=0.4)
    assert want["num_images"] == 11

    results = [json.loads((tmp_path / f"out.{rank}.json").read_text()) for rank in range(2)]
    for result in results:
        assert result["world"] == 2
        assert result["local_images"] < 11
        for key in ("per_batch", "gather_accelerate", "gather_torch"):
            assert_same_results(result[key], want)


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------


def test_evaluate_metric_script_ships_inside_the_package():
    assert EVALUATE_METRIC_SCRIPT.is_file()
    assert EVALUATE_METRIC_SCRIPT.parent.name == "metric"
    assert EVALUATE_METRIC_SCRIPT.name == "iml_metrics.py"


@pytest.mark.parametrize("kwargs", [{}, {"threshold": 0.3, "include_authentic": True, "image_score": "mean"}])
def test_evaluate_load_offline_add_batch_and_compute_equal_iml_metrics(tmp_path, monkeypatch, kwargs):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    preds, masks = make_dataset(seed=10, n=7)
    preds = [p.astype(np.float32) for p in preds]
    metric = evaluate.load(str(EVALUATE_METRIC_SCRIPT), cache_dir=str(tmp_path))
    metric.add_batch(predictions=preds[:3], references=masks[:3])
    metric.add_batch(
        predictions=[torch.from_numpy(p)[None] for p in preds[3:]],  # tensors, (1, H, W)
        references=[m.astype(np.uint8) for m in masks[3:]],
    )
    got = metric.compute(**kwargs)
    assert_same_results(got, iml_metrics(preds, masks, **kwargs))


def test_load_evaluate_metric_helper_and_512_maps(tmp_path):
    pytest.importorskip("evaluate")
    rng = np.random.default_rng(11)
    preds = [quantised_map(rng, (512, 512), levels=255) for _ in range(2)]
    masks = [blob_mask(rng, (512, 512)) for _ in range(2)]
    metric = load_evaluate_metric(keep_in_memory=True)
    start = time.perf_counter()
    got = metric.compute(predictions=preds, references=masks)
    assert time.perf_counter() - start < 20.0  # about 0.2 s per 512 x 512 map
    assert_same_results(got, iml_metrics(preds, masks))
