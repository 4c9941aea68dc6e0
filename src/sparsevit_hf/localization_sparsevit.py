# Copyright 2025 The sparsevit-hf authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Per-pixel manipulation probabilities at an image's own size: the geometry of the model input and the three
resolution modes.

Remote code: `image_processing_sparsevit.py` imports it (so `save_pretrained` copies it into every model folder), and
it depends only on NumPy and, to run a model, torch. The package's `Predictor` (PyTorch and ONNX Runtime), the
Inference Endpoints handler and the Space all predict through `probability_maps`, so each mode has one
implementation:

- `"resize"` (the official protocol): every image is resized to the processor's `size` (512 x 512 for the published
  model), and the map is resized back bilinearly by the processor's post-processing.
- `"native"`: the whole image at its own resolution, padded at the bottom and right to a multiple of 32. It keeps
  the high-frequency traces that resizing destroys; images above `max_pixels` are refused. Only images of the same
  size share a forward pass: padding an image to another's size would change its prediction.
- `"tiled"`: overlapping tiles of `tile_size` pixels at the native resolution, blended with linear ramps over the
  overlaps (weighted probabilities and weights are accumulated, then divided). Beyond the image and two float32 maps
  of its size, memory is bounded by the tile batch. An image no larger than one tile is predicted exactly as in the
  native mode.
"""

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image
from transformers.image_utils import SizeDict
from transformers.utils import is_torch_available

if is_torch_available():
    import torch

MODES = ("resize", "native", "tiled")
DEFAULT_MODE = "resize"
# The backbone downsamples by 32: smaller images have no pixel left at its last stage.
MIN_IMAGE_SIDE = 32
# The native mode holds the whole image at once (16.8 MP, e.g. 4096 x 4096); larger images need the tiled mode.
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 128


class ImageSizeError(ValueError):
    """An image is too small for the model, or too large for the native mode."""


def check_image_size(
    height: int, width: int, mode: str, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "The image"
) -> None:
    """Raise `ImageSizeError` when an image of `height` x `width` pixels cannot be predicted in `mode`
    (`max_pixels` `None` or 0: no limit for the native mode)."""
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ImageSizeError(
            f"{name}: {width} x {height} pixels (width x height) is too small; SparseViT needs at least "
            f"{MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels in every mode (its backbone downsamples by 32, and an "
            "upscaled thumbnail carries no forensic traces)."
        )
    if mode == "native" and max_pixels and height * width > max_pixels:
        raise ImageSizeError(
            f"{name}: {width} x {height} = {height * width / 1e6:.1f} MP exceeds the native mode's limit of "
            f"{max_pixels / 1e6:.1f} MP ({max_pixels} pixels); use mode 'tiled' (sparsevit-predict --mode tiled), "
            "which bounds memory by the tile size, or raise the limit (max_pixels, --max-pixels)."
        )


# ----------------------------------------------------------------------------------------------------------------
# The model input and its logits (used by the processor's post-processing)
# ----------------------------------------------------------------------------------------------------------------
def padded_size(sizes, pad_size: SizeDict | None, size_divisor: int | None) -> SizeDict:
    """The padded size of a batch of `(height, width)` sizes: `pad_size`, or the largest size rounded up to
    `size_divisor`."""
    max_height, max_width = max(int(size[0]) for size in sizes), max(int(size[1]) for size in sizes)
    if pad_size is not None:
        if max_height > pad_size.height or max_width > pad_size.width:
            raise ValueError(
                f"An image in the batch ({max_height}x{max_width} after resizing, at most) is larger than `pad_size` "
                f"({pad_size.height}x{pad_size.width})."
            )
        return SizeDict(height=pad_size.height, width=pad_size.width)
    if size_divisor:
        max_height, max_width = (math.ceil(side / size_divisor) * size_divisor for side in (max_height, max_width))
    return SizeDict(height=max_height, width=max_width)


def check_logits_cover(logits_size: tuple[int, int], input_size: tuple[int, int]) -> None:
    """The model gives `ceil(side / stride)` logits per side, for one integer stride; refuse logits that no stride
    maps onto `input_size` (target sizes or options that are not those of the preprocessing)."""
    # Per side the valid strides form an interval starting at ceil(side / cells): the largest start is in both or none.
    stride = max(math.ceil(side / max(cells, 1)) for side, cells in zip(input_size, logits_size, strict=True))
    if any(math.ceil(side / stride) != cells for side, cells in zip(input_size, logits_size, strict=True)):
        raise ValueError(
            f"Logits of {logits_size[0]}x{logits_size[1]} cannot cover a model input of {input_size[0]}x"
            f"{input_size[1]} (what the preprocessing gives for these options and target sizes): pass the original "
            "(height, width) of every image of the batch as `target_sizes`, and `do_resize` / `do_pad` when the "
            "preprocessing call overrode them."
        )


def parse_target_size(target_size, index: int) -> tuple[int, int]:
    """`(height, width)` of one entry of `target_sizes`, as positive integers."""
    try:
        values = [int(value) for value in target_size]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or values[0] < 1 or values[1] < 1:
        raise ValueError(f"Target size {index} must be (height, width) with positive integers, got {target_size!r}.")
    return values[0], values[1]


def segments_info(segmentation, probability) -> list[dict]:
    """One entry per label present in a 0/1 label map: its score is the mean probability of that label inside it."""
    infos = []
    for label_id, label_probability in ((0, 1.0 - probability), (1, probability)):
        region = segmentation == label_id
        if bool(region.any()):
            score = float(label_probability[region].double().mean())
            infos.append({"id": label_id, "label_id": label_id, "was_fused": False, "score": score})
    return infos


# ----------------------------------------------------------------------------------------------------------------
# Tiles
# ----------------------------------------------------------------------------------------------------------------
def tile_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering `[0, length)`: the fewest full tiles whose overlaps are at least `overlap`,
    spread evenly so that the first starts at 0 and the last ends at `length`. One tile (start 0, possibly shorter
    than `tile_size`) when `length <= tile_size`."""
    if length <= tile_size:
        return [0]
    count = math.ceil((length - tile_size) / (tile_size - overlap)) + 1
    return [round(index * (length - tile_size) / (count - 1)) for index in range(count)]


