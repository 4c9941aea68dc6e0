"""Specification of the baselines that ignore the image (`sparsevit_hf.evaluation.baselines`) and of the content gap
the evaluation loop reports next to every pixel F1."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sparsevit_hf import SparseViTImageProcessor
from sparsevit_hf.evaluation import (
    BASELINE_FILE,
    ContentFreePredictor,
    Evaluator,
    MetricSettings,
    content_gap,
    fit_content_free,
    fit_content_free_on_dataset,
    iml_metrics,
    load_evaluation_sets,
    shuffled_pairing,
)
from sparsevit_hf.evaluation.baselines import dataset_masks


def box_mask(height, width, top, left, bottom, right):
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.fixture(scope="module")
def processor():
    return SparseViTImageProcessor(size={"height": 64, "width": 64})


@pytest.fixture(scope="module")
def synthetic():
    sets = load_evaluation_sets(
        {"train": "synthetic:train:num_images=30,size=64", "test": "synthetic:num_images=12,size=64"}
    )
    return sets["train"], sets["test"]


class ConstantMapModel(nn.Module):
    """A model that ignores its input: the same probability map (given at any size) for every image."""

    def __init__(self, probabilities: np.ndarray):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))  # the loop reads the device and dtype from a parameter
        p = torch.as_tensor(np.clip(probabilities, 1e-4, 1 - 1e-4), dtype=torch.float32)
        self.register_buffer("logits", torch.log(p / (1 - p))[None, None])

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.logits.expand(pixel_values.shape[0], -1, -1, -1) + 0 * self.weight)


def write_folder(root, items):
    """A Tp/ + Gt/ data set of (image size, mask) items."""
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    rng = np.random.default_rng(0)
    for index, mask in enumerate(items):
        pixels = rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "Tp" / f"im{index}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "Gt" / f"im{index}.png")
    return str(root)


# -- the content-free predictor --------------------------------------------------------------------------------------
def test_the_content_free_predictor_is_the_best_fixed_region_of_the_training_masks():
    # Training masks all sit in the top-left quarter: the fitted region must be there, whatever else is evaluated.
    masks = [box_mask(64, 64, 2 + i % 5, 3 + i % 4, 30 + i % 3, 28 + i % 5) for i in range(20)]
    predictor = fit_content_free(masks)
    region = predictor.predict(64, 64).astype(bool)
    assert region[10:25, 10:25].all() and not region[40:, :].any() and not region[:, 40:].any()
    assert predictor.num_train_masks == 20 and 0.8 < predictor.train_f1 <= 1.0
    # Its score on masks elsewhere is low: it is a location prior, not a detector.
    elsewhere = [box_mask(64, 64, 40, 40, 60, 60)]
    assert iml_metrics([predictor.predict(64, 64)], elsewhere)["pixel_f1"] == 0.0
    # Authentic (empty) masks are not localization targets and do not move the fit.
    assert fit_content_free(masks + [np.zeros((64, 64), bool)] * 5).name == predictor.name


def test_every_pixel_is_a_candidate():
    masks = [np.ones((32, 32), bool)] * 3
    predictor = fit_content_free(masks)
    assert predictor.name == "every pixel" and predictor.train_f1 == 1.0


def test_a_training_split_without_masks_has_no_content_free_predictor(synthetic):
    train, _ = synthetic
    authentic = train.filter(lambda row: row["mask"] is None)
    assert len(authentic) > 0
    assert fit_content_free_on_dataset(authentic) is None
    assert fit_content_free([]) is None


def test_the_predictor_is_resized_to_each_image_and_saved_with_the_model(tmp_path):
    masks = [box_mask(48, 48, 12, 12, 36, 36) for _ in range(4)]
    predictor = fit_content_free(masks)
    wide = predictor.predict(30, 90)
    assert wide.shape == (30, 90) and wide.dtype == np.float32 and set(np.unique(wide)) <= {0.0, 1.0}
    assert wide[15, 45] == 1.0 and wide[0, 0] == 0.0
    path = predictor.save(tmp_path)
    assert path.name == BASELINE_FILE
    loaded = ContentFreePredictor.load(tmp_path)
    assert loaded.name == predictor.name and np.array_equal(loaded.predict(30, 90), wide)
    assert ContentFreePredictor.load(tmp_path / "missing") is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match=BASELINE_FILE):
        ContentFreePredictor.load(tmp_path)


# -- the shuffled pairing and the gap --------------------------------------------------------------------------------
def test_the_shuffled_pairing_scores_each_map_against_the_next_images_mask():
    masks = [box_mask(32, 32, 0, 0, 16, 16), np.zeros((32, 32), bool), box_mask(32, 32, 16, 16, 32, 32),
             box_mask(40, 20, 0, 0, 40, 10)]
    maps = [m.astype(np.float32) for m in masks]  # a perfect model
    settings = MetricSettings()
    metrics, per_image = shuffled_pairing(maps, masks, settings)
    # Scored images 0, 2, 3 (the authentic one is left out): map 0 -> mask 2, map 2 -> mask 3, map 3 -> mask 0.
    from sparsevit_hf.evaluation.baselines import resize_map

    expected = iml_metrics(
        [maps[0], resize_map(maps[2], 40, 20), resize_map(maps[3], 32, 32)], [masks[2], masks[3], masks[0]]
    )
    assert metrics["pixel_f1"] == pytest.approx(expected["pixel_f1"]) and metrics["pixel_f1"] < 0.5
    assert math.isnan(per_image[1]) and np.isfinite(per_image[[0, 2, 3]]).all()
    again, again_per_image = shuffled_pairing(maps, masks, settings)  # deterministic
    assert again["pixel_f1"] == metrics["pixel_f1"] and np.array_equal(again_per_image, per_image, equal_nan=True)
    assert shuffled_pairing(maps[:1], masks[:1], settings)[0] == {}  # one image: nothing to pair with


def test_the_content_gap_is_measured_against_the_stronger_baseline():
    assert content_gap(0.6, 0.4, 0.5) == pytest.approx(0.1)
    assert content_gap(0.6, float("nan"), 0.5) == pytest.approx(0.1)
    assert math.isnan(content_gap(0.6, float("nan"), float("nan")))
    assert math.isnan(content_gap(float("nan"), 0.2, 0.3))


# -- in the evaluation loop ------------------------------------------------------------------------------------------
def test_a_model_that_outputs_the_training_mean_mask_gains_nothing(synthetic, processor):
    train, test = synthetic
    predictor = fit_content_free_on_dataset(train)
    mean_mask = predictor.mean_mask  # (64, 64), the training masks' mean
    model = ConstantMapModel(mean_mask).eval()
    evaluator = Evaluator({"test": test}, processor, content_free=predictor, batch_size=4)
    metrics = evaluator(model)["test"]
    assert metrics["num_tampered"] >= 2 and math.isfinite(metrics["pixel_f1"])
    assert metrics["shuffled_f1"] == pytest.approx(metrics["pixel_f1"], abs=1e-9)  # the same map for every image
    assert metrics["content_gap"] <= 1e-9
    # The baselines come from the training masks only: the same predictor whatever set is evaluated.
    assert evaluator.content_free is predictor
    test_masks = list(dataset_masks(test))
    assert metrics["content_free_f1"] == pytest.approx(
        iml_metrics([predictor.predict(*m.shape) for m in test_masks], test_masks)["pixel_f1"]
    )


def test_the_content_gap_is_reported_per_manipulation_kind(synthetic, processor):
    train, test = synthetic
    model = ConstantMapModel(np.full((16, 16), 0.7)).eval()
    metrics = Evaluator({"test": test}, processor, content_free=fit_content_free_on_dataset(train))(model)["test"]
    kinds = metrics["per_kind"]
    assert set(kinds) <= {"splicing", "copy_move", "removal"} and kinds
    assert sum(row["num_tampered"] for row in kinds.values()) == metrics["num_tampered"]
    for row in kinds.values():
        assert row["content_gap"] == pytest.approx(row["pixel_f1"] - max(row["content_free_f1"], row["shuffled_f1"]))


def test_images_of_different_sizes(tmp_path, processor):
    masks = [box_mask(40, 60, 5, 5, 30, 40), box_mask(64, 64, 20, 20, 50, 50), box_mask(50, 40, 0, 0, 50, 15)]
    sets = load_evaluation_sets({"mixed": write_folder(tmp_path / "mixed", masks)})
    predictor = fit_content_free([box_mask(64, 64, 16, 16, 48, 48)] * 3)
    evaluation = Evaluator(sets, processor, content_free=predictor, batch_size=2).evaluate_set(
        ConstantMapModel(np.full((16, 16), 0.6)).eval(), "mixed"
    )
    assert [m.shape for m in evaluation.maps] == [m.shape for m in masks]  # kept at each image's size (<= 128)
    expected = iml_metrics([predictor.predict(*m.shape) for m in masks], masks)["pixel_f1"]
    assert evaluation.metrics["content_free_f1"] == pytest.approx(expected)
    assert math.isfinite(evaluation.metrics["content_gap"])


def test_a_set_without_tampered_images_gives_nan_and_a_note(synthetic, processor):
    train, test = synthetic
    authentic = test.filter(lambda row: row["mask"] is None)
    model = ConstantMapModel(np.full((16, 16), 0.3)).eval()
    metrics = Evaluator({"au": authentic}, processor, content_free=fit_content_free_on_dataset(train))(model)["au"]
    assert math.isnan(metrics["pixel_f1"]) and math.isnan(metrics["content_gap"])
    assert "no tampered image" in metrics["baseline_note"]


def test_without_a_content_free_predictor_the_gap_uses_the_shuffled_pairing(synthetic, processor):
    _, test = synthetic
    model = ConstantMapModel(np.full((16, 16), 0.7)).eval()
    metrics = Evaluator({"test": test}, processor, content_free=None)(model)["test"]
    assert math.isnan(metrics["content_free_f1"])
    assert metrics["content_gap"] == pytest.approx(metrics["pixel_f1"] - metrics["shuffled_f1"])
    assert "no content-free predictor" in metrics["baseline_note"]


def test_kinds_come_from_the_manifest_of_a_folder_written_by_sparsevit_synthesize(tmp_path):
    from collections import Counter

    from sparsevit_hf.data import load_iml_dataset
    from sparsevit_hf.data.synthetic import write_synthetic_dataset
    from sparsevit_hf.evaluation.baselines import dataset_kinds

    counts = write_synthetic_dataset(tmp_path / "syn", num_images=6, size=64, split="test", progress=False)
    folder = load_iml_dataset(str(tmp_path / "syn"))
    kinds = dataset_kinds(folder)
    assert kinds is not None and len(kinds) == 6
    assert all((kind == "authentic") == (label == 0) for kind, label in zip(kinds, folder["label"]))
    assert {kind: n for kind, n in Counter(kinds).items()} == {k: n for k, n in counts.items() if k in kinds}
    assert dataset_kinds(load_iml_dataset(write_folder(tmp_path / "plain", [box_mask(40, 40, 0, 0, 9, 9)]))) is None
