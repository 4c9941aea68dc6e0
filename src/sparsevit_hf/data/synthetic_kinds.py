"""The three synthetic manipulations: splicing, copy-move and removal, each built from regions and traces.

Every manipulation returns the manipulated image, its mask (every pixel it changed may be in it, no pixel
outside it changed) and the names of the traces it applied (see `synthetic_traces.TRACES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import synthetic_traces as T
from .synthetic_photos import jpeg, load_photo, randint, random_view, uniform
from .synthetic_regions import region_alpha

if TYPE_CHECKING:  # pragma: no cover
    from .synthetic import SyntheticTamperingConfig

__all__ = ["manipulate"]

Manipulation = tuple[np.ndarray, np.ndarray, list[str]]


def _source_traces(
    source: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator, traces: list[str]
) -> np.ndarray:
    """`source` through the content traces the configuration draws (noise level, colour, misaligned JPEG)."""
    if rng.random() < cfg.noise_p:
        if rng.random() < 0.75:
            source = T.add_noise(source, uniform(rng, 2.0, 7.0), rng)
            traces.append("noise")
        else:
            source = T.smooth(source, uniform(rng, 0.6, 1.3))
            traces.append("smooth")
    if rng.random() < cfg.relight_p:
        source = T.relight(source, rng)
        traces.append("relight")
    if rng.random() < cfg.grid_jpeg_p:
        source = T.grid_shifted_jpeg(source, randint(rng, *cfg.donor_jpeg_quality), *T.random_grid_offset(rng))
        traces.append("grid_jpeg")
    return source


def _alpha(cfg: SyntheticTamperingConfig, rng: np.random.Generator, feather_p: float, traces: list[str]) -> np.ndarray:
    alpha = region_alpha(cfg.size, rng, cfg.region_fraction, cfg.two_region_p, feather_p)
    if ((alpha > 0) & (alpha < 255)).any():
        traces.append("feather")
    return alpha


def _splice(pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator, donor: str) -> Manipulation:
    traces: list[str] = []
    alpha = _alpha(cfg, rng, cfg.feather_p, traces)
    source = random_view(load_photo(donor), cfg.size, rng)
    if rng.random() < 0.5:  # the donor's own camera compression, on its own (aligned) grid
        source, _ = jpeg(source, randint(rng, *cfg.camera_jpeg_quality))
    if rng.random() < cfg.resample_p:
        source = T.resample(source, rng, **T.random_resampling(rng))
        traces.append("resample")
    source = _source_traces(source, cfg, rng, traces)
    return T.composite(pristine, source, alpha), alpha > 0, traces


def _copy_move(pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator) -> Manipulation:
    traces: list[str] = []
    alpha = _alpha(cfg, rng, cfg.feather_p, traces)
    size = cfg.size
    # the content comes from elsewhere in the same image: at least a sixth of the side away
    while True:
        dy, dx = uniform(rng, -0.5, 0.5) * size, uniform(rng, -0.5, 0.5) * size
        if max(abs(dy), abs(dx)) >= size / 6:
            break
    params = {"shift": (dy, dx), "mirror": rng.random() < 0.2}
    if rng.random() < cfg.resample_p:
        params.update(T.random_resampling(rng))
        traces.append("resample")
    source = T.resample(pristine, rng, **params)
    source = _source_traces(source, cfg, rng, traces)
    return T.composite(pristine, source, alpha), alpha > 0, traces


def _removal(pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator) -> Manipulation:
    traces: list[str] = ["inpaint"]
    # inpainting fills a hard-edged hole; its edge is the fill's own boundary
    mask = region_alpha(cfg.size, rng, cfg.region_fraction, cfg.two_region_p, feather_p=0.0) > 0
    source = T.inpaint(pristine, mask, rng)
    if rng.random() < cfg.noise_p:  # re-texturing the flat fill, as retouchers do
        source = T.add_noise(source, uniform(rng, 1.5, 5.0), rng)
        traces.append("noise")
    if rng.random() < cfg.grid_jpeg_p:
        source = T.grid_shifted_jpeg(source, randint(rng, *cfg.donor_jpeg_quality), *T.random_grid_offset(rng))
        traces.append("grid_jpeg")
    out = pristine.copy()
    out[mask] = source[mask]
    return out, mask, traces


def manipulate(
    kind: str, pristine: np.ndarray, cfg: SyntheticTamperingConfig, rng: np.random.Generator, donor: str | None
) -> Manipulation:
    """One manipulation of `kind` (`splicing` needs the `donor` photograph's name) applied to `pristine`."""
    if kind == "splicing":
        assert donor is not None
        return _splice(pristine, cfg, rng, donor)
    if kind == "copy_move":
        return _copy_move(pristine, cfg, rng)
    if kind == "removal":
        return _removal(pristine, cfg, rng)
    raise ValueError(f"unknown manipulation kind {kind!r}; expected splicing, copy_move or removal")
