"""The source photographs of the synthetic data set, their split, and the seeded primitives every stage shares.

The photographs are the colour photographs shipped *inside* scikit-image's wheel (`skimage/data`; nothing is
downloaded). Train and test use disjoint photographs (see `SPLIT_PHOTOS`); `colorwheel`, `phantom` and the
chessboards are drawings, the grey images are not colour photographs, and the two motorcycle views are a stereo
pair, so they stay in the same split.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SOURCE_PHOTOS", "SPLIT_PHOTOS", "available_photos", "load_photo", "random_view"]

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
INSTALL_HINT = "pip install sparsevit-hf[train]"
RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the synthetic data set needs scikit-image, whose wheel ships the source photographs: " + INSTALL_HINT
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
            f"({INSTALL_HINT})"
        )
    with Image.open(path) as im:
        return im.convert("RGB")


# Seeded primitives. Only integer image arithmetic, PIL's fixed-point resampling and libjpeg touch pixels, so a
# sample is bit-identical across machines for the same package versions.
def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(uniform(rng, float(np.log(lo)), float(np.log(hi)))))


def randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in `[lo, hi]` (inclusive)."""
    return int(rng.integers(lo, hi + 1))


def jpeg(arr: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    """`arr` (uint8 `(H, W, 3)`) through a JPEG file of `quality`: the decoded pixels and the file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy(), data


def random_view(photo: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of `photo`, resampled to `size x size` with a random filter, randomly mirrored."""
    w, h = photo.size
    side = min(w, h)
    # do not upsample by more than 2x, and use at least 30% of the photo's side
    lo = min(1.0, max(0.3, 0.5 * size / side))
    crop = side * uniform(rng, lo, 1.0)
    x0, y0 = uniform(rng, 0.0, w - crop), uniform(rng, 0.0, h - crop)
    resample = RESAMPLE[int(rng.integers(len(RESAMPLE)))]
    view = photo.resize((size, size), resample=resample, box=(x0, y0, x0 + crop, y0 + crop), reducing_gap=2.0)
    arr = np.asarray(view)  # (size, size, 3) uint8
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)
