"""ONNX export and the ONNX Runtime backend: a deployment folder that reproduces the PyTorch model, an int8 variant
that keeps its masks, and prediction through `Predictor` and `sparsevit-predict --backend onnxruntime`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf.cli import export as export_cli
from sparsevit_hf.cli import predict as predict_cli
from sparsevit_hf.inference import (
    ModelLoadError,
    OnnxRuntimeModel,
    Predictor,
    export_onnx,
    load_model,
    load_onnx_model,
)

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 64


@pytest.fixture(scope="module")
def pytorch_folder(tmp_path_factory):
    """A tiny trained-looking model (layer scales 0.5, so that every block matters) saved with its processor."""
    config = SparseViTConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 4, 2], attention_head_size=16,
        sparsity_rates=[[4, 4, 2, 1], [2, 1]], fused_blocks=[[1, 3], [0, 1]], fusion_hidden_size=64,
        layer_scale_init_value=0.5,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pytorch")
    SparseViTForManipulationLocalization(config).eval().save_pretrained(folder)
    SparseViTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(pytorch_folder, tmp_path_factory):
    model, processor = load_model(pytorch_folder, device="cpu")
    folder = tmp_path_factory.mktemp("onnx")
    report = export_onnx(model, processor, folder, size=SIZE, source="tiny")
    return folder, report, model


def photo(height, width, seed=0):
    """A smooth picture with a sharp-edged pasted square: structure for the model to react to."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = 128 + 60 * np.sin(x / 9.0 + seed)[..., None] * np.cos(y / 13.0)[..., None] * np.ones(3)
    image[height // 4 : height // 2, width // 3 : width // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8))


def test_export_writes_a_folder_with_a_static_size_and_a_free_batch(exported):
    folder, report, _ = exported
    assert {"model.onnx", "config.json", "preprocessor_config.json", "README.md"} <= {p.name for p in folder.iterdir()}
    onnx_model = OnnxRuntimeModel(folder)
    assert onnx_model.input_size == (SIZE, SIZE) and onnx_model.quantization is None
    assert isinstance(onnx_model.session.get_inputs()[0].shape[0], str)  # a named, free batch axis
    assert json.loads((folder / "preprocessor_config.json").read_text())["size"] == {"height": SIZE, "width": SIZE}
    assert report.size == SIZE and report.quantization is None and report.max_abs_logit_diff <= 1e-4
    assert "opset 20" in (folder / "README.md").read_text() and "`tiny`" in (folder / "README.md").read_text()


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_reproduces_pytorch_fp32_logits(exported, batch):
    folder, _, model = exported
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(pixel_values).logits
    logits = OnnxRuntimeModel(folder)(pixel_values=pixel_values).logits
    assert logits.shape == expected.shape == (batch, 1, SIZE // 16, SIZE // 16) and expected.std() > 0.1
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_smaller_inputs_are_padded_to_the_exported_size_and_larger_ones_refused(exported):
    folder, _, model = exported
    pixel_values = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(torch.nn.functional.pad(pixel_values, (0, SIZE - 56, 0, SIZE - 40))).logits[..., :3, :4]
    logits = OnnxRuntimeModel(folder)(pixel_values=pixel_values).logits
    assert logits.shape == (1, 1, 3, 4)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"96 x 64 but .*model.onnx was exported for 64 x 64"):
        OnnxRuntimeModel(folder)(pixel_values=torch.zeros(1, 3, 96, 64))


def test_predictor_with_onnx_runtime_matches_pytorch_in_resize_and_tiled_modes(exported):
    folder, _, model = exported
    onnx_model, processor = load_onnx_model(folder)
    images = [photo(100, 150, seed=1), photo(70, 90, seed=2)]
    for mode in ("resize", "tiled"):
        expected = Predictor(model, processor, mode, tile_size=SIZE, tile_overlap=16).predict(images)
        maps = Predictor(onnx_model, processor, mode, tile_size=SIZE, tile_overlap=16, batch_size=2).predict(images)
        for probability, reference in zip(maps, expected, strict=True):
            assert probability.shape == reference.shape and probability.dtype == np.float32
            np.testing.assert_allclose(probability, reference, atol=1e-5)


def test_static_graphs_refuse_native_mode_other_tiles_and_other_dtypes(exported):
    folder, _, _ = exported
    onnx_model, processor = load_onnx_model(folder)
    with pytest.raises(ValueError, match="native mode needs every size"):
        Predictor(onnx_model, processor, "native")
    with pytest.raises(ValueError, match="tile_size is 128 but the ONNX model"):
        Predictor(onnx_model, processor, "tiled", tile_size=128, tile_overlap=16)
    with pytest.raises(ModelLoadError, match="does not apply to the onnxruntime backend"):
        load_model(folder, backend="onnxruntime", dtype="bf16")


def test_a_folder_without_model_onnx_is_a_clear_error(pytorch_folder, tmp_path, capsys):
    with pytest.raises(ModelLoadError, match=r"has no model.onnx: export one with `sparsevit-export"):
        load_model(pytorch_folder, backend="onnxruntime")
    image = tmp_path / "photo.png"
    photo(64, 64).save(image)
    code = predict_cli.main([str(pytorch_folder), str(image), "-o", str(tmp_path / "out"), "--backend", "onnxruntime"])
    assert code == 2 and "has no model.onnx" in capsys.readouterr().err


def test_sparsevit_predict_runs_the_onnx_backend_and_writes_every_output(exported, tmp_path):
    folder, _, _ = exported
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for index, size in enumerate([(80, 120), (64, 64)]):
        photo(*size, seed=index).save(inputs / f"p{index}.png")
    for mode in ("resize", "tiled"):
        output = tmp_path / mode
        code = predict_cli.main(
            [str(folder), str(inputs), "-o", str(output), "--backend", "onnxruntime", "--mode", mode,
             "--tile-size", str(SIZE), "--tile-overlap", "16", "--quiet"]
        )
        assert code == 0
        lines = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
        assert [(line["width"], line["height"], line["mode"]) for line in lines] == [(120, 80, mode), (64, 64, mode)]
        assert all((output / name).is_file() for line in lines for name in line["outputs"].values())


def test_int8_export_keeps_the_masks_of_the_fp32_export(pytorch_folder, exported, tmp_path, capsys):
    fp32_folder, _, _ = exported
    arguments = [str(pytorch_folder), "-o", str(tmp_path / "int8"), "--size", str(SIZE), "--quantize", "int8"]
    code = export_cli.main(arguments)
    assert code == 0 and "int8" in capsys.readouterr().out
    int8, fp32 = OnnxRuntimeModel(tmp_path / "int8"), OnnxRuntimeModel(fp32_folder)
    assert int8.quantization == "int8"
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (fp32_folder / "model.onnx").stat().st_size
    processor = SparseViTImageProcessor.from_pretrained(fp32_folder)
    pixel_values = processor([photo(SIZE, SIZE, seed) for seed in range(8)], return_tensors="pt")["pixel_values"]
    logits_int8, logits_fp32 = int8(pixel_values=pixel_values).logits, fp32(pixel_values=pixel_values).logits
    assert not torch.equal(logits_int8, logits_fp32)  # quantized for real
    assert ((logits_int8 > 0) == (logits_fp32 > 0)).float().mean() >= 0.97


@pytest.mark.parametrize(
    "arguments, message",
    [(["--size", "50"], "multiple of 32"), (["--quantize", "int4"], "invalid choice")],
)
def test_export_refuses_bad_options(pytorch_folder, tmp_path, capsys, arguments, message):
    try:
        code = export_cli.main([str(pytorch_folder), "-o", str(tmp_path / "out"), *arguments])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err
