"""Specification of the robustness perturbations (sparsevit_hf.data.perturbations)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sparsevit_hf.data.perturbations import (
    gaussian_blur,
    gaussian_kernel_1d,
    gaussian_noise,
    jpeg_compress,
    opencv_default_sigma,
)


def natural_like_image(height=96, width=128, seed=0):
    """Smooth colour gradients, a soft-edged shape and mild texture: photo-like content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            120 + 80 * np.sin(x / 17.0) * np.cos(y / 23.0),
            100 + 60 * (x / width) + 40 * (y / height),
            140 - 70 * np.cos((x + y) / 31.0),
        ],
        axis=-1,
    )
    square = np.zeros((height, width))
    square[20:50, 30:70] = 1.0
    square = ndimage.gaussian_filter(square, 2.0)[..., None]
    img = img * (1 - square) + np.array([200, 60, 40]) * square
    # Luminance texture (same in every channel): chroma stays smooth, as in photos.
    img += ndimage.gaussian_filter(rng.normal(0, 6, (height, width)), sigma=1)[..., None]
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


def random_image(height=40, width=52, seed=1):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = np.mean(diff**2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------


def test_jpeg_returns_an_rgb_image_of_the_same_size():
    image = natural_like_image()
    out = jpeg_compress(image, 75)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == image.size


def test_jpeg_quality_100_is_nearly_lossless_and_lower_quality_loses_more():
    image = natural_like_image()
    scores = {q: psnr(image, jpeg_compress(image, q)) for q in (100, 90, 70, 50)}
    assert scores[100] > 40.0
    assert scores[100] > scores[90] > scores[70] > scores[50]
    assert scores[100] - scores[50] > 5.0  # dB


def test_jpeg_444_subsampling_is_closer_than_default_420_at_quality_100():
    image = natural_like_image()
    assert psnr(image, jpeg_compress(image, 100, subsampling="4:4:4")) >= psnr(image, jpeg_compress(image, 100))


def test_jpeg_is_deterministic():
    image = natural_like_image()
    assert np.array_equal(np.asarray(jpeg_compress(image, 60)), np.asarray(jpeg_compress(image, 60)))


@pytest.mark.parametrize("quality", [0, 101, 50.0, "90", True, None])
def test_jpeg_rejects_quality_outside_1_to_100_or_not_an_integer(quality):
    with pytest.raises(ValueError, match="quality"):
        jpeg_compress(natural_like_image(), quality)


def test_jpeg_rejects_an_unknown_subsampling():
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_compress(natural_like_image(), 90, subsampling="4:1:1")


# ---------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_default_kernels_up_to_7_are_opencvs_fixed_tables(kernel_size):
    weights = gaussian_kernel_1d(kernel_size)
    assert weights.sum() == 1.0 and np.array_equal(weights, weights[::-1])
    np.testing.assert_array_equal(weights * 2 ** (kernel_size + 1), np.rint(weights * 2 ** (kernel_size + 1)))
    # an explicit sigma always gives the Gaussian of that sigma
    sigma = opencv_default_sigma(kernel_size)
    offsets = np.arange(kernel_size) - kernel_size // 2
    expected = np.exp(-(offsets**2) / (2 * sigma**2))
    np.testing.assert_allclose(gaussian_kernel_1d(kernel_size, sigma), expected / expected.sum(), rtol=1e-12)


@pytest.mark.parametrize("kernel_size", [9, 15, 23])
def test_default_sigma_follows_opencv_rule_for_sigma_zero(kernel_size):
    assert opencv_default_sigma(kernel_size) == pytest.approx(0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8)
    weights = gaussian_kernel_1d(kernel_size)
    sigma = opencv_default_sigma(kernel_size)
    offsets = np.arange(kernel_size) - kernel_size // 2
    expected = np.exp(-(offsets**2) / (2 * sigma**2))
    np.testing.assert_allclose(weights, expected / expected.sum(), rtol=1e-12)
    assert weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("kernel_size", [3, 7, 11, 23])
def test_blur_matches_scipy_separable_correlation_with_reflect_101_borders(kernel_size):
    image = random_image()
    weights = gaussian_kernel_1d(kernel_size)
    pixels = np.asarray(image, dtype=np.float64)
    # scipy's "mirror" mode is reflect-101 (OpenCV's default border).
    expected = ndimage.correlate1d(pixels, weights, axis=1, mode="mirror")
    expected = ndimage.correlate1d(expected, weights, axis=0, mode="mirror")
    expected = np.clip(np.rint(expected), 0, 255)
    got = np.asarray(gaussian_blur(image, kernel_size), dtype=np.float64)
    # Equal up to float rounding exactly at .5 between the two summation orders.
    assert np.abs(got - expected).max() <= 1
    assert np.mean(got != expected) < 1e-3


def test_blur_matches_a_direct_2d_convolution_with_the_outer_product_kernel():
    image = random_image(17, 19, seed=2)
    k = 5
    w1 = gaussian_kernel_1d(k)
    w2 = np.outer(w1, w1)
    pixels = np.asarray(image, dtype=np.float64)
    padded = np.pad(pixels, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="reflect")
    direct = np.zeros_like(pixels)
    for dy in range(k):
        for dx in range(k):
            direct += w2[dy, dx] * padded[dy : dy + pixels.shape[0], dx : dx + pixels.shape[1]]
    got = np.asarray(gaussian_blur(image, k), dtype=np.float64)
    assert np.abs(got - np.clip(np.rint(direct), 0, 255)).max() <= 1


def test_blur_is_within_one_level_of_opencv_for_every_kernel_size_the_field_uses():
    cv2 = pytest.importorskip("cv2")
    image = random_image()
    for k in range(3, 24, 2):  # 3-7: OpenCV's fixed tables; from 9: its sigma-0 formula
        ours = np.asarray(gaussian_blur(image, k), dtype=np.int16)
        theirs = cv2.GaussianBlur(np.asarray(image), (k, k), 0).astype(np.int16)
        assert np.abs(ours - theirs).max() <= 1, k


def test_blur_keeps_a_constant_image_and_the_size_even_when_kernel_exceeds_it():
    flat = Image.new("RGB", (5, 3), (10, 200, 77))
    out = gaussian_blur(flat, 23)
    assert out.size == (5, 3) and out.mode == "RGB"
    assert np.all(np.asarray(out) == np.asarray(flat))


def test_larger_kernel_blurs_more():
    image = random_image()
    variance = [np.asarray(gaussian_blur(image, k), dtype=np.float64).var() for k in (3, 7, 15)]
    assert variance[0] > variance[1] > variance[2]


def test_blur_accepts_an_explicit_sigma():
    image = random_image()
    assert not np.array_equal(np.asarray(gaussian_blur(image, 7, sigma=3.0)), np.asarray(gaussian_blur(image, 7)))


@pytest.mark.parametrize("kernel_size", [1, 2, 4, 0, -3, 5.0, "5", True])
def test_blur_rejects_kernel_sizes_that_are_not_odd_integers_of_at_least_3(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur(random_image(), kernel_size)


@pytest.mark.parametrize("sigma", [0, -1.0, float("nan")])
def test_blur_rejects_non_positive_or_nan_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(random_image(), 5, sigma=sigma)


# ---------------------------------------------------------------------------
# Gaussian noise
# ---------------------------------------------------------------------------


def test_noise_is_reproducible_with_a_seed_and_differs_across_seeds():
    image = random_image()
    a = np.asarray(gaussian_noise(image, 10, seed=3))
    b = np.asarray(gaussian_noise(image, 10, seed=3))
    c = np.asarray(gaussian_noise(image, 10, seed=4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("sigma", [3.0, 10.0, 23.0])
def test_noise_has_the_requested_standard_deviation_and_zero_mean(sigma):
    gray = Image.new("RGB", (256, 256), (128, 128, 128))  # far from clipping
    noisy = np.asarray(gaussian_noise(gray, sigma, seed=0), dtype=np.float64)
    residual = noisy - 128.0
    expected_std = np.sqrt(sigma**2 + 1 / 12)  # rounding to integers adds 1/12
    assert residual.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(residual.mean()) < 0.1


def test_noise_sigma_zero_returns_an_identical_copy_and_output_is_clipped():
    image = random_image()
    assert np.array_equal(np.asarray(gaussian_noise(image, 0, seed=1)), np.asarray(image))
    out = gaussian_noise(Image.new("RGB", (32, 32), (250, 5, 128)), 50, seed=1)
    assert out.mode == "RGB" and out.size == (32, 32)  # uint8 RGB: values stay in 0..255


def test_noise_accepts_a_numpy_generator():
    image = random_image()
    a = gaussian_noise(image, 5, seed=np.random.default_rng(9))
    b = gaussian_noise(image, 5, seed=9)
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("sigma", [-1, float("inf"), float("nan"), "3", None])
def test_noise_rejects_negative_or_non_finite_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(random_image(), sigma, seed=0)


def test_noise_rejects_a_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        gaussian_noise(random_image(), 1.0, seed="abc")


# ---------------------------------------------------------------------------
# Image argument
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call", [lambda im: jpeg_compress(im, 90), lambda im: gaussian_blur(im, 5), lambda im: gaussian_noise(im, 2, 0)]
)
def test_perturbations_need_a_pil_rgb_image(call):
    with pytest.raises(TypeError, match="PIL.Image.fromarray"):
        call(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="convert\\('RGB'\\)"):
        call(Image.new("L", (4, 4)))
    with pytest.raises(ValueError, match="RGB mode"):
        call(Image.new("RGBA", (4, 4)))


def test_perturbations_do_not_modify_their_input():
    image = natural_like_image()
    before = np.asarray(image).copy()
    jpeg_compress(image, 50)
    gaussian_blur(image, 9)
    gaussian_noise(image, 5, seed=0)
    assert np.array_equal(np.asarray(image), before)
