"""Specification of `SparseViTImageProcessor`.

Each test states one rule of the preprocessing / post-processing and checks it against a plain, independent
computation (Pillow resize + NumPy arithmetic, torch interpolate) rather than against the processor itself.
"""

import ast
import importlib
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BatchFeature
from transformers.image_processing_outputs import SemanticSegmentationPostProcessorOutput
from transformers.modeling_outputs import SemanticSegmenterOutput

from sparsevit_hf.image_processing_sparsevit import SparseViTImageProcessor

MODULE_FILE = Path(__file__).resolve().parents[1] / "src" / "sparsevit_hf" / "image_processing_sparsevit.py"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
requires_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"sample folder {SAMPLES} not found")

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Independent reference computations
# ----------------------------------------------------------------------------------------------------------------
def random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def reference_pixel_values(rgb_uint8, size=(512, 512)):
    """Official recipe: Pillow bilinear resize of the uint8 RGB image, / 255, ImageNet normalisation. CHW."""
    image = Image.fromarray(rgb_uint8)
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return ((array - MEAN) / STD).transpose(2, 0, 1)


def load(path):
    """Open an image file and read it completely (the file is closed afterwards)."""
    with Image.open(path) as image:
        image.load()
    return image


def reference_labels(binary, size=(512, 512)):
    """Nearest-neighbour Pillow resize of a boolean mask, as float 0/1."""
    image = Image.fromarray(binary.astype(np.uint8))
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(image).astype(np.float32)


@pytest.fixture
def processor():
    return SparseViTImageProcessor()


@pytest.fixture
def native_processor():
    return SparseViTImageProcessor(do_resize=False)


# ----------------------------------------------------------------------------------------------------------------
# Defaults: the official preprocessing
# ----------------------------------------------------------------------------------------------------------------
def test_defaults_are_the_official_sparsevit_preprocessing(processor):
    assert processor.do_resize is True
    assert (processor.size.height, processor.size.width) == (512, 512)
    assert processor.resample == Image.Resampling.BILINEAR
    assert processor.do_rescale is True and processor.rescale_factor == pytest.approx(1 / 255)
    assert processor.do_normalize is True
    assert tuple(processor.image_mean) == pytest.approx((0.485, 0.456, 0.406))
    assert tuple(processor.image_std) == pytest.approx((0.229, 0.224, 0.225))
    assert processor.do_convert_rgb is True
    assert processor.do_pad is True and processor.size_divisor == 32
    assert processor.model_input_names == ["pixel_values"]


def test_default_output_is_float32_batch_of_512x512_rgb(processor):
    encoding = processor(Image.fromarray(random_rgb(100, 70)), return_tensors="pt")
    assert isinstance(encoding, BatchFeature)
    assert set(encoding.keys()) == {"pixel_values"}
    assert encoding["pixel_values"].shape == (1, 3, 512, 512)
    assert encoding["pixel_values"].dtype == torch.float32


