"""Whole-image inference: per-pixel manipulation probabilities at the original resolution.

Three resolution modes:

- `"resize"` (default, the official protocol): every image is resized to the processor's size (512 x 512 for the
  published model), and the probability map is resized back to the original size bilinearly (the official demo used
  Lanczos for its pictures; bilinear is what the processor's post-processing does, and it cannot overshoot [0, 1]).
- `"native"`: the whole image at its own resolution, padded at the bottom/right to a multiple of 32 by the
  processor's native mode. It keeps the high-frequency traces that resizing destroys. Images larger than
  `max_pixels` are refused with an error that suggests the tiled mode.
- `"tiled"`: overlapping tiles of `tile_size` pixels at the native resolution, blended with linear ramps over the
  overlaps (the weighted probabilities and the weights are accumulated, then divided), for images too large for the
  native mode. Beyond the image itself and two float32 maps of its size, memory is bounded by the tile batch. An
  image no larger than one tile is predicted exactly as in native mode.

Entry points: `predict_probabilities` (one call), `Predictor` (reusable, used by the CLI),
`load_image` (a file to an 8-bit RGB PIL image, by the package's one decoder); models are loaded by
`sparsevit_hf.inference.loading` (`load_model`, re-exported here). The modes themselves are
`sparsevit_hf.localization_sparsevit.probability_maps`, the remote code that the Inference Endpoints handler and the
Space run too.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image

from ..image_decoding_sparsevit import IMAGE_EXTENSIONS, array_to_rgb, decode_image
from ..image_decoding_sparsevit import ImageDecodingError as ImageLoadError  # the decoder's error, named for this API
from ..localization_sparsevit import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODE,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    MIN_IMAGE_SIDE,
    MODES,
    ImageSizeError,
    check_image_size,
    probability_maps,
)
from .loading import (
    BACKENDS,
    ModelLoadError,
    check_model_folder,
    load_model,
    resolve_device,
    resolve_dtype,
    slow_precision_warning,
)
from .onnx import OnnxRuntimeModel


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """An 8-bit RGB copy of a PIL image of any common mode, upright, under the package's decoding rules
    (`sparsevit_hf.image_decoding_sparsevit`): alpha dropped, palettes applied, 16-bit scaled, float in [0, 1]."""
    return Image.fromarray(decode_image(image, name), mode="RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image, upright, by the package's one decoder (the pixels the data
    loaders and the image processor get from the same file).

    The file is read completely and closed. Every failure (missing file, unreadable or truncated data, unsupported
    mode, decompression-bomb guard) raises `ImageLoadError` naming the file. Multi-frame files give their first
    frame.
    """
    return Image.fromarray(decode_image(path, os.fspath(path)), mode="RGB")


def _image_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image."""
    return image.height, image.width


def _as_rgb_image(image, index: int) -> Image.Image:
    """Any accepted input as an upright 8-bit RGB PIL image, by the package's one decoder."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image, getattr(image, "filename", None) or f"Image {index}")
    if isinstance(image, np.ndarray):
        return Image.fromarray(array_to_rgb(image, f"Image {index}"), mode="RGB")
    raise TypeError(f"Image {index} has type {type(image).__name__}; expected a PIL image, a path or a NumPy array.")


