"""Pictures of a prediction: binary mask, probability heatmap, and the side-by-side overlay.

Only NumPy and Pillow are used. The heatmap colour map is a small lookup table built here by linear interpolation
between a few anchor colours (dark violet to pale yellow, perceptually ordered and readable in grey scale), so that
no plotting library is needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Anchor colours of the heatmap, from probability 0 (near black) to 1 (pale yellow), evenly spaced.
_HEAT_ANCHORS = np.array(
    [
        (0, 0, 4),
        (40, 11, 84),
        (101, 21, 110),
        (159, 42, 99),
        (212, 72, 66),
        (245, 125, 21),
        (250, 193, 39),
        (252, 255, 164),
    ],
    dtype=np.float64,
)
OUTLINE_COLOR = (255, 48, 48)
HALO_COLOR = (0, 0, 0)
TINT_COLOR = (255, 40, 40)
TINT_ALPHA = 0.3
BACKGROUND_COLOR = (24, 24, 24)
TEXT_COLOR = (235, 235, 235)


def heat_lut(size: int = 256) -> np.ndarray:
    """The heatmap colour map as a `(size, 3)` uint8 lookup table."""
    positions = np.linspace(0.0, 1.0, len(_HEAT_ANCHORS))
    samples = np.linspace(0.0, 1.0, size)
    channels = [np.interp(samples, positions, _HEAT_ANCHORS[:, channel]) for channel in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


_LUT = heat_lut()


def _check_probability(probability: np.ndarray) -> np.ndarray:
    probability = np.asarray(probability)
    if probability.ndim != 2:
        raise ValueError(f"Expected a probability map of shape (height, width), got {probability.shape}.")
    return np.nan_to_num(probability.astype(np.float32, copy=False), nan=0.0)


def colorize(probability: np.ndarray) -> np.ndarray:
    """Map probabilities in [0, 1] to colours: `(H, W)` float -> `(H, W, 3)` uint8."""
    probability = _check_probability(probability)
    index = np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
    return _LUT[index]


def heatmap_image(probability: np.ndarray) -> Image.Image:
    """The probability map as an RGB picture (the colour map of `heat_lut`)."""
    return Image.fromarray(colorize(probability), mode="RGB")


def binary_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: probability strictly above `threshold`."""
    return _check_probability(probability) > threshold


def mask_image(probability: np.ndarray, threshold: float = 0.5) -> Image.Image:
    """Binary mask picture (mode `L`): 255 where manipulated (probability > threshold), 0 elsewhere."""
    return Image.fromarray(binary_mask(probability, threshold).astype(np.uint8) * 255, mode="L")


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2 radius + 1) square, separable, in NumPy."""
    if radius <= 0:
        return mask.copy()
    out = mask.copy()
    for axis in (0, 1):
        source = out.copy()
        length = source.shape[axis]
        for shift in range(1, min(radius, length - 1) + 1):
            lead = [slice(None)] * 2
            lag = [slice(None)] * 2
            lead[axis], lag[axis] = slice(shift, None), slice(None, -shift)
            out[tuple(lag)] |= source[tuple(lead)]
            out[tuple(lead)] |= source[tuple(lag)]
    return out


def outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels just outside the region of `mask`, `width` pixels thick (empty for an empty mask)."""
    mask = np.asarray(mask, dtype=bool)
    return _dilate(mask, width) & ~mask


def outline_width(height: int, width: int) -> int:
    """Outline thickness that stays visible at any resolution: about 0.5 % of the shorter side, at least 2 px."""
    return max(2, round(min(height, width) / 200))


