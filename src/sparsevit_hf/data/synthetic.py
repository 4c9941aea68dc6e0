"""A deterministic synthetic image-tampering data set built from real photographs.

The source photographs are the colour photographs shipped *inside* scikit-image's wheel
(`skimage/data`; nothing is downloaded). Train and test use disjoint photographs:

========== ==========================================================================
split      photographs (file in `skimage/data`)
========== ==========================================================================
`train`  astronaut (astronaut.png), coffee (coffee.png), hubble_deep_field
           (hubble_deep_field.jpg), immunohistochemistry (ihc.png), motorcycle_left
           (motorcycle_left.png), motorcycle_right (motorcycle_right.png), retina
           (retina.jpg)
`test`   chelsea (chelsea.png), rocket (rocket.jpg)
========== ==========================================================================

(`colorwheel`/`color.png`, `phantom` and the chessboards are synthetic drawings, the grey
images are not colour photographs, and the two motorcycle views are a stereo pair, so they stay
in the same split.)

Each sample starts from a random square crop of a random photograph of its split, resampled to
`size` x `size` with a random filter and randomly mirrored, then (usually) JPEG-compressed as
a camera would: this is the *pristine* rendition. A tampered sample then gets one manipulation:

* `splicing` -- a region (random polygon, rotated ellipse, rectangle or soft-edged blob) of a
  *different* photograph is pasted in; the donor has its own JPEG history and grid, and is
  randomly resampled, re-noised and colour-shifted;
* `copy_move` -- a region of the same image is pasted elsewhere (optionally rescaled, mirrored,
  re-noised or colour-shifted);
* `removal` -- a region is inpainted (OpenCV Telea / Navier-Stokes when `cv2` is installed,
  a numpy diffusion fill otherwise), optionally with synthetic texture noise;

optionally followed by a blur of the region's inner boundary. The mask is exactly the support of
the manipulation: every pixel outside it is bit-identical to the pristine rendition (see
`SyntheticSample`). Finally every image, tampered or `authentic`, goes through the same
global post-processing (an occasional slight blur and a final JPEG compression at a random
quality), so compression alone is not a cue; tampered images thus carry double compression
artefacts everywhere, and misaligned / mismatched ones inside the region.

Sample `i` depends only on `(seed, split, size, i)` and the configuration (it is seeded per
index), not on how many images are requested, and is bit-identical across machines for the same
package versions (Pillow, numpy, and OpenCV if installed): only integer image arithmetic, PIL's
fixed-point resampling and libjpeg are used.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "SOURCE_PHOTOS",
    "SPLIT_PHOTOS",
    "KINDS",
    "SyntheticTamperingConfig",
    "SyntheticSample",
    "available_photos",
    "load_photo",
    "render_sample",
    "generate_sample",
    "iter_samples",
    "synthetic_dataset",
    "write_synthetic_dataset",
]

# Photograph name -> file name inside `skimage/data` (all shipped in the wheel, no download).
SOURCE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "retina": "retina.jpg",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
}
# Which photographs each split uses (disjoint).
SPLIT_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "hubble_deep_field",
        "immunohistochemistry",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
    ),
    "test": ("chelsea", "rocket"),
}
# Sample kinds; the last three are manipulations.
KINDS = ("authentic", "splicing", "copy_move", "removal")
_SPLIT_CODE = {"train": 1, "test": 2}
_RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
_INSTALL_HINT = "pip install sparsevit-hf[train]"
_MIN_CHANGED = 0.5  # a manipulation must change at least this share of its mask's pixels
_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class SyntheticTamperingConfig:
    """Parameters of the synthetic data set (all have working defaults).

    Attributes:
        num_images: number of samples (indices `0 .. num_images - 1`).
        size: side of the square images in pixels.
        seed: base seed; sample `i` is seeded by `(seed, split, i)`.
        split: `"train"` or `"test"` (disjoint source photographs, see `SPLIT_PHOTOS`).
        authentic_fraction: probability that a sample is left untouched.
        kind_weights: relative weights of `splicing`, `copy_move` and `removal`.
        region_fraction: range of the manipulated area as a fraction of the image (log-uniform).
        camera_jpeg_p: probability of the first ("camera") JPEG compression of the pristine image.
        camera_jpeg_quality, final_jpeg_quality, donor_jpeg_quality: JPEG quality ranges
            (inclusive) of the camera compression, of the final compression and of a splicing
            donor's own compression.
        global_blur_p: probability of a slight global blur before the final compression.
        boundary_blur_p: probability of blurring the inner boundary of the manipulated region.
    """

    num_images: int = 1000
    size: int = 256
    seed: int = 0
    split: str = "train"
    authentic_fraction: float = 0.2
    kind_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    region_fraction: tuple[float, float] = (0.02, 0.2)
    camera_jpeg_p: float = 0.8
    camera_jpeg_quality: tuple[int, int] = (70, 95)
    final_jpeg_quality: tuple[int, int] = (75, 98)
    donor_jpeg_quality: tuple[int, int] = (50, 90)
    global_blur_p: float = 0.1
    boundary_blur_p: float = 0.3

    def __post_init__(self) -> None:
        if self.split not in SPLIT_PHOTOS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_PHOTOS)}, got {self.split!r}")
        if self.num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {self.num_images}")
        if self.size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {self.size}")
        if not 0.0 <= self.authentic_fraction <= 1.0:
            raise ValueError(f"authentic_fraction must be in [0, 1], got {self.authentic_fraction}")
        if len(self.kind_weights) != 3 or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ValueError(f"kind_weights must be 3 non-negative weights, not all 0, got {self.kind_weights}")
        lo, hi = self.region_fraction
        if not 0.0 < lo <= hi <= 0.5:
            raise ValueError(f"region_fraction must satisfy 0 < low <= high <= 0.5, got {self.region_fraction}")
        for name in ("camera_jpeg_quality", "final_jpeg_quality", "donor_jpeg_quality"):
            q0, q1 = getattr(self, name)
            if not 1 <= q0 <= q1 <= 100:
                raise ValueError(f"{name} must satisfy 1 <= low <= high <= 100, got {(q0, q1)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SyntheticSample:
    """One rendered sample with its intermediate stages.

    Attributes:
        image: the final RGB image (decoded from `jpeg`).
        mask: `(size, size)` bool, true where the manipulation changed pixels (all false
            for `authentic`).
        kind: one of `KINDS`.
        jpeg: the final JPEG file's bytes.
        index: the sample index.
        host: name of the photograph the image was cropped from.
        donor: name of the donor photograph (`splicing` only).
        pristine: uint8 `(size, size, 3)` untouched rendition the manipulation was applied to.
        manipulated: uint8 image after the manipulation, before global post-processing;
            equal to `pristine` wherever `mask` is false.
    """

    image: Image.Image
    mask: np.ndarray
    kind: str
    jpeg: bytes
    index: int
    host: str
    donor: str | None
    pristine: np.ndarray
    manipulated: np.ndarray


# --------------------------------------------------------------------------------------------------
# Source photographs
# --------------------------------------------------------------------------------------------------
def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the synthetic data set needs scikit-image, whose wheel ships the source photographs: " + _INSTALL_HINT
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def available_photos() -> tuple[str, ...]:
    """Names of the source photographs present in the installed scikit-image."""
    folder = _skimage_data_dir()
    return tuple(name for name, fname in SOURCE_PHOTOS.items() if (folder / fname).is_file())


@cache
def load_photo(name: str) -> Image.Image:
    """One source photograph as an RGB PIL image (read from scikit-image's package folder)."""
    if name not in SOURCE_PHOTOS:
        raise KeyError(f"unknown source photograph {name!r}; known: {', '.join(SOURCE_PHOTOS)}")
    path = _skimage_data_dir() / SOURCE_PHOTOS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"scikit-image's wheel should ship {path.name} but {path} is missing; reinstall scikit-image "
            f"({_INSTALL_HINT})"
        )
    with Image.open(path) as im:
        return im.convert("RGB")


