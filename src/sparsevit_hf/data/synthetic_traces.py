"""The traces a synthetic manipulation leaves: what is done to the pasted content and to the region's edge.

Each function takes and returns uint8 `(H, W, 3)` images. A manipulation builds a full-size *source* image (a
donor photograph, the host itself moved, or an inpainting), passes it through some of these traces, and blends it
into the pristine image with `composite`, so pixels where the blend weight is 0 stay bit-identical.

The traces are the ones forensic detectors are known to rely on, so that a model has to learn several of them
rather than one artefact:

* `resample` -- scaling and rotating the pasted content (interpolation correlations);
* `add_noise` / `smooth` -- a noise level that differs from the host's, upwards or downwards;
* `relight` -- colour balance and illumination of the pasted content;
* `grid_shifted_jpeg` -- a JPEG compression of the content on an 8x8 grid shifted from the final one (double
  compression with misaligned grids);
* `composite` with hard or feathered weights, and `inner_boundary_blur` -- how the edge was blended.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from .synthetic_photos import RESAMPLE, jpeg, log_uniform, randint, uniform

__all__ = [
    "TRACES",
    "add_noise",
    "composite",
    "grid_shifted_jpeg",
    "inner_boundary_blur",
    "inpaint",
    "relight",
    "resample",
    "smooth",
]

# Names recorded in `SyntheticSample.traces` (and the manifest) for the traces applied to a sample.
TRACES = ("resample", "noise", "smooth", "relight", "grid_jpeg", "feather", "boundary_blur", "inpaint")


def resample(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    scale: float = 1.0,
    angle: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    mirror: bool = False,
) -> np.ndarray:
    """`img` magnified by `scale`, rotated by `angle` degrees about its centre, moved by `shift` (dy, dx) pixels
    and optionally mirrored, with a random interpolation filter; borders are filled by mirroring the image."""
    h, w = img.shape[:2]
    pad = 2 * max(h, w)  # enough for any scale >= 0.5, rotation and shift up to the image side
    padded = Image.fromarray(np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric"))
    a = math.radians(angle)
    ca, sa = math.cos(a) / scale, math.sin(a) / scale
    sx = -1.0 if mirror else 1.0
    cx, cy = w / 2.0, h / 2.0
    # PIL's affine maps an output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f)
    coeffs = (
        sx * ca,
        sa,
        pad + cx - shift[1] - sx * ca * cx - sa * cy,
        -sx * sa,
        ca,
        pad + cy - shift[0] + sx * sa * cx - ca * cy,
    )
    filt = RESAMPLE[int(rng.integers(2))]  # bilinear or bicubic: PIL's affine transform has no Lanczos
    out = padded.transform((w, h), Image.Transform.AFFINE, coeffs, resample=filt)
    return np.asarray(out)


def random_resampling(rng: np.random.Generator) -> dict[str, float]:
    """A random scale (0.6 to 1.6, log-uniform) and rotation (-30 to 30 degrees) for `resample`."""
    return {"scale": log_uniform(rng, 0.6, 1.6), "angle": uniform(rng, -30.0, 30.0)}


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """`img` plus rounded Gaussian noise of standard deviation `sigma` (grey levels), independent per channel."""
    noise = np.rint(rng.normal(0.0, sigma, size=img.shape)).astype(np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def smooth(img: np.ndarray, radius: float) -> np.ndarray:
    """`img` Gaussian-blurred by `radius`: a lower noise level than the host's (a denoised or upsampled donor)."""
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def relight(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`img` with a random colour balance (each channel's gain within about +-12%), brightness offset and
    contrast change, in integer arithmetic."""
    gains = np.array([randint(rng, 225, 287) for _ in range(3)], dtype=np.int32)  # x / 256
    contrast = randint(rng, 218, 294)  # x / 256 around mid-grey: about -15% .. +15%
    offset = randint(rng, -16, 16)
    x = (img.astype(np.int32) * gains + 128) // 256
    x = ((x - 128) * contrast + 128) // 256 + 128 + offset
    return np.clip(x, 0, 255).astype(np.uint8)


def grid_shifted_jpeg(img: np.ndarray, quality: int, dy: int, dx: int) -> np.ndarray:
    """`img` JPEG-compressed at `quality` on a block grid moved by `(dy, dx)` pixels (0..7) from the image's
    own grid, so its 8x8 blocking does not line up with the final compression's."""
    shifted = np.roll(img, (-dy, -dx), axis=(0, 1))
    decoded, _ = jpeg(np.ascontiguousarray(shifted), quality)
    return np.roll(decoded, (dy, dx), axis=(0, 1))


def random_grid_offset(rng: np.random.Generator) -> tuple[int, int]:
    """A block grid offset `(dy, dx)` in 0..7 that is not the aligned grid."""
    while True:
        dy, dx = randint(rng, 0, 7), randint(rng, 0, 7)
        if dy or dx:
            return dy, dx


def composite(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`dst` with `src` blended in by `alpha` (uint8 `(H, W)`, 0..255); exact where alpha is 0 or 255."""
    a = alpha.astype(np.int32)[:, :, None]
    out = (src.astype(np.int32) * a + dst.astype(np.int32) * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def inpaint(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`img` with `region` (bool `(H, W)`) filled from its surroundings: OpenCV's Telea or Navier-Stokes
    inpainting, or a harmonic (diffusion) fill where OpenCV is not installed."""
    radius = randint(rng, 3, 6)
    telea = rng.random() < 0.5
    try:
        import cv2
    except ImportError:  # pragma: no cover - OpenCV ships with albumentations ([train] extra)
        return _diffusion_fill(img, region)
    flag = cv2.INPAINT_TELEA if telea else cv2.INPAINT_NS
    return cv2.inpaint(np.ascontiguousarray(img), region.astype(np.uint8) * 255, radius, flag)


def _diffusion_fill(img: np.ndarray, region: np.ndarray, iterations: int = 300) -> np.ndarray:
    out = img.astype(np.float32)
    known = ~region
    out[region] = out[known].mean(axis=0) if known.any() else 127.0
    for _ in range(iterations):
        p = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) * 0.25
        out[region] = avg[region]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def inner_boundary_blur(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`img` with the pixels of `region` within 1-3 pixels of its edge blurred (pixels outside stay unchanged)."""
    width = randint(rng, 1, 3)
    blurred = smooth(img, uniform(rng, 0.8, 1.6))
    eroded = np.asarray(Image.fromarray(region.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * width + 1)))
    band = region & (eroded == 0)
    out = img.copy()
    out[band] = blurred[band]
    return out