def outlined_image(image: Image.Image, probability: np.ndarray, threshold: float = 0.5) -> Image.Image:
    """The image with the manipulated region (probability > threshold) tinted and outlined."""
    rgb = np.array(image.convert("RGB"))  # a writable uint8 copy; float only for the tinted pixels
    mask = binary_mask(probability, threshold)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"Probability map {mask.shape} and image {rgb.shape[:2]} differ in size.")
    if not mask.any():
        return Image.fromarray(rgb, mode="RGB")
    tint = TINT_ALPHA * np.asarray(TINT_COLOR, dtype=np.float32)
    rgb[mask] = np.rint((1.0 - TINT_ALPHA) * rgb[mask].astype(np.float32) + tint).astype(np.uint8)
    # Two-tone outline, readable on bright and dark backgrounds: a coloured band next to the region, a dark halo
    # around it.
    thickness = outline_width(*mask.shape)
    inner = max(1, -(-2 * thickness // 3))
    rgb[outline(mask, thickness)] = HALO_COLOR
    rgb[outline(mask, inner)] = OUTLINE_COLOR
    return Image.fromarray(rgb, mode="RGB")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, candidates: list[str], font, room: int) -> str:
    """The first caption that fits in `room` pixels (the last one otherwise)."""
    for text in candidates:
        if draw.textlength(text, font=font) <= room:
            return text
    return candidates[-1]


def overlay_image(
    image: Image.Image, probability: np.ndarray, threshold: float = 0.5, *, title: str | None = None
) -> Image.Image:
    """Three panels side by side at the image's resolution, under a caption band:
    the image | the probability heatmap (with its colour bar) | the image with the manipulated region
    (probability > threshold) tinted and outlined.

    The result is `3 W + 2 gap` pixels wide and `H + caption` high.
    """
    image = image.convert("RGB")
    width, height = image.size
    probability = _check_probability(probability)
    if probability.shape != (height, width):
        raise ValueError(f"Probability map {probability.shape} and image {(height, width)} differ in size.")
    fraction = float(np.mean(probability > threshold))
    score = float(probability.max()) if probability.size else 0.0

    gap = max(4, width // 100)
    font_size = max(10, min(height, width) // 28)
    caption = round(font_size * 1.8)
    canvas = Image.new("RGB", (3 * width + 2 * gap, height + caption), BACKGROUND_COLOR)
    canvas.paste(image, (0, caption))
    canvas.paste(heatmap_image(probability), (width + gap, caption))
    canvas.paste(outlined_image(image, probability, threshold), (2 * (width + gap), caption))

    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    margin = max(2, font_size // 3)
    text_y = (caption - font_size) // 2
    room = width - 2 * margin
    draw.text((margin, text_y), _fit(draw, [title or "image", "image"], font, room), fill=TEXT_COLOR, font=font)

    # Heatmap caption with a colour bar 0 ... 1.
    left = width + gap + margin
    panel_right = 2 * width + gap - margin
    one_width = round(draw.textlength("1", font=font))
    label = _fit(draw, ["probability  0", "p  0", "0"], font, room // 2)
    draw.text((left, text_y), label, fill=TEXT_COLOR, font=font)
    bar_left = left + round(draw.textlength(label, font=font)) + margin
    bar_width = max(8, min(width // 3, panel_right - bar_left - margin - one_width))
    bar_height = max(4, font_size * 2 // 3)
    bar = Image.fromarray(np.repeat(heat_lut(bar_width)[None], bar_height, axis=0), mode="RGB")
    canvas.paste(bar, (bar_left, (caption - bar_height) // 2))
    draw.text((bar_left + bar_width + margin, text_y), "1", fill=TEXT_COLOR, font=font)

    summary = _fit(
        draw,
        [
            f"p > {threshold:g}: {100 * fraction:.1f} % of pixels, max p {score:.2f}",
            f"p > {threshold:g}: {100 * fraction:.1f} %",
            f"{100 * fraction:.0f} %",
        ],
        font,
        room,
    )
    draw.text(
        (2 * (width + gap) + margin, text_y), summary, fill=OUTLINE_COLOR if fraction > 0 else TEXT_COLOR, font=font
    )
    return canvas


__all__ = [
    "binary_mask",
    "colorize",
    "heat_lut",
    "heatmap_image",
    "mask_image",
    "outline",
    "outline_width",
    "outlined_image",
    "overlay_image",
]
