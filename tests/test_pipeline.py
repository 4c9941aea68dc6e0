"""`pipeline("image-segmentation")` on a saved SparseViT folder: with the package installed, and with remote code in
an interpreter where the package cannot be imported."""

import json

import numpy as np
import pytest
import torch
from conftest import run_without_package
from PIL import Image
from transformers import pipeline

from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf.inference import predict_probabilities

LABELS = {"authentic", "manipulated"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def saved(tiny_config, tmp_path):
    """A tiny model whose predictions straddle 0.5, so that both labels appear; its folder and two images."""
    torch.manual_seed(0)
    tiny_config.layer_scale_init_value = 0.3
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    processor = SparseViTImageProcessor(size={"height": 64, "width": 64})
    images = [
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8))
        for seed, size in ((0, (70, 90, 3)), (1, (48, 40, 3)))
    ]
    probabilities = predict_probabilities(model, processor, images)
    # Shift the classifier bias so that the first image's median probability sits at 0.5: both labels present.
    median = float(np.median(probabilities[0]))
    with torch.no_grad():
        model.fusion_head.classifier.bias -= float(np.log(median / (1 - median)))
    probabilities = predict_probabilities(model, processor, images)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"image{index}.png")
        image.save(paths[-1])
    return folder, images, paths, probabilities


def check_segments(segments, probability):
    height, width = probability.shape
    labels = [segment["label"] for segment in segments]
    assert set(labels) <= LABELS and len(labels) == len(set(labels))
    union = np.zeros((height, width), dtype=bool)
    for segment in segments:
        mask = segment["mask"]
        assert isinstance(mask, Image.Image) and mask.mode == "L" and mask.size == (width, height)
        values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        expected = probability > 0.5 if segment["label"] == "manipulated" else probability <= 0.5
        np.testing.assert_array_equal(values == 255, expected)
        union |= values == 255
        assert "score" in segment  # None: the semantic format of the pipeline carries no score
    assert union.all()


def test_pipeline_with_the_package_installed(saved, monkeypatch):
    folder, images, paths, probabilities = saved
    prompts = []
    monkeypatch.setattr("builtins.input", lambda question="": prompts.append(question) or "n")
    segmenter = pipeline("image-segmentation", model=str(folder))
    assert prompts == []  # the installed package's classes need no trust_remote_code question
    assert type(segmenter.model).__module__ == "sparsevit_hf.modeling_sparsevit"
    assert type(segmenter.image_processor).__name__ == "SparseViTImageProcessor"

    single = segmenter(images[0])
    assert {segment["label"] for segment in single} == LABELS
    check_segments(single, probabilities[0])
    check_segments(segmenter(str(paths[1])), probabilities[1])  # a file path
    batch = segmenter([images[0], images[1]])  # a batch
    assert len(batch) == 2
    for segments, probability in zip(batch, probabilities, strict=True):
        check_segments(segments, probability)
    check_segments(segmenter(images[0], subtask="semantic"), probabilities[0])

    # trust_remote_code=True (which the model card recommends) still uses the installed classes.
    trusting = pipeline("image-segmentation", model=str(folder), trust_remote_code=True)
    assert type(trusting.model).__module__ == "sparsevit_hf.modeling_sparsevit"
    assert type(trusting.image_processor).__module__ == "sparsevit_hf.image_processing_sparsevit"
    check_segments(trusting(images[1]), probabilities[1])


def test_pipeline_with_remote_code_and_without_the_package(saved, tmp_path):
    folder, _, paths, probabilities = saved
    stdout = run_without_package(
        f"""
        import json
        import numpy as np
        from PIL import Image
        from transformers import pipeline

        segmenter = pipeline("image-segmentation", model={str(folder)!r}, trust_remote_code=True)
        paths = {[str(path) for path in paths]!r}
        results = {{
            "module": type(segmenter.model).__module__,
            "pil": segmenter(Image.open(paths[0])),
            "path": segmenter(paths[1]),
            "batch": segmenter(paths),
        }}

        def encode(segments):
            return [
                {{"label": s["label"], "size": list(s["mask"].size), "pixels": int((np.asarray(s["mask"]) > 0).sum())}}
                for s in segments
            ]

        print(json.dumps({{
            "module": results["module"],
            "pil": encode(results["pil"]),
            "path": encode(results["path"]),
            "batch": [encode(segments) for segments in results["batch"]],
        }}))
        """,
        tmp_path,
    )
    results = json.loads(stdout.strip().splitlines()[-1])
    assert not results["module"].startswith("sparsevit_hf")

    def expected(probability):
        height, width = probability.shape
        manipulated = int((probability > 0.5).sum())
        segments = {"authentic": height * width - manipulated, "manipulated": manipulated}
        return {label: ([width, height], count) for label, count in segments.items() if count}

    def got(segments):
        return {segment["label"]: (segment["size"], segment["pixels"]) for segment in segments}

    assert got(results["pil"]) == expected(probabilities[0])
    assert got(results["path"]) == expected(probabilities[1])
    assert [got(segments) for segments in results["batch"]] == [expected(p) for p in probabilities]