# --------------------------------------------------------------------------------------------------
# Building blocks (integer arithmetic only, for bit-exact reproducibility)
# --------------------------------------------------------------------------------------------------
def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in `[lo, hi]` (inclusive)."""
    return int(rng.integers(lo, hi + 1))


def _jpeg(arr: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy(), data


def _random_view(photo: Image.Image, out_w: int, out_h: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of `photo` with the output's aspect ratio, resampled to `out_w x out_h`."""
    w, h = photo.size
    aspect = out_w / out_h
    max_cw = min(w, h * aspect)
    # do not upsample by more than 2x, and use at least 30% of the photo's side
    lo = min(1.0, max(0.3, 0.5 * out_w / max_cw))
    cw = max_cw * _uniform(rng, lo, 1.0)
    ch = cw / aspect
    x0 = _uniform(rng, 0.0, w - cw)
    y0 = _uniform(rng, 0.0, h - ch)
    resample = _RESAMPLE[int(rng.integers(len(_RESAMPLE)))]
    view = photo.resize((out_w, out_h), resample=resample, box=(x0, y0, x0 + cw, y0 + ch), reducing_gap=2.0)
    arr = np.asarray(view)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def _resample_patch(arr: np.ndarray, out_w: int, out_h: int, rng: np.random.Generator) -> np.ndarray:
    resample = _RESAMPLE[int(rng.integers(len(_RESAMPLE)))]
    return np.asarray(Image.fromarray(arr).resize((out_w, out_h), resample=resample))


