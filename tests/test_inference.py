"""Whole-image inference (resize / native / tiled), image loading and model loading."""

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf.inference import (
    MODES,
    ImageLoadError,
    ImageSizeError,
    ModelLoadError,
    Predictor,
    check_model_folder,
    image_score,
    load_image,
    load_model,
    loading,
    manipulated_fraction,
    predict_probabilities,
    resolve_device,
    resolve_dtype,
    tile_starts,
    tile_weights,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    tiny_config.layer_scale_init_value = 0.3  # outputs that vary over the image
    return SparseViTForManipulationLocalization(tiny_config).eval()


@pytest.fixture
def processor():
    return SparseViTImageProcessor(size={"height": 64, "width": 64})


def random_image(height, width, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def smooth_image(height, width):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 40.0) * np.cos(y / 50.0)], axis=-1)
    return Image.fromarray(np.rint(rgb * 255).astype(np.uint8))


class LogitsFromPixels(torch.nn.Module):
    """A stand-in model with the SparseViT output contract: logits at 1/16 (ceil) computed by `function`."""

    def __init__(self, config, function):
        super().__init__()
        self.config = config
        self.function = function
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.function(pixel_values))


def constant_logits(value):
    def function(pixel_values):
        batch, _, height, width = pixel_values.shape
        return torch.full((batch, 1, -(-height // 16), -(-width // 16)), value)

    return function


def local_logits(pixel_values):
    """Logit = 2 x the mean normalised intensity of each 16 x 16 cell: a purely local "model"."""
    return 2.0 * F.avg_pool2d(pixel_values.mean(1, keepdim=True), 16, ceil_mode=True)


# ------------------------------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_returns_float32_maps_at_the_original_size(model, processor, mode):
    images = [random_image(70, 100, 1), random_image(45, 33, 2), random_image(70, 100, 3)]
    maps = predict_probabilities(model, processor, images, mode=mode, tile_size=64, tile_overlap=16, batch_size=2)
    assert [m.shape for m in maps] == [(70, 100), (45, 33), (70, 100)]
    for probability in maps:
        assert probability.dtype == np.float32
        assert np.isfinite(probability).all() and probability.min() >= 0.0 and probability.max() <= 1.0
        assert probability.std() > 0  # a real map, not a constant


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_follows_the_logits_stride_of_the_model(processor, tiny_config, mode):
    # Patch sizes [2, 2, 2, 2]: logits at 1/8 of the input. A model that calls bright pixels manipulated must find the
    # right half manipulated (a constant stride of 16 gave about 0.59 there).
    config = SparseViTConfig(**{**tiny_config.to_dict(), "patch_sizes": [2, 2, 2, 2]})
    assert config.fusion_stride == 8
    model = LogitsFromPixels(config, lambda pixel_values: 20.0 * F.avg_pool2d(pixel_values[:, :1], 8, ceil_mode=True))
    rgb = np.zeros((96, 160, 3), dtype=np.uint8)
    rgb[:, 80:] = 255
    (probability,) = predict_probabilities(model, processor, Image.fromarray(rgb), mode, tile_size=64, tile_overlap=16)
    assert probability.shape == (96, 160)
    assert probability[:, 96:].min() > 0.99 and probability[:, :64].max() < 0.01


def test_native_mode_of_a_stride_8_sparsevit_is_its_logits_upsampled_by_8(tiny_config, processor):
    config = SparseViTConfig(**{**tiny_config.to_dict(), "patch_sizes": [2, 2, 2, 2], "layer_scale_init_value": 0.3})
    torch.manual_seed(0)
    model = SparseViTForManipulationLocalization(config).eval()
    image = random_image(50, 81)
    with torch.no_grad():
        logits = model(**processor(image, do_resize=False, return_tensors="pt")).logits  # input 64 x 96
    assert logits.shape[-2:] == (8, 12)
    expected = torch.sigmoid(F.interpolate(logits, size=(64, 96), mode="bilinear"))[0, 0, :50, :81]
    (probability,) = predict_probabilities(model, processor, image, mode="native")
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-6)


def test_resize_mode_is_the_processor_model_post_processing_chain(model, processor):
    image = random_image(90, 120)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    expected = processor.post_process_semantic_segmentation(
        outputs, target_sizes=[(90, 120)], return_probabilities=True
    )[0]["probabilities"]
    (probability,) = predict_probabilities(model, processor, image, mode="resize")
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-6)


def test_native_mode_is_the_padded_full_resolution_prediction(model, processor):
    image = random_image(50, 81)
    with torch.no_grad():
        outputs = model(**processor(image, do_resize=False, return_tensors="pt"))
    expected = processor.post_process_semantic_segmentation(
        outputs, target_sizes=[(50, 81)], return_probabilities=True, do_resize=False
    )[0]["probabilities"]
    (probability,) = predict_probabilities(model, processor, image, mode="native")
    np.testing.assert_allclose(probability, expected.numpy(), atol=1e-6)


def test_native_batches_never_pad_images_of_different_sizes_together(model, processor):
    images = [random_image(40, 40, 1), random_image(64, 96, 2), random_image(40, 40, 3)]
    batched = predict_probabilities(model, processor, images, mode="native", batch_size=3)
    single = [predict_probabilities(model, processor, image, mode="native")[0] for image in images]
    for got, expected in zip(batched, single, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (50, 70), (33, 96)])