def test_known_constant_image_gives_exact_normalised_values(processor):
    rgb = np.empty((64, 48, 3), dtype=np.uint8)
    rgb[...] = (255, 0, 128)
    pixel_values = processor(rgb, return_tensors="np")["pixel_values"][0]
    expected = (np.array([1.0, 0.0, 128 / 255]) - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    for channel in range(3):
        np.testing.assert_allclose(pixel_values[channel], expected[channel], rtol=0, atol=1e-6)


@pytest.mark.parametrize("height, width", [(37, 53), (600, 410), (512, 512)])
def test_default_matches_pil_bilinear_resize_and_numpy_normalisation(processor, height, width):
    rgb = random_rgb(height, width, seed=height)
    pixel_values = processor(Image.fromarray(rgb), return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(pixel_values, reference_pixel_values(rgb), rtol=0, atol=1e-5)


@requires_samples
def test_default_matches_reference_on_a_real_tampered_photo(processor):
    image = load(SAMPLES / "Tp" / "sample_1.jpg")
    pixel_values = processor(image, return_tensors="pt")["pixel_values"][0].numpy()
    np.testing.assert_allclose(pixel_values, reference_pixel_values(np.asarray(image.convert("RGB"))), atol=1e-5)


def test_batch_of_different_sizes_is_resized_to_a_common_512x512(processor):
    images = [Image.fromarray(random_rgb(h, w, seed=h)) for h, w in [(40, 90), (300, 35), (512, 512)]]
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (3, 3, 512, 512)
    for index, image in enumerate(images):
        np.testing.assert_allclose(pixel_values[index].numpy(), reference_pixel_values(np.asarray(image)), atol=1e-5)


def test_return_tensor_types(processor):
    image = random_rgb(40, 40)
    assert isinstance(processor(image, return_tensors="pt")["pixel_values"], torch.Tensor)
    assert isinstance(processor(image, return_tensors="np")["pixel_values"], np.ndarray)
    as_list = processor([image, image], return_tensors=None)["pixel_values"]
    assert isinstance(as_list, list) and len(as_list) == 2 and as_list[0].shape == (3, 512, 512)
    assert as_list[0].dtype == np.float32


def test_images_keyword_and_per_call_overrides(processor):
    image = random_rgb(40, 70)
    assert processor(images=image, return_tensors="pt")["pixel_values"].shape == (1, 3, 512, 512)
    assert processor(image, size={"height": 64, "width": 96}, return_tensors="pt")["pixel_values"].shape == (
        1,
        3,
        64,
        96,
    )
    assert processor(image, do_resize=False, return_tensors="pt")["pixel_values"].shape == (1, 3, 64, 96)
    assert processor.do_resize is True  # a call does not change the instance


def test_channels_last_output_on_request(processor):
    pixel_values = processor(random_rgb(40, 40), data_format="channels_last", return_tensors="np")["pixel_values"]
    assert pixel_values.shape == (1, 512, 512, 3)


# ----------------------------------------------------------------------------------------------------------------
# Native resolution: no resize, zero padding bottom/right to a multiple of 32
# ----------------------------------------------------------------------------------------------------------------
def test_native_mode_pads_odd_size_bottom_right_with_zeros(native_processor):
    rgb = random_rgb(33, 70)
    pixel_values = native_processor(rgb, return_tensors="np")["pixel_values"]
    assert pixel_values.shape == (1, 3, 64, 96)
    np.testing.assert_allclose(pixel_values[0, :, :33, :70], reference_pixel_values(rgb, size=None), atol=1e-6)
    assert np.all(pixel_values[0, :, 33:, :] == 0)
    assert np.all(pixel_values[0, :, :, 70:] == 0)


def test_native_mode_batch_of_two_sizes_is_padded_to_the_common_size_top_left_aligned(native_processor):
    first, second = random_rgb(33, 70, seed=1), random_rgb(100, 40, seed=2)
    pixel_values = native_processor([first, second], return_tensors="pt")["pixel_values"].numpy()
    assert pixel_values.shape == (2, 3, 128, 96)  # max(33, 100) -> 128, max(70, 40) -> 96
    for index, rgb in enumerate([first, second]):
        height, width = rgb.shape[:2]
        np.testing.assert_allclose(
            pixel_values[index, :, :height, :width], reference_pixel_values(rgb, size=None), atol=1e-6
        )
        padding = np.ones(pixel_values.shape[1:], dtype=bool)
        padding[:, :height, :width] = False
        assert np.all(pixel_values[index][padding] == 0)


def test_native_mode_keeps_multiples_of_32_unchanged(native_processor):
    rgb = random_rgb(64, 96)
    pixel_values = native_processor(rgb, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixel_values[0], reference_pixel_values(rgb, size=None), atol=1e-6)


def test_native_mode_adds_no_extra_keys(native_processor):
    encoding = native_processor([random_rgb(33, 70), random_rgb(50, 50)], segmentation_maps=[None, None])
    assert set(encoding.keys()) == {"pixel_values", "labels"}


def test_size_divisor_is_configurable():
    processor = SparseViTImageProcessor(do_resize=False, size_divisor=64)
    assert processor(random_rgb(33, 70), return_tensors="pt")["pixel_values"].shape == (1, 3, 64, 128)


def test_fixed_pad_size():
    processor = SparseViTImageProcessor(do_resize=False, pad_size={"height": 128, "width": 160})
    assert processor(random_rgb(33, 70), return_tensors="pt")["pixel_values"].shape == (1, 3, 128, 160)
    with pytest.raises(ValueError, match="larger than `pad_size`"):
        processor(random_rgb(200, 70), return_tensors="pt")
    with pytest.raises(ValueError, match="multiple of `size_divisor`"):
        processor(random_rgb(33, 70), pad_size={"height": 100, "width": 160})


def test_without_padding_native_images_keep_their_size():
    processor = SparseViTImageProcessor(do_resize=False, do_pad=False)
    assert processor(random_rgb(33, 70), return_tensors="pt")["pixel_values"].shape == (1, 3, 33, 70)
    unpadded = processor([random_rgb(33, 70), random_rgb(40, 40)], return_tensors=None)["pixel_values"]
    assert [array.shape for array in unpadded] == [(3, 33, 70), (3, 40, 40)]
    with pytest.raises(ValueError, match="different sizes"):
        processor([random_rgb(33, 70), random_rgb(40, 40)], return_tensors="pt")


def test_option_errors_name_the_option():
    with pytest.raises(ValueError, match=r"`size` \(16x64\) is below the minimum of 32x32"):
        SparseViTImageProcessor(size={"height": 16, "width": 64})(random_rgb(40, 40))
    with pytest.raises(ValueError, match="`size_divisor` must be a positive integer"):
        SparseViTImageProcessor(do_resize=False)(random_rgb(40, 40), size_divisor=0)
    with pytest.raises(ValueError, match="does not center crop"):
        SparseViTImageProcessor()(random_rgb(40, 40), do_center_crop=True, crop_size={"height": 32, "width": 32})


def test_resize_size_must_be_a_multiple_of_the_divisor_when_padding():
    with pytest.raises(ValueError, match="multiple of `size_divisor`"):
        SparseViTImageProcessor(size={"height": 500, "width": 500})(random_rgb(40, 40))


# ----------------------------------------------------------------------------------------------------------------
# Input kinds: every form gives the same result as the equivalent uint8 RGB image
# ----------------------------------------------------------------------------------------------------------------
RGB = random_rgb(40, 50, seed=7)
GRAY = np.random.default_rng(8).integers(0, 256, size=(40, 50), dtype=np.uint8)


def _encode(processor, image, **kwargs):
    return processor(image, return_tensors="np", **kwargs)["pixel_values"]


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda: Image.fromarray(RGB), id="pil-rgb"),
        pytest.param(lambda: RGB, id="numpy-hwc"),
        pytest.param(lambda: np.ascontiguousarray(RGB.transpose(2, 0, 1)), id="numpy-chw"),
        pytest.param(lambda: torch.from_numpy(RGB.transpose(2, 0, 1).copy()), id="torch-chw"),
        pytest.param(lambda: torch.from_numpy(RGB.copy()), id="torch-hwc"),
        pytest.param(lambda: torch.from_numpy(RGB.transpose(2, 0, 1).astype(np.int64)), id="torch-int64-chw"),
        pytest.param(lambda: np.concatenate([RGB, np.zeros_like(RGB[..., :1])], axis=-1), id="numpy-rgba"),
        pytest.param(
            lambda: Image.fromarray(np.concatenate([RGB, np.zeros_like(RGB[..., :1])], axis=-1)), id="pil-rgba"
        ),
    ],
)
def test_rgb_input_forms_are_equivalent(processor, native_processor, make_input):
    # RGBA: alpha is dropped (not composited), like decoding with Image.convert("RGB"); alpha 0 keeps the colours.
    for proc in (processor, native_processor):
        np.testing.assert_array_equal(_encode(proc, make_input()), _encode(proc, RGB))


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda: GRAY, id="numpy-hw"),
        pytest.param(lambda: GRAY[..., None], id="numpy-hw1"),
        pytest.param(lambda: torch.from_numpy(GRAY[None].copy()), id="torch-1hw"),
        pytest.param(lambda: Image.fromarray(GRAY), id="pil-L"),
        pytest.param(lambda: Image.fromarray(np.stack([GRAY, np.full_like(GRAY, 9)], -1)), id="pil-LA"),
    ],
)
def test_grayscale_is_replicated_to_rgb(processor, native_processor, make_input):
    replicated = np.repeat(GRAY[..., None], 3, axis=-1)
    for proc in (processor, native_processor):
        np.testing.assert_array_equal(_encode(proc, make_input()), _encode(proc, replicated))


