"""A deterministic synthetic image-tampering data set built from real photographs.

The photographs come from scikit-image's wheel, with disjoint photographs for `train` and `test`
(`synthetic_photos`). Each sample starts from a random square crop of a random photograph of its split,
resampled to `size` x `size` with a random filter and randomly mirrored, then (usually) JPEG-compressed as a
camera would: this is the *pristine* rendition. A tampered sample then gets one manipulation (`synthetic_kinds`):

* `splicing` -- content of a *different* photograph of the split is pasted in;
* `copy_move` -- content of the same image, moved (and possibly scaled, rotated, mirrored), is pasted in;
* `removal` -- a region is inpainted (OpenCV Telea / Navier-Stokes, or a diffusion fill without OpenCV);

over one or two regions placed so that the masks say nothing about *where* tampering is (`synthetic_regions`:
the mean mask of a large split is flat, areas are log-uniform from 1% to 30%, regions cross the borders). The
pasted content carries a random subset of the traces forensic detectors rely on (`synthetic_traces`): resampling,
a different noise level, a colour and illumination change, a JPEG compression on a shifted block grid, hard or
feathered edges, a blurred inner boundary. The mask is exactly the support of the manipulation: every pixel
outside it is bit-identical to the pristine rendition (see `SyntheticSample`). Finally every image, tampered or
`authentic`, goes through the same global post-processing (an occasional slight blur and a final JPEG compression
at a random quality), so compression alone is not a cue.

Sample `i` depends only on `(seed, split, size, i)` and the configuration (it is seeded per index), not on how
many images are requested, and is bit-identical across machines for the same package versions (Pillow, numpy,
and OpenCV if installed).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter

from .synthetic_kinds import manipulate
from .synthetic_photos import SOURCE_PHOTOS, SPLIT_PHOTOS, available_photos, jpeg, load_photo, randint, random_view
from .synthetic_photos import uniform as _uniform
from .synthetic_traces import TRACES, inner_boundary_blur

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "SOURCE_PHOTOS",
    "SPLIT_PHOTOS",
    "KINDS",
    "TRACES",
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

# Sample kinds; the last three are manipulations.
KINDS = ("authentic", "splicing", "copy_move", "removal")
_SPLIT_CODE = {"train": 1, "test": 2}
_MIN_CHANGED = 0.5  # a manipulation must change at least this share of its mask's pixels
_MAX_ATTEMPTS = 8
_PROBABILITIES = (
    "authentic_fraction",
    "two_region_p",
    "camera_jpeg_p",
    "global_blur_p",
    "resample_p",
    "noise_p",
    "relight_p",
    "grid_jpeg_p",
    "feather_p",
    "boundary_blur_p",
)


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
        region_fraction: range of the manipulated area as a fraction of the image (log-uniform, see
            `synthetic_regions`).
        two_region_p: probability that a manipulation covers two separate regions (sharing the drawn area).
        camera_jpeg_p: probability of the first ("camera") JPEG compression of the pristine image.
        camera_jpeg_quality, final_jpeg_quality, donor_jpeg_quality: JPEG quality ranges (inclusive) of the
            camera compression (also a splicing donor's own), of the final compression and of the pasted
            content's compression on a shifted grid.
        global_blur_p: probability of a slight global blur before the final compression.
        resample_p: probability that pasted content is scaled and rotated (splicing, copy-move).
        noise_p: probability of a noise-level mismatch (added noise, or for pasted content sometimes smoothing).
        relight_p: probability of a colour and illumination change of pasted content.
        grid_jpeg_p: probability of a JPEG compression of the new content on a shifted 8x8 grid.
        feather_p: probability of feathered (rather than hard) edges of pasted content.
        boundary_blur_p: probability of blurring the inner boundary of the manipulated region.
    """

    num_images: int = 1000
    size: int = 256
    seed: int = 0
    split: str = "train"
    authentic_fraction: float = 0.2
    kind_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    region_fraction: tuple[float, float] = (0.01, 0.3)
    two_region_p: float = 0.25
    camera_jpeg_p: float = 0.8
    camera_jpeg_quality: tuple[int, int] = (70, 95)
    final_jpeg_quality: tuple[int, int] = (75, 98)
    donor_jpeg_quality: tuple[int, int] = (50, 90)
    global_blur_p: float = 0.1
    resample_p: float = 0.5
    noise_p: float = 0.5
    relight_p: float = 0.5
    grid_jpeg_p: float = 0.5
    feather_p: float = 0.5
    boundary_blur_p: float = 0.2

    def __post_init__(self) -> None:
        if self.split not in SPLIT_PHOTOS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_PHOTOS)}, got {self.split!r}")
        if self.num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {self.num_images}")
        if self.size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {self.size}")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
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
        mask: `(size, size)` bool, true where the manipulation may have changed pixels (all false for
            `authentic`); at least half of its pixels did change.
        kind: one of `KINDS`.
        jpeg: the final JPEG file's bytes.
        index: the sample index.
        host: name of the photograph the image was cropped from.
        donor: name of the donor photograph (`splicing` only).
        pristine: uint8 `(size, size, 3)` untouched rendition the manipulation was applied to.
        manipulated: uint8 image after the manipulation, before global post-processing; equal to `pristine`
            wherever `mask` is false.
        traces: names (from `TRACES`) of the traces the manipulation left.
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
    traces: tuple[str, ...] = field(default=())


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

    Raises:
        RuntimeError: when no drawn manipulation changed at least half of its mask's pixels within the allowed
            attempts (a configuration whose regions are too small or whose photographs are flat).
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
    base = random_view(load_photo(host), cfg.size, rng)
    pristine = jpeg(base, randint(rng, *cfg.camera_jpeg_quality))[0] if rng.random() < cfg.camera_jpeg_p else base
    donor = None
    traces: list[str] = []
    if kind == "authentic":
        manipulated, mask = pristine, np.zeros((cfg.size, cfg.size), dtype=bool)
    else:
        if kind == "splicing":
            others = [p for p in photos if p != host]
            donor = others[int(rng.integers(len(others)))]
        for _ in range(_MAX_ATTEMPTS):
            manipulated, mask, traces = manipulate(kind, pristine, cfg, rng, donor)
            # redraw a manipulation that changed too few of its pixels (e.g. flat sky moved onto flat sky)
            if (manipulated != pristine).any(axis=2)[mask].mean() >= _MIN_CHANGED:
                break
        else:
            raise RuntimeError(
                f"synthetic sample {index} ({cfg.split}, seed {cfg.seed}, size {cfg.size}): no {kind} in "
                f"{_MAX_ATTEMPTS} attempts changed {_MIN_CHANGED:.0%} of its region; widen region_fraction"
            )
        if rng.random() < cfg.boundary_blur_p:
            manipulated = inner_boundary_blur(manipulated, mask, rng)
            traces.append("boundary_blur")
    final = manipulated
    if rng.random() < cfg.global_blur_p:
        final = np.asarray(Image.fromarray(final).filter(ImageFilter.GaussianBlur(_uniform(rng, 0.4, 0.8))))
    decoded, data = jpeg(final, randint(rng, *cfg.final_jpeg_quality))
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
        traces=tuple(traces),
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
    `None` for authentic samples), `label` (ClassLabel authentic/manipulated) and `kind`
    (one of `KINDS`). `config` supplies the other generation parameters; the explicit
    arguments override it.
    """
    from datasets import Dataset, Value

    from .features import iml_features

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
            files.append(
                {"image": f"Au/{stem}.jpg", "mask": None, "kind": s.kind, "host": s.host, "donor": None, "traces": []}
            )
        else:
            (tp / f"{stem}.jpg").write_bytes(s.jpeg)
            (gt / f"{stem}.png").write_bytes(_mask_png(s.mask))
            files.append(
                {
                    "image": f"Tp/{stem}.jpg",
                    "mask": f"Gt/{stem}.png",
                    "kind": s.kind,
                    "host": s.host,
                    "donor": s.donor,
                    "traces": list(s.traces),
                }
            )
        counts[s.kind] += 1
    result = {"total": cfg.num_images, "tampered": cfg.num_images - counts["authentic"]}
    result.update({k: counts[k] for k in KINDS})
    manifest = {"generator": "sparsevit_hf.synthetic", "config": cfg.to_dict(), "counts": result, "files": files}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return result
