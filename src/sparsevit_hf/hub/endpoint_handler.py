"""Inference Endpoints handler of a SparseViT model repository.

`sparsevit_hf.hub.write_endpoint_files` copies this file, unchanged, to the root of every model folder the project
writes, as `handler.py` (the name Inference Endpoints looks for), and the Space generator copies it next to `app.py`.
It needs transformers, torch, safetensors, Pillow and NumPy only: the model and its image processor load with the
package's classes when `sparsevit_hf` is installed, and otherwise through the code files stored in the folder
(`trust_remote_code=True`). Nothing else comes from the package, so the resolution modes of `sparsevit-predict`
are written out here again; the test suite checks that both give the same maps.

Request: `{"inputs": image, "parameters": {"threshold": 0.5, "mode": "resize"}}`, where `image` is a PIL image (what
the endpoint toolkit passes for an `image/*` request body), raw image bytes, or a base64 string (plain or a
`data:` URL; what `huggingface_hub.InferenceClient.image_segmentation` sends when it has parameters). Parameters,
all optional:

- `threshold` (default 0.5; `mask_threshold` is accepted as its other name): a pixel is manipulated when its
  probability is strictly above it;
- `mode`: `resize` (the official 512 x 512 protocol), `native` (the whole image at its resolution, at most 4096 x
  4096 pixels) or `tiled` (overlapping 512-pixel tiles at full resolution), as in `sparsevit-predict`;
- `subtask`: `semantic` or `panoptic`, accepted for the image-segmentation task's clients; both give this output.

Response (the image-segmentation format of Inference Providers, `ImageSegmentationOutputElement`): one entry per
label present in the thresholded map, in label order, `{"label": str, "score": float, "mask": str}`. `mask` is a
base64 PNG (mode L, 255 inside the region, 0 outside) at the image's size; `score` is the mean, over the mask's
pixels, of the probability of the mask's label (`p` for "manipulated", `1 - p` for "authentic"), the same score as
the transformers pipeline's. Bad input raises `ValueError` naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

MODES = ("resize", "native", "tiled")
DEFAULT_THRESHOLD = 0.5
# The backbone downsamples by 32: smaller images have no pixel left at its last stage.
MIN_IMAGE_SIDE = 32
# The native mode holds the whole image in memory at once; larger images must use the tiled mode.
MAX_NATIVE_PIXELS = 4096 * 4096
TILE_SIZE = 512
TILE_OVERLAP = 128
PARAMETERS = ("threshold", "mask_threshold", "mode", "subtask")
SUBTASKS = ("semantic", "panoptic")


class EndpointHandler:
    """Load the model folder at `path` once; each call localizes the manipulations of one image."""

    def __init__(self, path: str = "", device: str | None = None):
        try:
            import sparsevit_hf  # noqa: F401  (registers the installed classes with the Auto classes)
        except ImportError:
            pass  # the classes come from the folder's own code files
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = AutoModelForSemanticSegmentation.from_pretrained(path, trust_remote_code=True)
        self.model = model.to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=True)
        self.id2label = {int(key): str(value) for key, value in self.model.config.id2label.items()}
        self.divisor = int(getattr(self.model.config, "pad_size_divisor", 32))

    def __call__(self, data: dict) -> list[dict]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('The request must be a JSON object with "inputs" (the image) and optional "parameters".')
        threshold, mode = parse_parameters(data.get("parameters"))
        image = decode_image(data["inputs"])
        return segments(self.probabilities(image, mode), threshold, self.id2label)

    def probabilities(self, image: Image.Image, mode: str = "resize") -> np.ndarray:
        """Per-pixel manipulation probabilities, float32 `(height, width)` in [0, 1], at the image's size."""
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
        check_size(image, mode)
        size = (image.height, image.width)
        if mode == "resize":
            inputs = self.processor(images=image, do_resize=True, return_tensors="pt")
            return self._post_process(self._forward(inputs["pixel_values"]), size, do_resize=True)
        if mode == "native":
            inputs = self.processor(images=image, do_resize=False, do_pad=True, return_tensors="pt")
            return self._post_process(self._forward(inputs["pixel_values"]), size, do_resize=False)
        return self._tiled(image)

    def _forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            pixel_values = pixel_values.to(self.device, next(self.model.parameters()).dtype)
            return self.model(pixel_values=pixel_values).logits.float()

    def _post_process(self, logits: torch.Tensor, size: tuple[int, int], do_resize: bool) -> np.ndarray:
        [output] = self.processor.post_process_semantic_segmentation(
            logits, target_sizes=[size], return_probabilities=True, do_resize=do_resize
        )
        return output["probabilities"].float().cpu().numpy().astype(np.float32, copy=False)

    def _tiled(self, image: Image.Image) -> np.ndarray:
        # Overlapping full-resolution tiles, blended with linear ramps over the overlaps; an image that fits in one
        # tile is predicted exactly as in the native mode.
        height, width = image.height, image.width
        tile_h, tile_w = min(TILE_SIZE, height), min(TILE_SIZE, width)
        ys, xs = tile_starts(height), tile_starts(width)
        y_weights, x_weights = tile_weights(ys, tile_h), tile_weights(xs, tile_w)
        pad_h, pad_w = -tile_h % self.divisor, -tile_w % self.divisor
        accumulated = np.zeros((height, width), dtype=np.float32)
        total_weight = np.zeros((height, width), dtype=np.float32)
        for iy, top in enumerate(ys):
            for ix, left in enumerate(xs):
                crop = image.crop((left, top, left + tile_w, top + tile_h))
                pixels = self.processor(images=crop, do_resize=False, do_pad=False, return_tensors="pt")
                # the same zero padding (the ImageNet mean after normalisation) as the processor's native mode
                pixel_values = F.pad(pixels["pixel_values"], (0, pad_w, 0, pad_h))
                probability = self._post_process(self._forward(pixel_values), (tile_h, tile_w), do_resize=False)
                if len(ys) * len(xs) == 1:
                    return probability
                weight = np.outer(y_weights[iy], x_weights[ix]).astype(np.float32)
                window = (slice(top, top + tile_h), slice(left, left + tile_w))
                accumulated[window] += weight * probability
                total_weight[window] += weight
        return accumulated / total_weight


