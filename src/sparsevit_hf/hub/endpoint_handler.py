"""Inference Endpoints handler of a SparseViT model repository.

`sparsevit_hf.hub.write_endpoint_files` copies this file, unchanged, to the root of every model folder the project
writes, as `handler.py` (the name Inference Endpoints looks for), and the Space generator copies it next to `app.py`.
It needs transformers, torch, safetensors, Pillow and NumPy only: the model and its image processor load with the
package's classes when `sparsevit_hf` is installed, and otherwise through the code files stored in the folder
(`trust_remote_code=True`). Images are decoded and predicted by the modules that come with the processor (the
package's one decoder, `image_decoding_sparsevit`, and its resolution modes, `localization_sparsevit`), so the
handler gives what `sparsevit-predict` gives; this file holds only the request and response formats.

Request: `{"inputs": image, "parameters": {"threshold": 0.5, "mode": "resize"}}`, where `image` is a PIL image (what
the endpoint toolkit passes for an `image/*` request body), raw image bytes, or a base64 string (plain or a
`data:` URL; what `huggingface_hub.InferenceClient.image_segmentation` sends when it has parameters). Parameters,
all optional:

- `threshold` (default 0.5; `mask_threshold` is accepted as its other name): a pixel is manipulated when its
  probability is strictly above it;
- `mode`: `resize` (the official 512 x 512 protocol), `native` (the whole image at its resolution, at most 4096 x
  4096 pixels) or `tiled` (overlapping 512-pixel tiles at full resolution), the modes of `sparsevit-predict`;
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
import importlib
import io

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

DEFAULT_THRESHOLD = 0.5
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
        self.decoding = sibling_module(self.processor, "image_decoding_sparsevit")
        self.localization = sibling_module(self.processor, "localization_sparsevit")
        self.modes = self.localization.MODES
        # The native mode holds the whole image in memory at once; larger images must use the tiled mode.
        self.max_pixels = self.localization.DEFAULT_MAX_PIXELS
        self.id2label = {int(key): str(value) for key, value in self.model.config.id2label.items()}

    def __call__(self, data: dict) -> list[dict]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('The request must be a JSON object with "inputs" (the image) and optional "parameters".')
        threshold, mode = parse_parameters(data.get("parameters"), self.modes)
        image = self.decode_image(data["inputs"])
        return segments(self.probabilities(image, mode), threshold, self.id2label)

    def probabilities(self, image: Image.Image, mode: str = "resize") -> np.ndarray:
        """Per-pixel manipulation probabilities, float32 `(height, width)` in [0, 1], at the image's size."""
        [probability] = self.localization.probability_maps(
            self.model, self.processor, [image], mode, max_pixels=self.max_pixels
        )
        return probability

    def decode_image(self, inputs) -> Image.Image:
        """An upright 8-bit RGB PIL image, by the package's decoder, from a PIL image, raw image bytes or a base64
        string."""
        if isinstance(inputs, Image.Image):
            source, what = inputs, "The image"
        elif isinstance(inputs, (bytes, bytearray, memoryview)):
            source, what = bytes(inputs), "The request body"
            if not source:
                raise ValueError(f"{what} is empty; send an image file (JPEG, PNG, WebP, TIFF, ...).")
        elif isinstance(inputs, str):
            source, what = _decode_base64(inputs), "The base64 image"
        else:
            raise ValueError(
                f'"inputs" must be an image: raw image bytes or a base64 string, got {type(inputs).__name__}.'
            )
        return Image.fromarray(self.decoding.decode_image(source, what), mode="RGB")


def sibling_module(processor, name: str):
    """The module `name` of the code the processor was loaded from: the package's, or the folder's code files (which
    the Auto classes import as one package, with every module the processor imports)."""
    package = type(processor).__module__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError as error:
        raise ValueError(
            f"The processor's code ({type(processor).__module__}) comes without {name}.py; save the model folder "
            "again with the current sparsevit-hf."
        ) from error


def parse_parameters(parameters, modes: tuple[str, ...]) -> tuple[float, str]:
    """`(threshold, mode)` from the request's `parameters` (a dict or None); `mode` is one of `modes`."""
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
    if mode not in modes:
        raise ValueError(f"Parameter 'mode' must be one of {', '.join(modes)}, got {mode!r}.")
    subtask = parameters.get("subtask")
    if subtask is not None and subtask not in SUBTASKS:
        raise ValueError(f"Parameter 'subtask' must be one of {', '.join(SUBTASKS)}, got {subtask!r}.")
    threshold = next(iter(thresholds.values()), DEFAULT_THRESHOLD)
    return float(threshold), mode


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
