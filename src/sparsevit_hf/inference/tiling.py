"""Tiles for the tiled prediction mode: where they start and how their predictions are blended."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def tile_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering `[0, length)`: the fewest full tiles whose overlaps are at least `overlap`,
    spread evenly so that the first starts at 0 and the last ends at `length`. One tile (start 0, possibly shorter
    than `tile_size`) when `length <= tile_size`."""
    if length <= tile_size:
        return [0]
    count = math.ceil((length - tile_size) / (tile_size - overlap)) + 1
    return [round(index * (length - tile_size) / (count - 1)) for index in range(count)]


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D blending weight of a tile: linear ramps over the overlaps with the previous (`before` pixels) and next
    (`after` pixels) tiles, 1 elsewhere and on image borders. Never zero: the smallest value is 0.5 / overlap."""
    position = np.arange(length, dtype=np.float64) + 0.5
    weight = np.ones(length, dtype=np.float64)
    if before > 0:
        weight = np.minimum(weight, position / before)
    if after > 0:
        weight = np.minimum(weight, (length - position) / after)
    return weight


def tile_weights(starts: Sequence[int], tile_length: int) -> list[np.ndarray]:
    """Blending weights along one axis for each tile of `tile_starts`."""
    weights = []
    for index, start in enumerate(starts):
        before = starts[index - 1] + tile_length - start if index > 0 else 0
        after = start + tile_length - starts[index + 1] if index + 1 < len(starts) else 0
        weights.append(_ramp(tile_length, max(before, 0), max(after, 0)))
    return weights



__all__ = ["tile_starts", "tile_weights"]