def test_palette_cmyk_and_bilevel_pil_images_use_pillow_rgb_conversion(processor):
    palette_image = Image.fromarray(RGB).quantize(colors=16)
    assert palette_image.mode == "P"
    cmyk_image = Image.fromarray(RGB).convert("CMYK")
    bilevel_image = Image.fromarray(GRAY).convert("1")
    for image in (palette_image, cmyk_image, bilevel_image):
        expected = _encode(processor, np.asarray(image.convert("RGB")))
        np.testing.assert_array_equal(_encode(processor, image), expected)


def test_16_bit_images_are_scaled_by_1_over_65535(native_processor, processor):
    rgb16 = RGB.astype(np.uint16) * 257  # the 16-bit version of the 8-bit image: v * 257 / 65535 == v / 255
    gray16 = GRAY.astype(np.uint16) * 257
    np.testing.assert_allclose(_encode(native_processor, rgb16), _encode(native_processor, RGB), atol=1e-6)
    for image in (Image.fromarray(gray16), Image.fromarray(gray16).convert("I")):  # modes I;16 and I
        assert image.mode in ("I;16", "I")
        np.testing.assert_allclose(_encode(native_processor, image), _encode(native_processor, GRAY), atol=1e-6)
    # Resized in float: equal to the 8-bit pipeline up to its 8-bit rounding (1/255 before normalisation).
    np.testing.assert_allclose(_encode(processor, rgb16), _encode(processor, RGB), atol=1.01 / 255 / 0.224)


