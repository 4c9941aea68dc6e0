"""Where and how large the manipulated regions of a synthetic sample are: shapes, sizes and placement.

Two choices make the masks carry no information about *where* tampering is:

* **placement on a torus.** A region's shape is drawn on a canvas and put at an offset drawn uniformly over the
  whole image, wrapping around the borders. Every pixel is then equally likely to be covered, for every shape and
  size, so the mean mask of a large split is flat by construction, and a region keeps its exact area when it
  reaches a border (its remainder enters from the opposite border). Regions touch the borders as often as their
  size makes them: a region whose box spans a fifth of the side touches a border about 40% of the time.
* **log-uniform total area** between `region_fraction` (default 1% and 30% of the image): every octave of size is
  as frequent as any other, so small regions (hard to find, worthless to a predictor that flags everything) are as
  common as large ones, and the mean area stays near 9%, which keeps "every pixel manipulated" a weak answer.

A sample has two regions with probability `two_region_p` (when the drawn total area is at least twice the
smallest); they share the drawn total area.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .synthetic_photos import log_uniform, randint, uniform

__all__ = ["SHAPES", "region_alpha", "torus_place"]

_FEATHER_FLOOR = 16  # alpha (of 255) below which a feathered edge is cut off
SHAPES = ("polygon", "ellipse", "rectangle", "blob")
# Share of its bounding box a shape fills on average; a first guess of the box for a wanted area, corrected once.
_FILL = {"polygon": 0.55, "ellipse": 0.785, "rectangle": 1.0, "blob": 0.6}


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float, n: int) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for k in range(n):
        t = 2.0 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


def _draw_shape(shape: str, bw: int, bh: int, rng: np.random.Generator) -> np.ndarray:
    """A binary `(bh, bw)` uint8 canvas (0/255) holding one shape that spans most of it."""
    canvas = Image.new("L", (bw, bh), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, rx, ry = bw / 2.0, bh / 2.0, bw / 2.0, bh / 2.0
    if shape == "polygon":
        n = randint(rng, 4, 10)
        angles = sorted(uniform(rng, 0.0, 2.0 * math.pi) for _ in range(n))
        pts = []
        for a in angles:
            r = uniform(rng, 0.55, 1.0)
            pts.append((cx + r * rx * math.cos(a), cy + r * ry * math.sin(a)))
        draw.polygon(pts, fill=255)
    elif shape == "ellipse":
        draw.ellipse((0, 0, bw - 1, bh - 1), fill=255)
    elif shape == "rectangle":
        draw.rectangle((0, 0, bw - 1, bh - 1), fill=255)
    else:  # blob: rotated ellipses overlapping a central one (so it stays one region)
        draw.ellipse((0.3 * bw, 0.3 * bh, 0.7 * bw, 0.7 * bh), fill=255)
        for _ in range(randint(rng, 3, 6)):
            ex, ey = cx + uniform(rng, -0.4, 0.4) * rx, cy + uniform(rng, -0.4, 0.4) * ry
            erx, ery = uniform(rng, 0.35, 0.6) * rx, uniform(rng, 0.35, 0.6) * ry
            draw.polygon(_ellipse_points(ex, ey, erx, ery, uniform(rng, 0.0, math.pi), 32), fill=255)
    arr = np.asarray(canvas).copy()
    if not arr.any():  # degenerate polygon of a tiny box: fall back to the box itself
        arr[:] = 255
    return arr


def _rotate(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`canvas` rotated by a random angle, expanded so nothing is cut (nearest neighbour keeps it binary)."""
    angle = uniform(rng, 0.0, 180.0)
    return np.asarray(Image.fromarray(canvas).rotate(angle, resample=Image.Resampling.NEAREST, expand=True))


def _shape_of_area(area: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary canvas (0/255) whose shape covers about `area` pixels (within the rounding of a redraw)."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    aspect = log_uniform(rng, 0.5, 2.0)
    fill = _FILL[shape]
    best, best_error = None, math.inf
    for _ in range(3):  # later draws correct the box by the fill the previous one reached; keep the closest
        box = area / fill
        bw = int(round(min(max(math.sqrt(box * aspect), 3.0), size)))
        bh = int(round(min(max(box / bw, 3.0), size)))
        canvas = _draw_shape(shape, bw, bh, rng)
        if shape != "rectangle" or rng.random() < 0.5:  # upright rectangles stay common, as in real edits
            canvas = _rotate(canvas, rng)
        canvas = canvas[:size, :size]
        reached = float((canvas > 0).sum())
        if abs(reached - area) < best_error:
            best, best_error = canvas, abs(reached - area)
        if best_error <= 0.1 * area:
            break
        fill = max(0.2, min(1.0, fill * reached / area))
    assert best is not None
    return best


def torus_place(canvas: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`canvas` put at a uniformly random offset of a `(size, size)` image, wrapping around the borders."""
    out = np.zeros((size, size), dtype=canvas.dtype)
    out[: canvas.shape[0], : canvas.shape[1]] = canvas
    return np.roll(out, (int(rng.integers(size)), int(rng.integers(size))), axis=(0, 1))


def region_alpha(
    size: int,
    rng: np.random.Generator,
    region_fraction: tuple[float, float],
    two_region_p: float,
    feather_p: float,
    feather_radius: tuple[float, float] = (0.8, 3.0),
) -> np.ndarray:
    """The blending weights `(size, size)` uint8 of one manipulation: 0 outside, 255 inside its regions.

    With probability `feather_p` the edges are feathered (a Gaussian ramp, radius drawn from `feather_radius`,
    that starts inside the drawn shape and ends a little outside it); otherwise they are hard. The mask of the
    sample is `alpha > 0`, every pixel the blend touches.
    """
    total = log_uniform(rng, *region_fraction) * size * size
    parts = [total]
    # two regions share the area, and only when each can still be at least half the smallest region
    if rng.random() < two_region_p and total >= 2 * region_fraction[0] * size * size:
        share = uniform(rng, 0.3, 0.7)
        parts = [total * share, total * (1.0 - share)]
    alpha = np.zeros((size, size), dtype=np.uint8)
    for area in parts:
        alpha = np.maximum(alpha, torus_place(_shape_of_area(area, size, rng), size, rng))
    if rng.random() < feather_p:
        radius = uniform(rng, *feather_radius)
        # blur on a tiled copy so the ramp wraps around the borders like the placement does
        tiled = np.tile(alpha, (3, 3))
        blurred = np.asarray(Image.fromarray(tiled).filter(ImageFilter.GaussianBlur(radius)))
        alpha = np.ascontiguousarray(blurred[size : 2 * size, size : 2 * size])
        # the faint tail of the ramp changes no pixel after rounding; keep the mask to where the blend shows
        alpha[alpha < _FEATHER_FLOOR] = 0
    return alpha