def tile_starts(length: int, tile_size: int = TILE_SIZE, overlap: int = TILE_OVERLAP) -> list[int]:
    """Offsets of the fewest tiles covering `[0, length)` whose overlaps are at least `overlap`, evenly spread."""
    if length <= tile_size:
        return [0]
    count = math.ceil((length - tile_size) / (tile_size - overlap)) + 1
    return [round(index * (length - tile_size) / (count - 1)) for index in range(count)]


def tile_weights(starts: list[int], tile_length: int) -> list[np.ndarray]:
    """Blending weight of each tile along one axis: linear ramps over its overlaps with its neighbours, else 1."""
    weights = []
    position = np.arange(tile_length, dtype=np.float64) + 0.5
    for index, start in enumerate(starts):
        weight = np.ones(tile_length, dtype=np.float64)
        before = starts[index - 1] + tile_length - start if index > 0 else 0
        after = start + tile_length - starts[index + 1] if index + 1 < len(starts) else 0
        if before > 0:
            weight = np.minimum(weight, position / before)
        if after > 0:
            weight = np.minimum(weight, (tile_length - position) / after)
        weights.append(weight)
    return weights


def parse_parameters(parameters) -> tuple[float, str]:
    """`(threshold, mode)` from the request's `parameters` (a dict or None)."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValueError(f'"parameters" must be a JSON object, got {type(parameters).__name__}.')
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown}; supported: {', '.join(PARAMETERS)}.")
    names = ("threshold", "mask_threshold")
    thresholds = {name: parameters[name] for name in names if parameters.get(name) is not None}
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"Parameter {name!r} must be a number in [0, 1], got {value!r}.")
    if len(set(thresholds.values())) > 1:
        raise ValueError(f"'threshold' and 'mask_threshold' name the same setting; they differ: {thresholds}.")
    mode = parameters.get("mode")
    mode = "resize" if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"Parameter 'mode' must be one of {', '.join(MODES)}, got {mode!r}.")
    subtask = parameters.get("subtask")
    if subtask is not None and subtask not in SUBTASKS:
        raise ValueError(f"Parameter 'subtask' must be one of {', '.join(SUBTASKS)}, got {subtask!r}.")
    threshold = next(iter(thresholds.values()), DEFAULT_THRESHOLD)
    return float(threshold), mode


def decode_image(inputs) -> Image.Image:
    """An 8-bit RGB PIL image from a PIL image, raw image bytes or a base64 string (EXIF orientation applied)."""
    if isinstance(inputs, Image.Image):
        return _upright_rgb(inputs, "The image")
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(inputs), "The request body")
    if isinstance(inputs, str):
        return _open_bytes(_decode_base64(inputs), "The base64 image")
    raise ValueError(f'"inputs" must be an image: raw image bytes or a base64 string, got {type(inputs).__name__}.')


def _decode_base64(text: str) -> bytes:
    text = text.strip()
    if text.startswith(("http://", "https://")):
        raise ValueError('"inputs" is a URL; the handler does not download images. Send the image bytes or base64.')
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise ValueError('"inputs" is a data URL without base64 content ("data:<type>;base64,...").')
    text = "".join(text.split())
    if not text:
        raise ValueError('"inputs" is an empty string; send an image as raw bytes or as a base64 string.')
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f'"inputs" is not valid base64 ({error}).') from None


def _open_bytes(data: bytes, what: str) -> Image.Image:
    if not data:
        raise ValueError(f"{what} is empty; send an image file (JPEG, PNG, WebP, TIFF, ...).")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _upright_rgb(image, what)
    except UnidentifiedImageError:
        raise ValueError(f"{what} ({len(data)} bytes) is not an image file Pillow can read.") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{what} is too large to decode safely ({error}).") from None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{what} ({len(data)} bytes) is a truncated or corrupt image ({error}).") from None


def _upright_rgb(image: Image.Image, what: str) -> Image.Image:
    try:
        return to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError) as error:
        raise ValueError(f"{what} cannot be converted to 8-bit RGB ({error}).") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: alpha dropped, palettes applied, 16-bit scaled (value / 257), float images in [0, 1] scaled."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode.startswith("I"):
        array = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return Image.fromarray(np.rint(array * 255.0).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBa", "La"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def check_size(image: Image.Image, mode: str) -> None:
    width, height = image.size
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise ValueError(
            f"The image is {width} x {height} pixels (width x height); SparseViT needs at least {MIN_IMAGE_SIDE} x "
            f"{MIN_IMAGE_SIDE} pixels."
        )
    if mode == "native" and width * height > MAX_NATIVE_PIXELS:
        raise ValueError(
            f"The image is {width} x {height} pixels, more than the native mode's {MAX_NATIVE_PIXELS} pixels; use "
            "mode 'tiled'."
        )


def segments(probability: np.ndarray, threshold: float, id2label: dict[int, str]) -> list[dict]:
    """The image-segmentation output: one `{"label", "score", "mask"}` per label present, in label order."""
    manipulated = probability > threshold
    results = []
    for label_id, region, label_probability in ((0, ~manipulated, 1.0 - probability), (1, manipulated, probability)):
        if not region.any():
            continue
        picture = Image.fromarray(region.astype(np.uint8) * 255, mode="L")
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        results.append(
            {
                "label": id2label[label_id],
                "score": float(np.mean(label_probability[region], dtype=np.float64)),
                "mask": base64.b64encode(buffer.getvalue()).decode("ascii"),
            }
        )
    return results