def _add_noise(patch: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = np.rint(rng.normal(0.0, sigma, size=patch.shape)).astype(np.int16)
    return np.clip(patch.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _colour_shift(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gains = np.array([_randint(rng, 235, 277) for _ in range(3)], dtype=np.int32)  # x/256: about +-8%
    offset = _randint(rng, -10, 10)
    out = (patch.astype(np.int32) * gains + 128) // 256 + offset
    return np.clip(out, 0, 255).astype(np.uint8)


def _composite(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`dst` with `src` blended in by `alpha` (uint8 0..255); exact where alpha is 0 or 255."""
    a = alpha.astype(np.int32)[:, :, None]
    out = (src.astype(np.int32) * a + dst.astype(np.int32) * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _paste(pristine: np.ndarray, patch: np.ndarray, alpha: np.ndarray, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
    """`pristine` with `patch` blended in by `alpha` at (y, x), and the mask of the pixels it touched."""
    ch, cw = alpha.shape
    out = pristine.copy()
    out[y : y + ch, x : x + cw] = _composite(pristine[y : y + ch, x : x + cw], np.ascontiguousarray(patch), alpha)
    mask = np.zeros(pristine.shape[:2], dtype=bool)
    mask[y : y + ch, x : x + cw] = alpha > 0
    return out, mask


def _points_on_ellipse(
    cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 48
) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for k in range(n):
        t = 2.0 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def _region_shape(rng: np.random.Generator, size: int, cfg: SyntheticTamperingConfig, soft_p: float) -> np.ndarray:
    """A local alpha canvas (uint8 0..255, zero margin included) for one manipulated region."""
    lo, hi = cfg.region_fraction
    frac = math.exp(_uniform(rng, math.log(lo), math.log(hi)))
    shape = ("polygon", "ellipse", "rectangle", "blob")[int(rng.integers(4))]
    fill = {"polygon": 0.55, "ellipse": 0.7, "rectangle": 0.8, "blob": 0.5}[shape]
    aspect = math.exp(_uniform(rng, math.log(0.5), math.log(2.0)))
    area = frac * size * size / fill
    bw = min(max(math.sqrt(area * aspect), 12.0), 0.7 * size)
    bh = min(max(area / bw, 12.0), 0.7 * size)
    soft = shape == "blob" or rng.random() < soft_p
    radius = _uniform(rng, 1.0, 2.5) if soft else 0.0
    pad = int(math.ceil(3 * radius)) + 1
    cw, ch = int(round(bw)) + 2 * pad, int(round(bh)) + 2 * pad
    canvas = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, rx, ry = cw / 2.0, ch / 2.0, bw / 2.0, bh / 2.0
    if shape == "polygon":
        n = _randint(rng, 4, 10)
        angles = sorted(_uniform(rng, 0.0, 2.0 * math.pi) for _ in range(n))
        pts = []
        for t in angles:
            r = _uniform(rng, 0.45, 1.0)
            pts.append((cx + r * rx * math.cos(t), cy + r * ry * math.sin(t)))
        draw.polygon(pts, fill=255)
    elif shape == "ellipse":
        # a rotated ellipse inscribed in the box
        angle = _uniform(rng, 0.0, math.pi)
        ca, sa = abs(math.cos(angle)), abs(math.sin(angle))
        # shrink the axes so the rotated ellipse fits in (rx, ry)
        k = min(rx / math.hypot(rx * ca, ry * sa), ry / math.hypot(rx * sa, ry * ca))
        draw.polygon(_points_on_ellipse(cx, cy, rx * k, ry * k, angle), fill=255)
    elif shape == "rectangle":
        angle = _uniform(rng, -0.3, 0.3)
        ca, sa = math.cos(angle), math.sin(angle)
        k = 1.0 / (abs(ca) + abs(sa))
        hx, hy = rx * k, ry * k
        pts = [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy))]
        draw.polygon(pts, fill=255)
    else:  # blob: union of ellipses
        for _ in range(_randint(rng, 3, 6)):
            ex = cx + _uniform(rng, -0.45, 0.45) * rx
            ey = cy + _uniform(rng, -0.45, 0.45) * ry
            erx = _uniform(rng, 0.3, 0.55) * rx
            ery = _uniform(rng, 0.3, 0.55) * ry
            draw.polygon(_points_on_ellipse(ex, ey, erx, ery, _uniform(rng, 0.0, math.pi), n=32), fill=255)
    if soft:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius))
    alpha = np.asarray(canvas).copy()
    if not alpha.any():  # degenerate drawing (cannot happen with the sizes above, but be safe)
        alpha[ch // 2 - 2 : ch // 2 + 2, cw // 2 - 2 : cw // 2 + 2] = 255
    return alpha


def _place(rng: np.random.Generator, size: int, h: int, w: int) -> tuple[int, int]:
    return _randint(rng, 0, size - h), _randint(rng, 0, size - w)


def _diffusion_fill(img: np.ndarray, region: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Inpainting fallback without OpenCV: harmonic (diffusion) fill of `region` from its border."""
    out = img.astype(np.float32)
    known = ~region
    mean = out[known].mean(axis=0) if known.any() else np.full(3, 127.0, np.float32)
    out[region] = mean
    for _ in range(iterations):
        p = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) * 0.25
        out[region] = avg[region]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _inpaint(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    radius = _randint(rng, 3, 6)
    telea = rng.random() < 0.5
    try:
        import cv2
    except ImportError:  # pragma: no cover - OpenCV ships with albumentations ([train] extra)
        return _diffusion_fill(img, region)
    flag = cv2.INPAINT_TELEA if telea else cv2.INPAINT_NS
    return cv2.inpaint(np.ascontiguousarray(img), region.astype(np.uint8) * 255, radius, flag)


def _inner_boundary_blur(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur the pixels of `region` within a few pixels of its border (pixels outside stay unchanged)."""
    width = _randint(rng, 1, 3)
    radius = _uniform(rng, 0.8, 1.6)
    ys, xs = np.nonzero(region)
    m = 8  # work on the region's bounding box plus a margin (the filters only look a few pixels away)
    y0, x0 = max(0, int(ys.min()) - m), max(0, int(xs.min()) - m)
    y1, x1 = min(img.shape[0], int(ys.max()) + 1 + m), min(img.shape[1], int(xs.max()) + 1 + m)
    window, reg = img[y0:y1, x0:x1], region[y0:y1, x0:x1]
    blurred = np.asarray(Image.fromarray(window).filter(ImageFilter.GaussianBlur(radius)))
    eroded = np.asarray(Image.fromarray(reg.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * width + 1))) > 0
    band = reg & ~eroded
    out = img.copy()
    out[y0:y1, x0:x1][band] = blurred[band]
    return out


# --------------------------------------------------------------------------------------------------
# Manipulations
# --------------------------------------------------------------------------------------------------
def _splice(
    pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator, donor_name: str
) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.size
    alpha = _region_shape(rng, size, cfg, soft_p=0.5)
    ch, cw = alpha.shape
    y, x = _place(rng, size, ch, cw)
    # donor: its own crop, scale and JPEG history
    donor = _random_view(load_photo(donor_name), size, size, rng)
    if rng.random() < 0.7:
        donor, _ = _jpeg(donor, _randint(rng, *cfg.donor_jpeg_quality))
    if rng.random() < 0.6:  # resampling trace: take a larger or smaller region and resize it
        r = math.exp(_uniform(rng, math.log(0.6), math.log(1.6)))
        sh, sw = min(size, max(4, int(round(ch * r)))), min(size, max(4, int(round(cw * r))))
        sy, sx = _place(rng, size, sh, sw)
        patch = _resample_patch(donor[sy : sy + sh, sx : sx + sw], cw, ch, rng)
    else:
        sy, sx = _place(rng, size, ch, cw)
        patch = donor[sy : sy + ch, sx : sx + cw]
    if rng.random() < 0.5:
        patch = _add_noise(patch, _uniform(rng, 1.5, 4.0), rng)
    if rng.random() < 0.5:
        patch = _colour_shift(patch, rng)
    return _paste(pristine, patch, alpha, y, x)


def _copy_move(
    pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.size
    alpha = _region_shape(rng, size, cfg, soft_p=0.4)
    ch, cw = alpha.shape
    y, x = _place(rng, size, ch, cw)
    scale = math.exp(_uniform(rng, math.log(0.8), math.log(1.25))) if rng.random() < 0.4 else 1.0
    sh, sw = min(size, max(4, int(round(ch * scale)))), min(size, max(4, int(round(cw * scale))))
    # a source location away from the destination (at least half a region apart)
    for _ in range(20):
        sy, sx = _place(rng, size, sh, sw)
        if abs(sy - y) >= ch / 2 or abs(sx - x) >= cw / 2:
            break
    patch = pristine[sy : sy + sh, sx : sx + sw]
    if (sh, sw) != (ch, cw):
        patch = _resample_patch(patch, cw, ch, rng)
    if rng.random() < 0.2:
        patch = patch[:, ::-1]
    if rng.random() < 0.3:
        patch = _add_noise(patch, _uniform(rng, 1.0, 3.0), rng)
    if rng.random() < 0.3:
        patch = _colour_shift(patch, rng)
    return _paste(pristine, patch, alpha, y, x)


def _removal(
    pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.size
    alpha = _region_shape(rng, size, cfg, soft_p=0.0)
    ch, cw = alpha.shape
    y, x = _place(rng, size, ch, cw)
    mask = np.zeros((size, size), dtype=bool)
    mask[y : y + ch, x : x + cw] = alpha > 127
    # inpaint a window around the region only (fast); the fill only reads nearby pixels anyway
    m = 16
    y0, x0, y1, x1 = max(0, y - m), max(0, x - m), min(size, y + ch + m), min(size, x + cw + m)
    window = pristine[y0:y1, x0:x1]
    region = mask[y0:y1, x0:x1]
    filled = _inpaint(window, region, rng)
    if rng.random() < 0.5:
        filled = _add_noise(filled, _uniform(rng, 1.0, 3.0), rng)
    out = pristine.copy()
    out[y0:y1, x0:x1][region] = filled[region]
    return out, mask


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------
def _config(config: SyntheticTamperingConfig | None, overrides: dict[str, Any]) -> SyntheticTamperingConfig:
    base = config if config is not None else SyntheticTamperingConfig()
    return dataclasses.replace(base, **overrides) if overrides else base


def _rng(cfg: SyntheticTamperingConfig, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(cfg.seed) % (1 << 63), _SPLIT_CODE[cfg.split], int(index)])
    )


def render_sample(index: int, config: SyntheticTamperingConfig | None = None, **overrides: Any) -> SyntheticSample:
    """Render sample `index` with all its stages (see `SyntheticSample`).

    `overrides` replace fields of `config` (for example `size=128, split="test"`).
    """
    cfg = _config(config, overrides)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    photos = SPLIT_PHOTOS[cfg.split]
    rng = _rng(cfg, index)
    if rng.random() < cfg.authentic_fraction:
        kind = "authentic"
    else:
        w = np.asarray(cfg.kind_weights, dtype=np.float64)
        kind = KINDS[1 + int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(), side="right"))]
    host = photos[int(rng.integers(len(photos)))]
    base = _random_view(load_photo(host), cfg.size, cfg.size, rng)
    if rng.random() < cfg.camera_jpeg_p:
        pristine, _ = _jpeg(base, _randint(rng, *cfg.camera_jpeg_quality))
    else:
        pristine = base
    donor = None
    if kind == "authentic":
        manipulated, mask = pristine, np.zeros((cfg.size, cfg.size), dtype=bool)
    else:
        if kind == "splicing":
            others = [p for p in photos if p != host]
            donor = others[int(rng.integers(len(others)))]
        for _ in range(_MAX_ATTEMPTS):
            if kind == "splicing":
                manipulated, mask = _splice(pristine, cfg, rng, donor)
            elif kind == "copy_move":
                manipulated, mask = _copy_move(pristine, cfg, rng)
            else:
                manipulated, mask = _removal(pristine, cfg, rng)
            # redraw a manipulation that changed too few of its pixels (e.g. flat sky moved onto flat sky)
            if (manipulated != pristine).any(axis=2)[mask].mean() >= _MIN_CHANGED:
                break
    if kind != "authentic" and rng.random() < cfg.boundary_blur_p:
        manipulated = _inner_boundary_blur(manipulated, mask, rng)
    final = manipulated
    if rng.random() < cfg.global_blur_p:
        final = np.asarray(Image.fromarray(final).filter(ImageFilter.GaussianBlur(_uniform(rng, 0.4, 0.8))))
    decoded, data = _jpeg(final, _randint(rng, *cfg.final_jpeg_quality))
    return SyntheticSample(
        image=Image.fromarray(decoded),
        mask=mask,
        kind=kind,
        jpeg=data,
        index=int(index),
        host=host,
        donor=donor,
        pristine=pristine,
        manipulated=manipulated,
    )


def generate_sample(
    index: int, config: SyntheticTamperingConfig | None = None, **overrides: Any
) -> tuple[Image.Image, np.ndarray, str]:
    """Sample `index`: `(RGB PIL image, bool mask (size, size), kind)`.

    Deterministic: depends on `index` and the configuration (`seed`, `split`, `size`,
    ...) only. `overrides` replace fields of `config`.
    """
    s = render_sample(index, config, **overrides)
    return s.image, s.mask, s.kind


def _render_for_pool(args: tuple[SyntheticTamperingConfig, int]) -> SyntheticSample:
    cfg, index = args
    s = render_sample(index, cfg)
    s.pristine = s.manipulated = np.zeros((0, 0, 3), np.uint8)  # do not ship stages between processes
    return s


def iter_samples(
    config: SyntheticTamperingConfig, indices: Iterable[int] | None = None, *, num_workers: int = 0
) -> Iterator[SyntheticSample]:
    """Render samples in index order, in `num_workers` processes if > 1 (same results)."""
    indices = list(range(config.num_images) if indices is None else indices)
    if num_workers > 1 and len(indices) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            yield from pool.map(_render_for_pool, [(config, i) for i in indices], chunksize=8)
    else:
        for i in indices:
            yield render_sample(i, config)


def _mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def _progress(iterable: Iterable[Any], total: int, enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="img")


def synthetic_dataset(
    split: str = "train",
    num_images: int = 1000,
    size: int = 256,
    seed: int = 0,
    *,
    authentic_fraction: float | None = None,
    config: SyntheticTamperingConfig | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> datasets.Dataset:
    """The synthetic data set in memory as a `datasets.Dataset`.

    Columns: `image` (the JPEG bytes, as `datasets.Image`), `mask` (PNG 0/255, or
    `None` for authentic samples), `label` (ClassLabel authentic/tampered) and `kind`
    (one of `KINDS`). `config` supplies the other generation parameters; the explicit
    arguments override it.
    """
    from datasets import Dataset, Value

    from .loaders import iml_features

    overrides: dict[str, Any] = dict(split=split, num_images=num_images, size=size, seed=seed)
    if authentic_fraction is not None:
        overrides["authentic_fraction"] = authentic_fraction
    cfg = _config(config, overrides)
    images, masks, labels, kinds = [], [], [], []
    samples = iter_samples(cfg, num_workers=num_workers)
    for s in _progress(samples, cfg.num_images, progress, f"synthetic {cfg.split}"):
        images.append({"bytes": s.jpeg, "path": None})
        masks.append(None if s.kind == "authentic" else {"bytes": _mask_png(s.mask), "path": None})
        labels.append(0 if s.kind == "authentic" else 1)
        kinds.append(s.kind)
    features = iml_features()
    features["kind"] = Value("string")
    return Dataset.from_dict({"image": images, "mask": masks, "label": labels, "kind": kinds}, features=features)


MANIFEST_NAME = "synthetic_manifest.json"


def write_synthetic_dataset(
    output_dir: str | os.PathLike,
    num_images: int = 1000,
    size: int = 256,
    seed: int = 0,
    split: str = "train",
    *,
    authentic_fraction: float | None = None,
    config: SyntheticTamperingConfig | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, int]:
    """Write the synthetic data set as a `Tp/`, `Gt/`, `Au/` folder.

    Tampered images go to `Tp/{split}_{index:06d}.jpg` (the exact JPEG bytes), their masks to
    `Gt/{split}_{index:06d}.png` (8-bit grey, 0/255), authentic images to
    `Au/{split}_{index:06d}.jpg`; `synthetic_manifest.json` records the configuration and
    each file's kind and source photographs. `sparsevit_hf.data.load_iml_dataset` reads the
    folder back. Returns counts: `{"total", "tampered", "authentic", "splicing", "copy_move",
    "removal"}`.
    """
    overrides: dict[str, Any] = dict(split=split, num_images=num_images, size=size, seed=seed)
    if authentic_fraction is not None:
        overrides["authentic_fraction"] = authentic_fraction
    cfg = _config(config, overrides)
    out = Path(output_dir)
    tp, gt, au = out / "Tp", out / "Gt", out / "Au"
    for d in (tp, gt, au):
        d.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    files = []
    samples = iter_samples(cfg, num_workers=num_workers)
    for s in _progress(samples, cfg.num_images, progress, f"writing synthetic {cfg.split}"):
        stem = f"{cfg.split}_{s.index:06d}"
        if s.kind == "authentic":
            (au / f"{stem}.jpg").write_bytes(s.jpeg)
            files.append({"image": f"Au/{stem}.jpg", "mask": None, "kind": s.kind, "host": s.host, "donor": None})
        else:
            (tp / f"{stem}.jpg").write_bytes(s.jpeg)
            (gt / f"{stem}.png").write_bytes(_mask_png(s.mask))
            files.append(
                {"image": f"Tp/{stem}.jpg", "mask": f"Gt/{stem}.png", "kind": s.kind, "host": s.host, "donor": s.donor}
            )
        counts[s.kind] += 1
    result = {"total": cfg.num_images, "tampered": cfg.num_images - counts["authentic"]}
    result.update({k: counts[k] for k in KINDS})
    manifest = {"generator": "sparsevit_hf.synthetic", "config": cfg.to_dict(), "counts": result, "files": files}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return result
