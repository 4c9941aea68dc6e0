"""Specification of the shared evaluation loop (`sparsevit_hf.evaluation.evaluate` / `Evaluator`): a model's
metrics on named sets, at each image's own size, the same in one process and under Accelerate."""

import math

import numpy as np
import pytest
import torch

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf.evaluation import (
    Evaluator,
    MetricSettings,
    flatten_results,
    iml_metrics,
    load_evaluation_sets,
    parse_robustness,
    trivial_baselines,
)


@pytest.fixture(scope="module")
def sets():
    return load_evaluation_sets({"syn": "synthetic:num_images=5,size=64"})  # the test split by default


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny")).eval()


@pytest.fixture(scope="module")
def processor():
    return SparseViTImageProcessor(size={"height": 64, "width": 64})


def reference_metrics(model, processor, dataset, settings):
    """The metrics of the model's probability maps, mapped back to each image's size, one image at a time."""
    from sparsevit_hf.data import with_decoding

    maps, masks = [], []
    for row in with_decoding(dataset):
        mask = np.asarray(row["mask"], dtype=bool)
        with torch.no_grad():
            logits = model(**processor(images=row["image"], return_tensors="pt")).logits
        [result] = processor.post_process_semantic_segmentation(
            logits, target_sizes=[mask.shape], return_probabilities=True
        )
        maps.append(result["probabilities"].numpy())
        masks.append(mask)
    return iml_metrics(maps, masks, threshold=settings.threshold, include_authentic=settings.include_authentic)


def test_evaluator_scores_the_model_maps_at_each_image_size(sets, model, processor):
    settings = MetricSettings(threshold=0.4)
    evaluator = Evaluator(sets, processor, settings, perturbations=parse_robustness(["jpeg:70"]), batch_size=2)
    assert evaluator.main_sets == ["syn"] and evaluator.robustness_sets == ["syn@jpeg70"]
    model.train()
    results = evaluator(model, ["syn", "syn@jpeg70"])
    assert model.training  # the mode is restored
    model.eval()
    assert list(results) == ["syn", "syn@jpeg70"]
    expected = reference_metrics(model, processor, sets["syn"], settings)
    got = results["syn"]
    assert got["num_images"] == 5 and math.isfinite(got["loss"]) and got["loss"] > 0
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    assert results["syn@jpeg70"]["num_images"] == 5
    assert results["syn@jpeg70"]["pixel_auc"] != got["pixel_auc"]  # the images were degraded


def test_the_same_results_under_accelerate(sets, model, processor):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    alone = Evaluator(sets, processor, batch_size=2)(model)
    try:
        accelerator = Accelerator(cpu=True)
        distributed = Evaluator(sets, processor, batch_size=2, accelerator=accelerator)(model)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        PartialState._reset_state()
    assert distributed.keys() == alone.keys()
    flat_alone, flat_distributed = flatten_results(alone), flatten_results(distributed)
    assert flat_distributed.keys() == flat_alone.keys()
    for key, value in flat_alone.items():
        expected = value if isinstance(value, str) else pytest.approx(value, rel=1e-6, nan_ok=True)
        assert flat_distributed[key] == expected, key


def test_the_main_sets_are_reported_next_to_the_baselines(sets, model, processor):
    metrics = Evaluator(sets, processor, batch_size=2)(model)["syn"]
    for key in ("content_free_f1", "shuffled_f1", "content_gap"):
        assert key in metrics  # the content-free one is NaN here: no training masks were given
    assert "no content-free predictor" in metrics["baseline_note"]
    assert set(metrics["per_kind"]) <= {"splicing", "copy_move", "removal"}  # the synthetic set records kinds


def test_trivial_baselines_are_the_constant_predictions(sets, processor):
    baselines = Evaluator(sets, processor).baselines()["syn"]
    assert baselines == trivial_baselines(sets["syn"])
    assert baselines["all_authentic"]["pixel_f1"] == 0.0
    manipulated = baselines["all_manipulated"]
    assert 0.0 < manipulated["pixel_f1"] < 1.0 and manipulated["pixel_auc"] == 0.5  # every pixel tied
    strict = trivial_baselines(sets["syn"], MetricSettings(threshold=1.0))  # 1.0 is not above 1.0
    assert strict["all_manipulated"]["pixel_f1"] == 0.0
