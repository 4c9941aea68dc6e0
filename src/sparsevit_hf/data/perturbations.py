"""Image degradations used for robustness evaluation of manipulation localization.

The field re-evaluates a model after degrading the test images (not the masks) with
JPEG re-compression (quality 50-100), Gaussian blur (kernel 3-23) and additive Gaussian
noise. These functions take and return `PIL.Image.Image` objects in `RGB` mode and
depend only on Pillow and numpy:

* `jpeg_compress` -- encode to JPEG at `quality` with Pillow and decode again.
* `gaussian_blur` -- separable Gaussian filter with a `kernel_size` x
  `kernel_size` kernel, by default the one `cv2.GaussianBlur(image, (k, k), 0)` uses,
  reflect-101 borders (OpenCV's default `BORDER_REFLECT_101`).
* `gaussian_noise` -- i.i.d. zero-mean Gaussian noise of standard deviation
  `sigma` (8-bit intensity units), seeded, then rounded and clipped to 0-255.

None of them changes the image size, so the ground-truth mask stays valid.
"""

from __future__ import annotations

import io
import math
import numbers

import numpy as np
from PIL import Image

__all__ = [
    "OPENCV_SMALL_KERNELS",
    "gaussian_blur",
    "gaussian_kernel_1d",
    "gaussian_noise",
    "jpeg_compress",
    "opencv_default_sigma",
]


def _check_image(image: object, name: str = "image") -> Image.Image:
    if not isinstance(image, Image.Image):
        hint = " (use PIL.Image.fromarray(array) for a numpy array)" if isinstance(image, np.ndarray) else ""
        raise TypeError(f"{name} must be a PIL.Image.Image in RGB mode, got {type(image).__name__}{hint}.")
    if image.mode != "RGB":
        raise ValueError(f"{name} must be in RGB mode, got mode {image.mode!r}; convert it with image.convert('RGB').")
    return image


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def jpeg_compress(image: Image.Image, quality: int, *, subsampling: int | str | None = None) -> Image.Image:
    """Re-compress `image` as JPEG at `quality` (integer 1-100) and decode it.

    `subsampling` is passed to Pillow's JPEG encoder when given (`"4:4:4"`,
    `"4:2:2"`, `"4:2:0"` or 0/1/2); by default Pillow's (and OpenCV's) default
    4:2:0 chroma subsampling is used, so even quality 100 is not bit-exact.
    Returns a new RGB image of the same size.
    """
    _check_image(image)
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in [1, 100], got {quality!r}.")
    options = {"format": "JPEG", "quality": int(quality)}
    if subsampling is not None:
        if subsampling not in (0, 1, 2, "4:4:4", "4:2:2", "4:2:0"):
            raise ValueError(
                f"subsampling must be one of '4:4:4', '4:2:2', '4:2:0' (or 0, 1, 2), got {subsampling!r}."
            )
        options["subsampling"] = subsampling
    buffer = io.BytesIO()
    image.save(buffer, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def opencv_default_sigma(kernel_size: int) -> float:
    """Gaussian sigma OpenCV derives from the kernel size when sigma is 0:
    `0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8`."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


# The kernels OpenCV uses for sizes 3, 5 and 7 when sigma is 0 (binomial-like tables, not the sigma formula).
OPENCV_SMALL_KERNELS = {
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def gaussian_kernel_1d(kernel_size: int, sigma: float | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian weights of odd length `kernel_size` (float64, sums to 1).

    Without `sigma`, the kernel `cv2.GaussianBlur` uses with sigma 0: the fixed tables
    `OPENCV_SMALL_KERNELS` for sizes 3, 5 and 7, the Gaussian of
    `opencv_default_sigma` from 9 on.
    """
    _check_kernel_size(kernel_size)
    if sigma is None:
        if kernel_size in OPENCV_SMALL_KERNELS:
            return np.array(OPENCV_SMALL_KERNELS[kernel_size], dtype=np.float64)
        sigma = opencv_default_sigma(kernel_size)
    _check_sigma(sigma, "sigma", allow_zero=False)
    offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    return weights / weights.sum()


def _check_kernel_size(kernel_size: object) -> None:
    if not _is_int(kernel_size) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be an odd integer >= 3 (the field evaluates 3 to 23), got {kernel_size!r}."
        )


def _check_sigma(sigma: object, name: str, allow_zero: bool) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(float(sigma)):
        raise ValueError(f"{name} must be a finite real number, got {sigma!r}.")
    if sigma < 0 or (sigma == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {sigma!r}.")


def _reflect101_indices(length: int, pad: int) -> np.ndarray:
    """Source indices of a reflect-101 padded axis ("dcb|abcd|cba"), any pad width."""
    idx = np.arange(-pad, length + pad)
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    idx = np.mod(idx, period)
    return np.where(idx < length, idx, period - idx)


def gaussian_blur(image: Image.Image, kernel_size: int, sigma: float | None = None) -> Image.Image:
    """Blur `image` with a `kernel_size` x `kernel_size` Gaussian.

    `kernel_size` must be odd and >= 3 (robustness benchmarks use 3-23). Without
    `sigma` the kernel is OpenCV's for sigma 0 (see `gaussian_kernel_1d`). The
    filter is separable (rows, then columns), computed in float64 with reflect-101
    borders (as OpenCV's default), rounded to the nearest integer and clipped to 0-255.
    """
    _check_image(image)
    weights = gaussian_kernel_1d(kernel_size, sigma)
    pad = kernel_size // 2
    pixels = np.asarray(image, dtype=np.float64)  # (H, W, 3)
    height, width = pixels.shape[:2]

    def filter_axis(arr: np.ndarray, axis: int, length: int) -> np.ndarray:
        padded = np.take(arr, _reflect101_indices(length, pad), axis=axis)
        padded = np.moveaxis(padded, axis, 0)
        out = np.zeros_like(padded[:length])
        for offset, weight in enumerate(weights):
            out += weight * padded[offset : offset + length]
        return np.moveaxis(out, 0, axis)

    blurred = filter_axis(pixels, 1, width)
    blurred = filter_axis(blurred, 0, height)
    return Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8))


def gaussian_noise(
    image: Image.Image, sigma: float, seed: int | np.random.Generator | None = None
) -> Image.Image:
    """Add zero-mean Gaussian noise of standard deviation `sigma` to every channel.

    `sigma` is in 8-bit intensity units (0-255 scale; e.g. 3, 7, 11, 15, 23 in
    robustness tables), must be finite and >= 0 (0 returns an identical copy). The noise
    is i.i.d. per pixel and channel, drawn from `numpy.random.default_rng(seed)` (or
    from `seed` itself when it is a `numpy.random.Generator`), so an integer seed
    makes the result reproducible. The sum is rounded and clipped to 0-255.
    """
    _check_image(image)
    _check_sigma(sigma, "sigma", allow_zero=True)
    if seed is not None and not isinstance(seed, np.random.Generator) and not _is_int(seed):
        raise ValueError(f"seed must be an int, a numpy.random.Generator or None, got {seed!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + rng.normal(0.0, float(sigma), size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