def test_a_one_tile_tiled_prediction_equals_the_native_prediction(model, processor, size):
    image = random_image(*size)
    (native,) = predict_probabilities(model, processor, image, mode="native")
    (tiled,) = predict_probabilities(model, processor, image, mode="tiled", tile_size=96, tile_overlap=32)
    np.testing.assert_array_equal(tiled, native)


def test_tiled_blending_of_a_constant_model_is_exactly_constant(tiny_config, processor):
    stand_in = LogitsFromPixels(tiny_config, constant_logits(0.7))
    (probability,) = predict_probabilities(
        stand_in, processor, random_image(150, 237), mode="tiled", tile_size=64, tile_overlap=24, batch_size=5
    )
    assert probability.shape == (150, 237)
    np.testing.assert_allclose(probability, torch.sigmoid(torch.tensor(0.7)).item(), atol=1e-6)


def test_tiled_prediction_has_no_seams(tiny_config, processor):
    """With a purely local model, tiles and the whole image see the same pixels: the blended map must follow the
    native one closely, and be as smooth as it everywhere (no step where tiles meet). 192 x 288 needs no padding and
    puts every tile (starts 0/48/96 and 0/64/128/192) on the 16-pixel logit grid of the whole image, so the maps
    differ only by the bilinear upsampling near tile borders."""
    stand_in = LogitsFromPixels(tiny_config, local_logits)
    image = smooth_image(192, 288)
    (native,) = predict_probabilities(stand_in, processor, image, mode="native")
    (tiled,) = predict_probabilities(stand_in, processor, image, mode="tiled", tile_size=96, tile_overlap=32)
    assert np.abs(tiled - native).max() < 0.02
    for axis in (0, 1):
        assert np.abs(np.diff(tiled, axis=axis)).max() <= np.abs(np.diff(native, axis=axis)).max() + 0.005


