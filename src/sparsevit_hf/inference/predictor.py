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
`sparsevit_hf.inference.loading` (`load_model`, re-exported here). Tiles are laid out by
`sparsevit_hf.inference.tiling`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image

from ..image_decoding_sparsevit import IMAGE_EXTENSIONS, array_to_rgb, decode_image
from ..image_decoding_sparsevit import ImageDecodingError as ImageLoadError  # the decoder's error, named for this API
from .loading import BACKENDS, ModelLoadError, check_model_folder, load_model, resolve_device, resolve_dtype
from .onnx import OnnxRuntimeModel
from .tiling import tile_starts, tile_weights

MODES = ("resize", "native", "tiled")
DEFAULT_MODE = "resize"
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 128
# Native mode refuses images above this many pixels (16.8 MP, e.g. 4096 x 4096); use the tiled mode for larger ones.
DEFAULT_MAX_PIXELS = 4096 * 4096
# The backbone downsamples by 32: smaller images have no pixel left at the last stage.
MIN_IMAGE_SIDE = 32


class ImageSizeError(ValueError):
    """An image is too small for the model, or too large for the native mode."""


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------
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

    # -- checks ---------------------------------------------------------------------------------------------------
    def check(self, image, name: str = "image") -> None:
        """Raise `ImageSizeError` if this image cannot be predicted in this mode."""
        height, width = _image_size(image)
        if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
            raise ImageSizeError(
                f"{name}: {width} x {height} pixels (width x height) is too small; SparseViT needs at least "
                f"{MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels in every mode (its backbone downsamples by 32, and "
                "an upscaled thumbnail carries no forensic traces)."
            )
        if self.mode == "native" and self.max_pixels is not None and height * width > self.max_pixels:
            raise ImageSizeError(
                f"{name}: {width} x {height} = {height * width / 1e6:.1f} MP exceeds the native-mode limit of "
                f"{self.max_pixels / 1e6:.1f} MP ({self.max_pixels} pixels). Use the tiled mode (mode='tiled', "
                "--mode tiled), which bounds memory by the tile size, or raise the limit (max_pixels, --max-pixels)."
            )

    # -- prediction -----------------------------------------------------------------------------------------------
    def predict(self, images) -> list[np.ndarray]:
        """Probability maps (float32 `(H, W)` in [0, 1], the original size of each image) for a list of images
        (PIL images, paths or NumPy arrays, all decoded upright to 8-bit RGB by the package's decoder; a single image
        is accepted too)."""
        if isinstance(images, (Image.Image, str, os.PathLike, np.ndarray)):
            images = [images]
        pil_images = [_as_rgb_image(image, index) for index, image in enumerate(images)]
        for index, image in enumerate(pil_images):
            self.check(image, f"Image {index}")
        if self.mode == "resize":
            results: list[np.ndarray] = []
            for start in range(0, len(pil_images), self.batch_size):
                results.extend(self._predict_resized(pil_images[start : start + self.batch_size]))
            return results
        if self.mode == "native":
            results = [None] * len(pil_images)
            for group in self._same_size_batches(pil_images):
                for index, probability in zip(group, self._predict_native([pil_images[i] for i in group]), strict=True):
                    results[index] = probability
            return results
        return [self._predict_tiled(image) for image in pil_images]

    def _forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
            return self.model(pixel_values=pixel_values).logits.float()

    def _post_process(self, logits: torch.Tensor, sizes, do_resize: bool) -> list[np.ndarray]:
        # Native and tiled inputs are padded by the processor (do_pad=True); resize-mode inputs as it is configured.
        do_pad = None if do_resize else True
        outputs = self.processor.post_process_semantic_segmentation(
            logits, target_sizes=sizes, return_probabilities=True, do_resize=do_resize, do_pad=do_pad
        )
        return [output["probabilities"].float().cpu().numpy().astype(np.float32, copy=False) for output in outputs]

    def _predict_resized(self, images: list[Image.Image]) -> list[np.ndarray]:
        inputs = self.processor(images=images, do_resize=True, return_tensors="pt")
        logits = self._forward(inputs["pixel_values"])
        return self._post_process(logits, [_image_size(image) for image in images], do_resize=True)

    def _same_size_batches(self, images: list[Image.Image]) -> Iterable[list[int]]:
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(_image_size(image), []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                yield indices[start : start + self.batch_size]

    def _predict_native(self, images: list[Image.Image]) -> list[np.ndarray]:
        inputs = self.processor(images=images, do_resize=False, do_pad=True, return_tensors="pt")
        logits = self._forward(inputs["pixel_values"])
        return self._post_process(logits, [_image_size(image) for image in images], do_resize=False)

    def _predict_tiled(self, image: Image.Image) -> np.ndarray:
        height, width = _image_size(image)
        tile_h, tile_w = min(self.tile_size, height), min(self.tile_size, width)
        ys = tile_starts(height, self.tile_size, self.tile_overlap)
        xs = tile_starts(width, self.tile_size, self.tile_overlap)
        y_weights, x_weights = tile_weights(ys, tile_h), tile_weights(xs, tile_w)
        tiles = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]

        def predict_tiles(chunk: list[tuple[int, int]]) -> list[np.ndarray]:
            # Tiles are cut from the image and normalised one batch at a time, so that memory does not grow with
            # the image beyond the image itself and the two float32 accumulators.
            crops = [image.crop((xs[ix], ys[iy], xs[ix] + tile_w, ys[iy] + tile_h)) for iy, ix in chunk]
            # The processor's native-mode padding: one tile of the size of the image is exactly the native input.
            batch = self.processor(images=crops, do_resize=False, do_pad=True, return_tensors="pt")["pixel_values"]
            return self._post_process(self._forward(batch), [(tile_h, tile_w)] * len(chunk), do_resize=False)

        if len(tiles) == 1:  # the image fits in one tile: exactly the native prediction
            return predict_tiles(tiles)[0]
        accumulated = np.zeros((height, width), dtype=np.float32)
        total_weight = np.zeros((height, width), dtype=np.float32)
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            for (iy, ix), probability in zip(chunk, predict_tiles(chunk), strict=True):
                weight = np.outer(y_weights[iy], x_weights[ix]).astype(np.float32)
                window = (slice(ys[iy], ys[iy] + tile_h), slice(xs[ix], xs[ix] + tile_w))
                accumulated[window] += weight * probability
                total_weight[window] += weight
        return accumulated / total_weight


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