def test_16_bit_precision_is_kept(native_processor):
    gray16 = np.zeros((32, 32), dtype=np.uint16)
    gray16[:, 16:] = 1  # 1/65535: invisible in 8 bit
    pixel_values = _encode(native_processor, gray16)[0]
    assert pixel_values[0, 0, 20] > pixel_values[0, 0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_images_in_unit_range_are_not_rescaled(native_processor, dtype):
    unit = (RGB / 255.0).astype(dtype)
    atol = 1e-6 if dtype != np.float16 else 2e-3
    np.testing.assert_allclose(_encode(native_processor, unit), _encode(native_processor, RGB), atol=atol)
    chw_tensor = torch.from_numpy((RGB / 255.0).astype(np.float32).transpose(2, 0, 1).copy())
    np.testing.assert_allclose(_encode(native_processor, chw_tensor), _encode(native_processor, RGB), atol=1e-6)


def test_float_images_are_resized_without_quantisation(processor):
    unit = (RGB / 255.0).astype(np.float32)
    resized = Image.fromarray(unit[..., 0]).resize((512, 512), Image.Resampling.BILINEAR)
    expected_red = (np.asarray(resized) - MEAN[0]) / STD[0]
    np.testing.assert_allclose(_encode(processor, unit)[0, 0], expected_red, atol=1e-5)


def test_a_4d_array_is_a_batch(processor):
    batch = np.stack([RGB, RGB[::-1].copy()])
    from_array = _encode(processor, batch)
    from_list = _encode(processor, [RGB, RGB[::-1].copy()])
    np.testing.assert_array_equal(from_array, from_list)
    np.testing.assert_array_equal(_encode(processor, torch.from_numpy(batch).permute(0, 3, 1, 2)), from_list)


def test_local_file_paths_are_opened(processor, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(RGB).save(path)
    np.testing.assert_array_equal(_encode(processor, str(path)), _encode(processor, RGB))
    np.testing.assert_array_equal(_encode(processor, path), _encode(processor, RGB))


def test_keeping_channels_when_rgb_conversion_is_off(processor):
    rgba = np.random.default_rng(3).integers(0, 256, size=(40, 40, 4), dtype=np.uint8)
    pixel_values = processor(
        rgba, do_convert_rgb=False, image_mean=[0.5] * 4, image_std=[0.5] * 4, return_tensors="np"
    )["pixel_values"]
    assert pixel_values.shape == (1, 4, 512, 512)


# ----------------------------------------------------------------------------------------------------------------
# Bad inputs: ValueError naming the problem and the index in the batch
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, channels",
    [
        (np.zeros((40, 40, 2), dtype=np.uint8), 2),
        (np.zeros((40, 40, 5), dtype=np.uint8), 5),
        (torch.zeros(2, 40, 40, dtype=torch.uint8), 2),
        (torch.zeros(5, 40, 40, dtype=torch.uint8), 5),
    ],
)
def test_wrong_channel_count_is_rejected(processor, bad, channels):
    with pytest.raises(ValueError, match=rf"Image 1 in the batch has {channels} channels"):
        processor([RGB, bad])
    with pytest.raises(ValueError, match=rf"{channels} channels"):
        processor(bad, input_data_format="channels_first" if isinstance(bad, torch.Tensor) else "channels_last")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixel_values_are_rejected(processor, value):
    bad = (RGB / 255.0).astype(np.float32)
    bad[3, 4, 1] = value
    with pytest.raises(ValueError, match=r"Image 2 in the batch contains non-finite"):
        processor([RGB, RGB, bad])


def test_float_images_outside_unit_range_are_rejected(processor):
    with pytest.raises(ValueError, match=r"Image 0 in the batch .*must be in \[0, 1\]"):
        processor(RGB.astype(np.float32))


def test_integer_images_outside_8_bit_range_need_uint16(processor):
    with pytest.raises(ValueError, match=r"Image 0 in the batch .*uint16"):
        processor(RGB.astype(np.int32) * 4)


@pytest.mark.parametrize("height, width", [(31, 40), (40, 31), (8, 8)])
def test_images_smaller_than_32x32_are_rejected(processor, native_processor, height, width):
    for proc in (processor, native_processor):
        with pytest.raises(
            ValueError, match=rf"Image 1 in the batch is {height}x{width} pixels.*minimum size is 32x32"
        ):
            proc([RGB, random_rgb(height, width)])


@pytest.mark.parametrize("empty", [[], (), None])
def test_empty_batch_is_rejected(processor, empty):
    with pytest.raises(ValueError, match="empty"):
        processor(empty)


def test_unsupported_types_and_shapes_are_rejected(processor):
    with pytest.raises(ValueError, match=r"Image 1 in the batch has unsupported type dict"):
        processor([RGB, {"pixels": 1}])
    with pytest.raises(ValueError, match=r"Image 0 in the batch has shape"):
        processor(np.zeros((1, 1, 40, 40, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"Image 0 in the batch is None"):
        processor([None])


# ----------------------------------------------------------------------------------------------------------------
# Masks -> labels
# ----------------------------------------------------------------------------------------------------------------
def _labels(processor, images, masks, **kwargs):
    return processor(images, segmentation_maps=masks, return_tensors="np", **kwargs)["labels"]


def test_labels_are_float32_batch_of_zeros_and_ones(processor):
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[10:30, 5:25] = 255
    encoding = processor([RGB, RGB], segmentation_maps=[mask, mask], return_tensors="pt")
    assert set(encoding.keys()) == {"pixel_values", "labels"}
    assert encoding["labels"].shape == (2, 512, 512)
    assert encoding["labels"].dtype == torch.float32
    assert set(torch.unique(encoding["labels"]).tolist()) == {0.0, 1.0}


def test_8_bit_mask_threshold_is_mean_over_channels_above_127_5(native_processor):
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[0, 0], mask[0, 1], mask[0, 2] = 127, 128, 255
    labels = _labels(native_processor, np.zeros((32, 32, 3), np.uint8), mask)[0]
    assert labels[0, :3].tolist() == [0.0, 1.0, 1.0]
    assert labels.sum() == 2


def test_rgb_mask_uses_the_mean_over_channels(native_processor):
    mask = np.zeros((32, 32, 3), dtype=np.uint8)
    mask[0, 0] = (255, 255, 0)  # mean 170 -> manipulated
    mask[0, 1] = (255, 0, 0)  # mean 85 -> authentic
    mask[0, 2] = (128, 128, 127)  # mean 127.67 -> manipulated
    mask[0, 3] = (127, 127, 128)  # mean 127.33 -> authentic
    for form in (mask, Image.fromarray(mask), torch.from_numpy(mask.transpose(2, 0, 1).copy())):
        labels = _labels(native_processor, np.zeros((32, 32, 3), np.uint8), form)[0]
        assert labels[0, :4].tolist() == [1.0, 0.0, 1.0, 0.0]
        assert labels.sum() == 2


def test_rgba_mask_drops_alpha(native_processor):
    mask = np.zeros((32, 32, 4), dtype=np.uint8)
    mask[:16, :, :3] = 255  # white top half, fully transparent
    labels = _labels(native_processor, np.zeros((32, 32, 3), np.uint8), Image.fromarray(mask))[0]
    np.testing.assert_array_equal(labels, np.repeat([1.0, 0.0], 16)[:, None] * np.ones((1, 32)))


def test_palette_mask_is_binarised_through_its_rgb_palette(native_processor):
    indices = np.zeros((32, 32), dtype=np.uint8)
    indices[0, 1], indices[0, 2], indices[0, 3] = 1, 2, 3
    palette_mask = Image.frombytes("P", (32, 32), indices.tobytes())
    palette_mask.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0, 200, 200, 200] + [0] * (256 - 4) * 3)
    labels = _labels(native_processor, np.zeros((32, 32, 3), np.uint8), palette_mask)[0]
    # black -> 0, white -> 1, pure red (mean 85) -> 0, light grey (mean 200) -> 1
    assert labels[0, :4].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_float_bool_and_16_bit_masks(native_processor):
    image = np.zeros((32, 32, 3), np.uint8)
    float_mask = np.zeros((32, 32), dtype=np.float32)
    float_mask[0, 0], float_mask[0, 1] = 0.5, 0.51
    assert _labels(native_processor, image, float_mask)[0, 0, :2].tolist() == [0.0, 1.0]
    bool_mask = np.zeros((32, 32), dtype=bool)
    bool_mask[5, 5] = True
    np.testing.assert_array_equal(_labels(native_processor, image, bool_mask)[0], bool_mask.astype(np.float32))
    mask16 = np.zeros((32, 32), dtype=np.uint16)
    mask16[0, 0], mask16[0, 1] = 32767, 32768
    for form in (mask16, Image.fromarray(mask16)):
        assert _labels(native_processor, image, form)[0, 0, :2].tolist() == [0.0, 1.0]


def test_8_bit_zero_one_masks_are_read_as_label_maps(native_processor):
    # The official rule (> 127.5) would make a uint8 mask holding only 0 and 1 empty: it is a label map instead,
    # as the data loaders read it.
    image = np.zeros((32, 32, 3), np.uint8)
    zero_one = np.zeros((32, 32), dtype=np.uint8)
    zero_one[:8] = 1
    assert _labels(native_processor, image, zero_one).sum() == 8 * 32
    assert _labels(native_processor, image, zero_one.astype(bool)).sum() == 8 * 32


def test_zero_one_masks_are_label_maps_and_the_documentation_promises_no_warning(native_processor, caplog):
    # The docstring used to say that a warning is logged for 0/1 masks; none ever was, and none is needed.
    zero_one = np.zeros((32, 32), dtype=np.uint8)
    zero_one[:8] = 1
    with caplog.at_level(logging.DEBUG):
        labels = _labels(native_processor, np.zeros((32, 32, 3), np.uint8), zero_one)
    assert labels.sum() == 8 * 32 and not caplog.records
    documentation = " ".join(SparseViTImageProcessor.__doc__.split())
    assert "warning" not in documentation.lower()
    assert "integer masks holding only 0 and 1 are label maps" in documentation


def test_missing_mask_means_authentic(processor, native_processor):
    mask = np.full((40, 50), 255, dtype=np.uint8)
    labels = _labels(processor, [RGB, RGB], [None, mask])
    assert labels.shape == (2, 512, 512)
    assert labels[0].sum() == 0 and labels[1].min() == 1
    labels = _labels(native_processor, [random_rgb(33, 70), RGB], [None, mask])
    assert labels.shape == (2, 64, 96)
    assert labels[0].sum() == 0
    assert labels[1, :40, :50].min() == 1 and labels[1].sum() == 40 * 50


def test_nearest_neighbour_mask_resize_keeps_binary_values(processor):
    binary = np.random.default_rng(5).random((37, 61)) > 0.5
    image = random_rgb(37, 61)
    labels = _labels(processor, image, (binary * 255).astype(np.uint8))[0]
    assert set(np.unique(labels).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(labels, reference_labels(binary))


def test_native_masks_keep_their_size_and_are_padded_with_zero(native_processor):
    binary = np.random.default_rng(6).random((33, 70)) > 0.3
    labels = _labels(native_processor, random_rgb(33, 70), binary)
    assert labels.shape == (1, 64, 96)
    np.testing.assert_array_equal(labels[0, :33, :70], binary.astype(np.float32))
    assert labels[0, 33:].sum() == 0 and labels[0, :, 70:].sum() == 0


def test_mask_errors_name_the_problem_and_the_index(processor):
    images = [RGB, RGB]
    good = np.zeros((40, 50), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"Segmentation map 1 in the batch has size 41x50.*image has size 40x50"):
        processor(images, segmentation_maps=[good, np.zeros((41, 50), np.uint8)])
    with pytest.raises(ValueError, match=r"2 image\(s\) but 1 segmentation map"):
        processor(images, segmentation_maps=[good])
    with pytest.raises(ValueError, match=r"Segmentation map 1 in the batch has 2 channels"):
        processor(images, segmentation_maps=[good, np.zeros((40, 50, 2), np.uint8)])
    nan_mask = np.zeros((40, 50), np.float32)
    nan_mask[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Segmentation map 0 in the batch contains non-finite"):
        processor(images, segmentation_maps=[nan_mask, None])
    with pytest.raises(ValueError, match=r"Segmentation map 0 in the batch is a float mask .*\[0, 1\]"):
        processor(images, segmentation_maps=[good.astype(np.float32) + 255, None])


@requires_samples
@pytest.mark.parametrize("name", ["sample_1.png", "sample_2.png", "sample_3.jpg"])
def test_real_masks_are_binarised_like_the_official_recipe(processor, native_processor, name):
    mask = load(SAMPLES / "Gt" / name)
    image = load(SAMPLES / "Tp" / f"{Path(name).stem}.jpg")
    official = np.asarray(mask.convert("RGB"), dtype=np.float64).mean(axis=-1) > 127.5
    labels = _labels(processor, image, mask)[0]
    assert set(np.unique(labels).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(labels, reference_labels(official))
    # Sample sizes are multiples of 32, so native mode returns the binary mask itself.
    np.testing.assert_array_equal(_labels(native_processor, image, mask)[0], official.astype(np.float32))


@requires_samples
def test_sample_masks_cover_grayscale_rgb_and_lossy_jpeg():
    assert load(SAMPLES / "Gt" / "sample_1.png").mode == "L"
    assert load(SAMPLES / "Gt" / "sample_2.png").mode == "RGB"
    jpeg_values = np.unique(np.asarray(load(SAMPLES / "Gt" / "sample_3.jpg")))
    assert not set(jpeg_values.tolist()) <= {0, 255}  # lossy: values other than 0 and 255


# ----------------------------------------------------------------------------------------------------------------
# Post-processing
# ----------------------------------------------------------------------------------------------------------------
def _outputs(batch_size=2, height=32, width=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return SemanticSegmenterOutput(logits=torch.randn(batch_size, 1, height, width, generator=generator) * 3)


def _reference_probabilities(logits):
    height, width = logits.shape[-2:]
    upsampled = F.interpolate(logits, size=(16 * height, 16 * width), mode="bilinear", align_corners=False)
    return torch.sigmoid(upsampled)[:, 0]


def test_post_process_returns_input_size_long_label_maps(processor):
    outputs = _outputs()
    maps = processor.post_process_semantic_segmentation(outputs)
    assert isinstance(maps, list) and len(maps) == 2
    expected = _reference_probabilities(outputs.logits) > 0.5
    for index, label_map in enumerate(maps):
        assert label_map.shape == (512, 512) and label_map.dtype == torch.long
        assert torch.equal(label_map, expected[index].long())


def test_post_process_threshold_is_strict_and_validated(processor):
    zero_logits = SemanticSegmenterOutput(logits=torch.zeros(1, 1, 4, 4))  # probability exactly 0.5
    assert processor.post_process_semantic_segmentation(zero_logits)[0].sum() == 0
    assert processor.post_process_semantic_segmentation(zero_logits, threshold=0.49)[0].min() == 1
    outputs = _outputs()
    probabilities = _reference_probabilities(outputs.logits)
    for threshold in (0.0, 0.2, 0.9, 1.0):
        maps = processor.post_process_semantic_segmentation(outputs, threshold=threshold)
        assert torch.equal(maps[1], (probabilities[1] > threshold).long())
    for bad in (-0.1, 1.5, "0.5", None, True, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            processor.post_process_semantic_segmentation(outputs, threshold=bad)


def test_post_process_probabilities(processor):
    outputs = _outputs()
    results = processor.post_process_semantic_segmentation(outputs, return_probabilities=True)
    plain = processor.post_process_semantic_segmentation(outputs)
    reference = _reference_probabilities(outputs.logits)
    for index, result in enumerate(results):
        assert isinstance(result, SemanticSegmentationPostProcessorOutput)
        assert set(result.keys()) == {"segmentation", "probabilities", "segmentation_scores"}
        assert torch.equal(result.segmentation, plain[index])
        assert result.probabilities.shape == (512, 512) and result.probabilities.dtype == torch.float32
        torch.testing.assert_close(result.probabilities, reference[index])
        assert result.segmentation_scores.shape == (2, 512, 512)
        torch.testing.assert_close(result.segmentation_scores[1], result["probabilities"])
        torch.testing.assert_close(result.segmentation_scores.sum(0), torch.ones(512, 512))
    # The transformers-wide flag name gives the same result.
    aliased = processor.post_process_semantic_segmentation(outputs, return_segmentation_scores=True)
    torch.testing.assert_close(aliased[0].probabilities, results[0].probabilities)


def test_post_process_resize_mode_resizes_probabilities_to_target_sizes(processor):
    outputs = _outputs()
    target_sizes = [(300, 200), (37, 610)]
    results = processor.post_process_semantic_segmentation(
        outputs, target_sizes=target_sizes, return_probabilities=True
    )
    reference = _reference_probabilities(outputs.logits)
    for index, (height, width) in enumerate(target_sizes):
        expected = F.interpolate(reference[index][None, None], size=(height, width), mode="bilinear")[0, 0]
        assert results[index].segmentation.shape == (height, width)
        torch.testing.assert_close(results[index].probabilities, expected)
        assert torch.equal(results[index].segmentation, (expected > 0.5).long())
    # Target sizes may also be a (batch, 2) tensor.
    as_tensor = processor.post_process_semantic_segmentation(outputs, target_sizes=torch.tensor(target_sizes))
    assert [tuple(m.shape) for m in as_tensor] == target_sizes


def test_post_process_native_mode_crops_the_top_left_target_region(native_processor, processor):
    outputs = _outputs(batch_size=2, height=4, width=6)  # model input 64 x 96
    reference = _reference_probabilities(outputs.logits)
    target_sizes = [(33, 70), (64, 96)]
    for proc, kwargs in ((native_processor, {}), (processor, {"do_resize": False})):
        results = proc.post_process_semantic_segmentation(
            outputs, target_sizes=target_sizes, return_probabilities=True, **kwargs
        )
        for index, (height, width) in enumerate(target_sizes):
            torch.testing.assert_close(results[index].probabilities, reference[index, :height, :width])
    with pytest.raises(ValueError, match="Logits of 4x6 cannot cover a model input of 96x96"):
        native_processor.post_process_semantic_segmentation(outputs, target_sizes=[(33, 70), (65, 96)])


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_post_process_follows_the_logits_stride_of_the_model(native_processor, processor, stride):
    # Other patch sizes give other strides (8 with patch sizes [2, 2, 2, 2]); nothing assumes 16. With a constant 16,
    # native mode at stride 8 cropped the top-left quarter of the map: the right half came out about 0.5, not 1.
    rgb = np.zeros((64, 96, 3), dtype=np.uint8)
    rgb[:, 48:] = 255  # the right half is "manipulated" for a model that calls bright pixels manipulated
    for proc in (processor, native_processor):
        pixel_values = proc(rgb, return_tensors="pt")["pixel_values"]
        logits = 20 * F.avg_pool2d(pixel_values[:, :1], stride)
        [result] = proc.post_process_semantic_segmentation(logits, [(64, 96)], return_probabilities=True)
        assert result.probabilities.shape == (64, 96)
        probability = result.probabilities
        assert probability[:, 48 + stride :].min() > 0.99 and probability[:, : 48 - stride].max() < 0.01
    # Native mode maps the logits onto the padded input exactly: stride x the logits, cropped to the image.
    pixel_values = native_processor([random_rgb(33, 70), rgb], return_tensors="pt")["pixel_values"]  # 64 x 96
    logits = torch.randn(2, 1, 64 // stride, 96 // stride)
    results = native_processor.post_process_semantic_segmentation(
        logits, target_sizes=[(33, 70), (64, 96)], return_probabilities=True
    )
    expected = torch.sigmoid(F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear"))[:, 0]
    torch.testing.assert_close(results[0].probabilities, expected[0, :33, :70])
    torch.testing.assert_close(results[1].probabilities, expected[1])


def test_native_post_processing_needs_the_target_sizes(native_processor):
    with pytest.raises(ValueError, match="target_sizes"):
        native_processor.post_process_semantic_segmentation(torch.zeros(1, 1, 4, 4))


def test_post_process_native_round_trip_shapes(native_processor):
    images = [random_rgb(33, 70), random_rgb(100, 40)]
    pixel_values = native_processor(images, return_tensors="pt")["pixel_values"]
    logits = torch.zeros(2, 1, pixel_values.shape[2] // 16, pixel_values.shape[3] // 16)
    maps = native_processor.post_process_semantic_segmentation(
        SemanticSegmenterOutput(logits=logits), target_sizes=[image.shape[:2] for image in images]
    )
    assert [tuple(m.shape) for m in maps] == [(33, 70), (100, 40)]


def test_post_process_input_validation(processor):
    outputs = _outputs()
    with pytest.raises(ValueError, match="target sizes"):
        processor.post_process_semantic_segmentation(outputs, target_sizes=[(10, 10)])
    with pytest.raises(ValueError, match="Target size 1"):
        processor.post_process_semantic_segmentation(outputs, target_sizes=[(10, 10), (0, 5)])
    with pytest.raises(ValueError, match=r"\(batch_size, 1, height, width\)"):
        processor.post_process_semantic_segmentation(SemanticSegmenterOutput(logits=torch.zeros(1, 2, 4, 4)))
    # A dict or the bare logits tensor are accepted too.
    assert processor.post_process_semantic_segmentation({"logits": outputs.logits})[0].shape == (512, 512)
    assert processor.post_process_semantic_segmentation(outputs.logits)[0].shape == (512, 512)


@pytest.mark.parametrize("do_resize", [True, False])
def test_image_segmentation_pipeline(do_resize):
    from transformers import PreTrainedConfig, PreTrainedModel, pipeline

    class TinyConfig(PreTrainedConfig):
        model_type = "sparsevit-processor-test-tiny"

    class TinyManipulationModel(PreTrainedModel):
        """Calls every pixel whose red channel is bright 'manipulated', at 1/16 resolution like SparseViT."""

        config_class = TinyConfig
        main_input_name = "pixel_values"

        def __init__(self, config):
            super().__init__(config)
            self.scale = torch.nn.Parameter(torch.tensor(10.0))
            self.post_init()

        def forward(self, pixel_values, labels=None, **kwargs):
            return SemanticSegmenterOutput(logits=self.scale * F.avg_pool2d(pixel_values[:, :1], 16))

    model = TinyManipulationModel(TinyConfig(id2label={0: "authentic", 1: "manipulated"})).eval()
    segmenter = pipeline(
        "image-segmentation", model=model, image_processor=SparseViTImageProcessor(do_resize=do_resize)
    )
    rgb = np.zeros((100, 70, 3), dtype=np.uint8)
    rgb[:48] = 255
    annotations = segmenter(Image.fromarray(rgb))
    by_label = {annotation["label"]: np.asarray(annotation["mask"]) > 0 for annotation in annotations}
    assert set(by_label) == {"authentic", "manipulated"}
    for mask in by_label.values():
        assert mask.shape == (100, 70)
    assert np.array_equal(by_label["manipulated"], ~by_label["authentic"])
    assert by_label["manipulated"][:40].all() and not by_label["manipulated"][60:].any()


# ----------------------------------------------------------------------------------------------------------------
# Serialisation and packaging
# ----------------------------------------------------------------------------------------------------------------
def test_save_and_load_round_trip_all_options(tmp_path):
    options = {
        "do_resize": False,
        "size": {"height": 256, "width": 320},
        "resample": Image.Resampling.BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 256,
        "do_normalize": True,
        "image_mean": [0.5, 0.4, 0.3],
        "image_std": [0.2, 0.3, 0.4],
        "do_convert_rgb": False,
        "do_pad": False,
        "size_divisor": 64,
        "pad_size": {"height": 128, "width": 128},
    }
    original = SparseViTImageProcessor(**options)
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "SparseViTImageProcessor"
    loaded = SparseViTImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == original.to_dict()
    for key, value in options.items():
        loaded_value = getattr(loaded, key)
        if isinstance(value, dict):
            assert dict(loaded_value) == value
        elif isinstance(value, list):
            assert tuple(loaded_value) == pytest.approx(tuple(value))
        else:
            assert loaded_value == value, key
    image = random_rgb(40, 50)
    np.testing.assert_array_equal(_encode(loaded, image), _encode(original, image))


def test_defaults_round_trip_and_kwargs_override_on_load(tmp_path):
    original = SparseViTImageProcessor()
    original.save_pretrained(tmp_path)
    loaded = SparseViTImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == original.to_dict()
    image = random_rgb(40, 50)
    np.testing.assert_array_equal(_encode(loaded, image), _encode(original, image))
    overridden = SparseViTImageProcessor.from_pretrained(tmp_path, do_resize=False, size_divisor=16)
    assert overridden.do_resize is False and overridden.size_divisor == 16


def test_module_is_self_contained_for_remote_code(tmp_path):
    # The processor and the decoder and localization modules it imports ship to the Hub; they may import only these
    # libraries, and each other as `from .module import Name` (which `save_pretrained` follows to copy them along).
    siblings = {"image_decoding_sparsevit", "localization_sparsevit"}
    for module_file in [MODULE_FILE, *(MODULE_FILE.with_name(f"{name}.py") for name in siblings)]:
        imported = set()
        for node in ast.walk(ast.parse(module_file.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, f"{module_file.name} imports .{node.module}"
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
        allowed = {"collections", "io", "math", "os", "typing", "numpy", "PIL", "transformers", "torch"}
        assert imported <= allowed, imported

    # Copied into a folder of its own with its siblings, outside the package (as remote code is), it works.
    for name in ["image_processing_sparsevit", *siblings]:
        (tmp_path / f"{name}.py").write_text(MODULE_FILE.with_name(f"{name}.py").read_text())
    package = types.ModuleType("standalone_remote_code")
    package.__path__ = [str(tmp_path)]
    sys.modules["standalone_remote_code"] = package
    try:
        module = importlib.import_module("standalone_remote_code.image_processing_sparsevit")
        standalone = module.SparseViTImageProcessor()
        np.testing.assert_array_equal(_encode(standalone, RGB), _encode(SparseViTImageProcessor(), RGB))
    finally:
        for name in [key for key in sys.modules if key.startswith("standalone_remote_code")]:
            del sys.modules[name]