@pytest.mark.parametrize("length", [32, 64, 65, 100, 511, 512, 513, 1000, 6000])
@pytest.mark.parametrize("tile, overlap", [(64, 0), (64, 16), (512, 128), (96, 95)])
def test_tiles_cover_everything_with_the_requested_overlap_and_positive_weights(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    tile_length = min(tile, length)
    assert starts[0] == 0 and starts[-1] + tile_length == length
    assert starts == sorted(set(starts))
    for previous, following in zip(starts, starts[1:], strict=False):
        assert previous + tile - following >= overlap  # neighbours overlap by at least `overlap`
    coverage = np.zeros(length)
    for start, weight in zip(starts, tile_weights(starts, tile_length), strict=True):
        assert weight.shape == (tile_length,) and weight.min() > 0 and weight.max() <= 1
        coverage[start : start + tile_length] += weight
    assert coverage.min() > 0


def test_tiles_are_batched(tiny_config, processor):
    calls = []

    def recording(pixel_values):
        calls.append(pixel_values.shape[0])
        return constant_logits(0.0)(pixel_values)

    stand_in = LogitsFromPixels(tiny_config, recording)
    predict_probabilities(
        stand_in, processor, random_image(100, 150), mode="tiled", tile_size=64, tile_overlap=16, batch_size=4
    )
    # 100 px -> 2 rows, 150 px -> 3 columns of 64-px tiles with >= 16 px overlap: 6 tiles in batches of 4 and 2.
    assert calls == [4, 2]


def test_bf16_inference_runs_and_returns_float32(model, processor):
    (probability,) = predict_probabilities(model, processor, random_image(64, 64), mode="native", dtype="bf16")
    assert probability.dtype == np.float32 and probability.shape == (64, 64)
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_on_a_cpu_without_native_products_warns_and_suggests_fp32(model, processor, monkeypatch, dtype):
    monkeypatch.setattr(loading, "cpu_has_fast_matmul", lambda dtype: dtype == torch.float32)
    with pytest.warns(UserWarning, match=f"no native {dtype} matrix products.*10x slower.*Use fp32"):
        Predictor(model, processor, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor(model, processor, dtype="fp32")
        assert loading.slow_precision_warning(torch.device("meta"), torch.bfloat16) is None  # only CPUs are checked
    monkeypatch.setattr(loading, "cpu_has_fast_matmul", lambda dtype: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor(model, processor, dtype=dtype)


# ------------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------------
def test_native_mode_refuses_images_over_the_pixel_limit_and_suggests_tiled(model, processor):
    with pytest.raises(ImageSizeError, match="tiled"):
        predict_probabilities(model, processor, random_image(64, 64), mode="native", max_pixels=64 * 63)
    # The limit concerns the native mode only.
    for mode in ("resize", "tiled"):
        predict_probabilities(
            model, processor, random_image(64, 64), mode=mode, max_pixels=100, tile_size=64, tile_overlap=16
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (31, 200), (200, 20)])
def test_images_below_32_pixels_are_refused_in_every_mode(model, processor, mode, size):
    with pytest.raises(ImageSizeError, match="at least 32 x 32"):
        predict_probabilities(model, processor, random_image(*size), mode=mode)


def test_invalid_options(model, processor):
    with pytest.raises(ValueError, match="mode"):
        Predictor(model, processor, "bicubic")
    with pytest.raises(ValueError, match="tile_size"):
        Predictor(model, processor, "tiled", tile_size=100)
    with pytest.raises(ValueError, match="tile_overlap"):
        Predictor(model, processor, "tiled", tile_size=64, tile_overlap=64)
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(model, processor, batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) is None
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_scores():
    probability = np.array([[0.1, 0.6], [0.5, 0.9]], dtype=np.float32)
    assert image_score(probability) == pytest.approx(0.9)
    assert manipulated_fraction(probability, 0.5) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------------------------
# Image loading
# ------------------------------------------------------------------------------------------------------------------
def test_load_image_applies_the_exif_orientation(tmp_path):
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "rotated.jpg")
    assert image.mode == "RGB" and image.size == (40, 60)  # displayed as 40 wide, 60 high
    assert np.asarray(image)[:10].mean() > 200  # the band is now at the top


@pytest.mark.parametrize(
    "mode, make",
    [
        ("CMYK", lambda rgb: Image.fromarray(rgb).convert("CMYK")),
        ("RGBA", lambda rgb: Image.fromarray(rgb).convert("RGBA")),
        ("P", lambda rgb: Image.fromarray(rgb).convert("P")),
        ("LA", lambda rgb: Image.fromarray(rgb).convert("LA")),
        ("L", lambda rgb: Image.fromarray(rgb).convert("L")),
        ("1", lambda rgb: Image.fromarray(rgb).convert("1")),
        ("I;16", lambda rgb: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)),
    ],
)
def test_load_image_converts_every_common_mode_to_8_bit_rgb(tmp_path, mode, make):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    source = make(rgb)
    assert source.mode == mode
    path = tmp_path / ("image.jpg" if mode == "CMYK" else "image.png")
    source.save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (50, 40)
    if mode == "I;16":  # 16-bit values scale to 8 bit, not clip
        np.testing.assert_array_equal(np.asarray(image)[..., 0], rgb[..., 0])


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an image"), (b"just some text\n", "not an image"), (None, "no such file")],
)
def test_load_image_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_load_image_reports_a_truncated_file(tmp_path):
    path = tmp_path / "truncated.jpg"
    random_image(200, 200).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageLoadError, match="truncated.jpg"):
        load_image(path)


# ------------------------------------------------------------------------------------------------------------------
# Model loading
# ------------------------------------------------------------------------------------------------------------------
def test_load_model_returns_an_eval_model_and_its_processor(model, processor, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_model(tmp_path, device="cpu", dtype="fp32")
    assert isinstance(loaded, SparseViTForManipulationLocalization) and not loaded.training
    assert isinstance(loaded_processor, SparseViTImageProcessor) and loaded_processor.size.height == 64


def test_load_model_uses_the_default_processor_when_the_folder_has_none(model, tmp_path):
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="preprocessor_config.json"):
        _, processor = load_model(tmp_path)
    assert processor.size.height == 512


def test_load_model_errors(model, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="'bert' model, not a SparseViT"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sparsevit"}))
    with pytest.raises(ModelLoadError, match="no weights"):
        check_model_folder(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "file.txt")


# ------------------------------------------------------------------------------------------------------------------
# Real samples
# ------------------------------------------------------------------------------------------------------------------
def test_real_samples_in_every_mode(model, processor):
    paths = sorted((SAMPLES / "Tp").glob("*.jpg"))
    if not paths:
        pytest.skip(f"no samples in {SAMPLES}")
    images = [load_image(path) for path in paths]
    for mode in MODES:
        maps = predict_probabilities(model, processor, paths, mode=mode, tile_size=256, tile_overlap=64)
        assert [m.shape for m in maps] == [(image.height, image.width) for image in images]