# ----------------------------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------------------------
class Predictor:
    """Per-pixel manipulation probabilities for images of any size, in one of the modes of `MODES`.

    Args:
        model: a `SparseViTForManipulationLocalization` (or any model whose output has `logits` of shape
            `(batch, 1, ceil(H / 16), ceil(W / 16))`). It is put in eval mode and, when `device` / `dtype`
            are given, moved / cast in place.
        processor: a `SparseViTImageProcessor`; its `size` is the resize-mode input size.
        mode: `"resize"`, `"native"` or `"tiled"`.
        tile_size, tile_overlap: tiled mode; the tile side (a multiple of 32) and the minimum overlap between
            neighbouring tiles (`0 <= overlap < tile_size`).
        batch_size: images per forward pass in resize mode; same-size images per forward pass in native mode
            (images of different sizes are never padded together, which would change their predictions); tiles per
            forward pass in tiled mode.
        max_pixels: native mode refuses images with more pixels than this (`None` or 0: no limit).
    """

    def __init__(
        self,
        model,
        processor,
        mode: str = DEFAULT_MODE,
        *,
        tile_size: int = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int = 1,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
        divisor = int(getattr(model.config, "pad_size_divisor", 32))
        if mode == "tiled":
            if not isinstance(tile_size, int) or tile_size < MIN_IMAGE_SIDE or tile_size % divisor:
                raise ValueError(
                    f"tile_size must be a multiple of {divisor} of at least {MIN_IMAGE_SIDE}, got {tile_size!r}."
                )
            if not isinstance(tile_overlap, int) or not 0 <= tile_overlap < tile_size:
                raise ValueError(f"tile_overlap must be an integer in [0, tile_size), got {tile_overlap!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if max_pixels is not None and max_pixels < 0:
            raise ValueError(f"max_pixels must be positive (or None / 0 for no limit), got {max_pixels!r}.")
        self.model = model
        self.processor = processor
        self.mode = mode
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.batch_size = batch_size
        self.max_pixels = max_pixels or None
        self.divisor = divisor
        torch_dtype = resolve_dtype(dtype)
        if isinstance(model, OnnxRuntimeModel):
            self._check_static_size(model, torch_dtype)
            self.device, self.dtype = model.device, model.dtype
            return
        if device is not None:
            model.to(resolve_device(device))
        if torch_dtype is not None:
            model.to(torch_dtype)
        model.eval()
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        if (warning := slow_precision_warning(self.device, self.dtype)) is not None:
            warnings.warn(warning, stacklevel=2)

    def _check_static_size(self, model: OnnxRuntimeModel, dtype: torch.dtype | None) -> None:
        """An exported graph has one input size: native mode cannot use it, tiles must have its size."""
        size = "{} x {}".format(*model.input_size)
        if self.mode == "native":
            raise ValueError(
                f"The ONNX model in {model.folder} takes {size} inputs only; native mode needs every size. Use "
                "mode 'resize' or 'tiled', or the PyTorch model."
            )
        if self.mode == "tiled" and (self.tile_size, self.tile_size) != model.input_size:
            raise ValueError(f"tile_size is {self.tile_size} but the ONNX model in {model.folder} takes {size}.")
        if dtype not in (None, torch.float32):
            raise ValueError("The ONNX model computes in its exported precision; dtype may only be fp32.")

    def check(self, image, name: str = "image") -> None:
        """Raise `ImageSizeError` if this image cannot be predicted in this mode."""
        check_image_size(*_image_size(image), self.mode, self.max_pixels, name)

    def predict(self, images) -> list[np.ndarray]:
        """Probability maps (float32 `(H, W)` in [0, 1], the original size of each image) for a list of images
        (PIL images, paths or NumPy arrays, all decoded upright to 8-bit RGB by the package's decoder; a single image
        is accepted too)."""
        if isinstance(images, (Image.Image, str, os.PathLike, np.ndarray)):
            images = [images]
        pil_images = [_as_rgb_image(image, index) for index, image in enumerate(images)]
        return probability_maps(
            self.model,
            self.processor,
            pil_images,
            self.mode,
            device=self.device,
            dtype=self.dtype,
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            batch_size=self.batch_size,
            max_pixels=self.max_pixels,
        )


def predict_probabilities(
    model,
    processor,
    images,
    mode: str = DEFAULT_MODE,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray]:
    """Per-pixel manipulation probabilities at the original resolution of each image.

    Args:
        model: a `SparseViTForManipulationLocalization` (put in eval mode; moved/cast in place when `device` /
            `dtype` are given).
        processor: its `SparseViTImageProcessor`.
        images: a PIL image, a path, a NumPy array, or a list of them, each decoded by the package's decoder (the
            rules of training: upright by its EXIF orientation, 8-bit RGB), so a map has the upright image's size.
        mode: `"resize"` (official, default), `"native"` or `"tiled"` (see the module docstring).
        tile_size, tile_overlap, batch_size, max_pixels: see `Predictor`.
        device: e.g. `"cpu"`, `"cuda"`, `"auto"`; `None` keeps the model where it is.
        dtype: `"fp32"`, `"bf16"`, `"fp16"` or a `torch.dtype`; `None` keeps the model's dtype.

    Returns:
        A list with one float32 NumPy array `(height, width)` in [0, 1] per image.

    Raises:
        ImageLoadError: a path could not be read. ImageSizeError: an image is smaller than 32 x 32 pixels, or
        (native mode) has more than `max_pixels` pixels.
    """
    predictor = Predictor(
        model,
        processor,
        mode,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        max_pixels=max_pixels,
    )
    return predictor.predict(images)


def image_score(probability: np.ndarray) -> float:
    """Image-level manipulation score: the maximum per-pixel probability (a common choice in the field)."""
    return float(np.max(probability))


def manipulated_fraction(probability: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of pixels whose probability is strictly above `threshold`."""
    return float(np.mean(probability > threshold))


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TILE_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "IMAGE_EXTENSIONS",
    "MIN_IMAGE_SIDE",
    "MODES",
    "ImageLoadError",
    "ImageSizeError",
    "ModelLoadError",
    "Predictor",
    "check_model_folder",
    "image_score",
    "load_image",
    "load_model",
    "manipulated_fraction",
    "predict_probabilities",
    "resolve_device",
    "resolve_dtype",
    "to_rgb",
]