def tile_weights(starts: Sequence[int], tile_length: int) -> list[np.ndarray]:
    """Blending weights along one axis for each tile of `tile_starts`: linear ramps over the overlaps with the
    previous and next tiles, 1 elsewhere and on image borders. Never zero: the smallest value is 0.5 / overlap."""
    position = np.arange(tile_length, dtype=np.float64) + 0.5
    weights = []
    for index, start in enumerate(starts):
        before = starts[index - 1] + tile_length - start if index > 0 else 0
        after = start + tile_length - starts[index + 1] if index + 1 < len(starts) else 0
        weight = np.ones(tile_length, dtype=np.float64)
        if before > 0:
            weight = np.minimum(weight, position / before)
        if after > 0:
            weight = np.minimum(weight, (tile_length - position) / after)
        weights.append(weight)
    return weights


# ----------------------------------------------------------------------------------------------------------------
# The three modes
# ----------------------------------------------------------------------------------------------------------------
def probability_maps(
    model,
    processor,
    images: Sequence[Image.Image],
    mode: str = DEFAULT_MODE,
    *,
    device=None,
    dtype=None,
    tile_size: int = DEFAULT_TILE_SIZE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int = 1,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray]:
    """Per-pixel manipulation probabilities, one float32 `(height, width)` map in [0, 1] per image, at its size.

    Args:
        model: a SparseViT model, or anything called as `model(pixel_values=...)` whose output has `logits` (the
            package's ONNX Runtime model); inputs go to `device` in `dtype`, by default those of its parameters (or
            its own `device` and `dtype` attributes).
        processor: its `SparseViTImageProcessor`.
        images: 8-bit RGB PIL images, upright (as the package's decoder gives them).
        mode: one of `MODES` (see the module docstring).
        tile_size, tile_overlap: the tiled mode's tile side (a multiple of 32) and least overlap of neighbours.
        batch_size: images per forward pass in resize mode, same-size images in native mode, tiles in tiled mode.
        max_pixels: the native mode's limit (`None` or 0: none). Every image is checked before any is predicted.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    for index, image in enumerate(images):
        check_image_size(image.height, image.width, mode, max_pixels, f"Image {index}")
    if device is None or dtype is None:
        reference = next(model.parameters()) if hasattr(model, "parameters") else model
        device = reference.device if device is None else device
        dtype = reference.dtype if dtype is None else dtype

    def forward(pixel_values: "torch.Tensor") -> "torch.Tensor":
        with torch.inference_mode():
            return model(pixel_values=pixel_values.to(device=device, dtype=dtype)).logits.float()

    if mode == "tiled":
        return [_tiled_map(forward, processor, image, tile_size, tile_overlap, batch_size) for image in images]
    # Same-size batches in native mode; in resize mode every image has the processor's size once resized.
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault((0, 0) if mode == "resize" else (image.height, image.width), []).append(index)
    maps = [None] * len(images)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            predicted = _maps(forward, processor, [images[index] for index in batch], do_resize=mode == "resize")
            for index, probability in zip(batch, predicted, strict=True):
                maps[index] = probability
    return maps


def _maps(forward, processor, images: Sequence[Image.Image], do_resize: bool) -> list[np.ndarray]:
    """One forward pass of a batch, resized (the processor's own padding) or native (padded to its largest size)."""
    options = {"do_resize": True} if do_resize else {"do_resize": False, "do_pad": True}
    logits = forward(processor(images=list(images), return_tensors="pt", **options)["pixel_values"])
    outputs = processor.post_process_semantic_segmentation(
        logits, target_sizes=[(image.height, image.width) for image in images], return_probabilities=True, **options
    )
    return [output["probabilities"].float().cpu().numpy().astype(np.float32, copy=False) for output in outputs]


def _tiled_map(forward, processor, image: Image.Image, tile_size: int, overlap: int, batch_size: int) -> np.ndarray:
    height, width = image.height, image.width
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    ys, xs = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    y_weights, x_weights = tile_weights(ys, tile_h), tile_weights(xs, tile_w)
    tiles = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    if len(tiles) == 1:  # the image fits in one tile: exactly the native prediction
        return _maps(forward, processor, [image], do_resize=False)[0]
    accumulated = np.zeros((height, width), dtype=np.float32)
    total_weight = np.zeros((height, width), dtype=np.float32)
    for start in range(0, len(tiles), batch_size):
        # Tiles are cut and normalised one batch at a time, so that memory does not grow with the image beyond the
        # image itself and the two float32 accumulators.
        chunk = tiles[start : start + batch_size]
        crops = [image.crop((xs[ix], ys[iy], xs[ix] + tile_w, ys[iy] + tile_h)) for iy, ix in chunk]
        for (iy, ix), probability in zip(chunk, _maps(forward, processor, crops, do_resize=False), strict=True):
            weight = np.outer(y_weights[iy], x_weights[ix]).astype(np.float32)
            window = (slice(ys[iy], ys[iy] + tile_h), slice(xs[ix], xs[ix] + tile_w))
            accumulated[window] += weight * probability
            total_weight[window] += weight
    return accumulated / total_weight


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODE",
    "DEFAULT_TILE_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "MIN_IMAGE_SIDE",
    "MODES",
    "ImageSizeError",
    "check_image_size",
    "check_logits_cover",
    "padded_size",
    "parse_target_size",
    "probability_maps",
    "segments_info",
    "tile_starts",
    "tile_weights",
]
