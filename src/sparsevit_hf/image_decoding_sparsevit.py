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
"""How SparseViT reads image and mask files: the one set of rules used by training, evaluation and prediction.

The data loaders, the inference code and the image processor all decode through this module, so a file gives the
same pixels and the same mask everywhere. It ships as remote code next to `image_processing_sparsevit.py` (which
imports it) and depends only on NumPy and Pillow.

Files and PIL images:

- EXIF orientation is applied, to images and masks alike (as image viewers, transformers' `load_image` and
  `datasets.Image` do): an image and its mask stay aligned when both are read upright. Multi-frame files give their
  first frame.
- Channels: alpha is dropped (not composited, like OpenCV's and Pillow's RGB decoding in the official code);
  palettes are applied; CMYK and YCbCr use Pillow's conversion; grey and bilevel images are replicated to RGB.
- Depth, to 8 bits: 16-bit data (`I;16*`) is scaled, `round(v / 257)`; mode `I` (32-bit integers, for example
  16-bit PGM or integer TIFF) holds 8-bit data when every value is within 0-255, 16-bit data when within 0-65535,
  and is refused otherwise; float data (`F`) must lie in [0, 1] and becomes `round(255 v)`.

Masks are read the same way, at their own depth, and binarised the official way: a pixel is manipulated when the
mean over its channels is above half of full scale (127.5 for 8 bits, 32767.5 for 16 bits, 0.5 for floats), so grey,
RGB, palette and lossy JPEG masks all work. Boolean masks and integer masks holding only 0 and 1 are label maps
whose full scale is 1: they give the same mask as their 0/255 versions.

Arrays (NumPy, `(H, W)` or `(H, W, C)`): the dtype states the range. `uint8` is 0-255, `uint16` 0-65535, floats must
be in [0, 1] (values at most one 8-bit level outside are clipped), `bool` is 0/1, other integer types must hold
0-255.
"""

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Extensions (lower case) of the files picked up when a folder is scanned; a file named explicitly is read whatever
# its extension.
IMAGE_EXTENSIONS = frozenset(
    ".bmp .dib .gif .j2k .jfif .jp2 .jpe .jpeg .jpg .pbm .pgm .png .pnm .ppm .tga .tif .tiff .webp".split()
)
_ORIENTATION_TAG = 0x0112
_FLOAT_TOLERANCE = 1.0 / 255.0
_CHANNEL_COUNTS = (1, 3, 4)


class ImageDecodingError(ValueError):
    """A file or an image cannot be decoded under these rules; the message names it and says why."""


class ImageFileNotFoundError(ImageDecodingError, FileNotFoundError):
    """An image file does not exist."""


def describe(source) -> str:
    """The name of an image source in messages: its path where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image) and getattr(source, "filename", None):
        return str(source.filename)
    return "<PIL image>" if isinstance(source, Image.Image) else "<in-memory image>"


def _open_lazily(source, name: str, read_file: bool = False) -> Image.Image:
    """`Image.open` of a path, encoded bytes or a binary file object; nothing is decoded yet. With `read_file`, a path
    is read into memory first, so that no file stays open whatever the format (multi-frame files keep theirs)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if "://" in path:
            raise ImageDecodingError(f"{name}: a URL; only local files are read (download it first).")
        if not os.path.exists(path):
            raise ImageFileNotFoundError(f"{name}: no such file.")
        if os.path.isdir(path):
            raise ImageDecodingError(f"{name}: a folder, not an image file.")
        source = path
        if read_file:
            try:
                with open(path, "rb") as file:
                    source = io.BytesIO(file.read())
            except OSError as error:
                raise ImageDecodingError(f"{name}: cannot read the file ({error}).") from error
    elif isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        return Image.open(source)
    except UnidentifiedImageError as error:
        raise ImageDecodingError(f"{name}: not an image file Pillow can read.") from error
    except Image.DecompressionBombError as error:
        raise ImageDecodingError(f"{name}: {error} Raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file.") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodingError(f"{name}: cannot open the image ({error}).") from error


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright). A PNG whose EXIF chunk follows the pixels counts as upright until it is
    decoded: finding that chunk means decoding the image, and `image_size` reads headers only."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except (OSError, ValueError, SyntaxError, TypeError):  # damaged EXIF: nothing to apply
        return 1


def _load(image: Image.Image, name: str) -> Image.Image:
    """Decode the pixels of an opened image, upright."""
    try:
        image.load()
        if _orientation(image) in (2, 3, 4, 5, 6, 7, 8):
            image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise ImageDecodingError(f"{name}: {error} Raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file.") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodingError(f"{name}: cannot read the image, unreadable or truncated file ({error}).") from error
    return image


def open_image(source, name: str | None = None) -> Image.Image:
    """Read an image (a path, encoded bytes, a binary file object or a PIL image) completely and upright.

    A PIL image is returned as it is when it is upright already, otherwise as an upright copy.

    Raises:
        ImageFileNotFoundError: the path does not exist.
        ImageDecodingError: anything else (not an image, truncated, too large for Pillow's decompression-bomb guard);
            the message names the file.
    """
    name = name or describe(source)
    if isinstance(source, Image.Image):
        return _load(source, name)
    return _load(_open_lazily(source, name, read_file=True), name)


def image_size(source, name: str | None = None) -> tuple[int, int]:
    """`(width, height)` of an image as it is decoded (upright), from the file's header only."""
    if isinstance(source, Image.Image):
        (width, height), orientation = source.size, _orientation(source)
    else:
        with _open_lazily(source, name or describe(source)) as image:
            (width, height), orientation = image.size, _orientation(image)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def pil_to_array(image: Image.Image, name: str = "image") -> np.ndarray:
    """The pixels of a PIL image as an `(H, W)` or `(H, W, 3)` array at their own depth (`uint8`, `uint16`,
    `float32` or `bool`), writable: alpha dropped, palettes applied, other colour spaces converted to RGB."""
    mode = image.mode
    try:
        if mode in ("1", "L", "RGB", "F"):
            return np.array(image)
        if mode.startswith("I;16") and not mode.endswith("S"):
            return np.asarray(image).astype(np.uint16)
        if mode.startswith("I"):  # 32-bit (or signed 16-bit) integers: the values say whether they are 8 or 16 bit
            array = np.asarray(image).astype(np.int64)
            low, high = _range(array)
            if low < 0 or high > 65535:
                raise ImageDecodingError(
                    f"{name}: integer image (PIL mode {mode!r}) with values in [{low}, {high}]; only 8-bit (0-255) "
                    "and 16-bit (0-65535) data can be read."
                )
            return array.astype(np.uint8 if high <= 255 else np.uint16)
        if mode in ("LA", "La"):
            return np.array(image.convert("LA"))[..., 0]
        if mode in ("RGBA", "RGBa", "RGBX", "P", "PA"):
            return np.array(image.convert("RGBA"))[..., :3]
        return np.array(image.convert("RGB"))
    except ImageDecodingError:
        raise
    except (OSError, ValueError) as error:
        raise ImageDecodingError(f"{name}: cannot convert PIL mode {mode!r} to RGB ({error}).") from error


def channels_last(
    array: np.ndarray, name: str = "image", channels_first: bool | None = None, prefer_channels_first: bool = False
) -> np.ndarray:
    """An `(H, W)` or `(H, W, C)` view of a 2-D or 3-D array whose channels (1, 3 or 4) come first or last:
    `channels_first` says which, or else the axis of size 1, 3 or 4 (`prefer_channels_first` breaks a tie)."""
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ImageDecodingError(
            f"{name} has shape {tuple(array.shape)}; expected (height, width), (height, width, channels) or "
            "(channels, height, width). Pass a batch as a list."
        )
    if channels_first is None:
        first_ok, last_ok = array.shape[0] in _CHANNEL_COUNTS, array.shape[-1] in _CHANNEL_COUNTS
        if not (first_ok or last_ok):
            raise ImageDecodingError(
                f"{name} has {min(array.shape[0], array.shape[-1])} channels (shape {tuple(array.shape)}); expected 1 "
                "(grayscale), 3 (RGB) or 4 (RGBA) channels, first or last. Pass a batch of grayscale images as a list."
            )
        channels_first = prefer_channels_first if first_ok and last_ok else first_ok
    return np.moveaxis(array, 0, -1) if channels_first else array


def _range(array: np.ndarray) -> tuple:
    """`(min, max)` of an array, `(0, 0)` when it is empty."""
    return (array.min().item(), array.max().item()) if array.size else (0, 0)


def check_channels(array: np.ndarray, name: str) -> np.ndarray:
    """An `(H, W, C)` view of an `(H, W)` or `(H, W, C)` array with 1, 3 or 4 channels."""
    array = array[..., None] if array.ndim == 2 else array
    if array.ndim != 3:
        raise ImageDecodingError(f"{name} has shape {tuple(array.shape)}; expected (height, width[, channels]).")
    if array.shape[-1] not in _CHANNEL_COUNTS:
        raise ImageDecodingError(
            f"{name} has {array.shape[-1]} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels."
        )
    return array


def canonical_pixels(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Pixel values by dtype: `uint8` as is; `uint16`, float and `bool` as float32 in [0, 1]; other integer types
    holding 0-255 as `uint8`. Raises `ImageDecodingError` for anything else."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.float32)
    if dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(dtype, np.integer):
        low, high = _range(array)
        if low < 0 or high > 255:
            raise ImageDecodingError(
                f"{name} has integer dtype {dtype} with values in [{low}, {high}]; pass 8-bit data as uint8 (0-255) "
                "and 16-bit data as uint16 (0-65535)."
            )
        return array.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageDecodingError(f"{name} contains non-finite pixel values (NaN or inf).")
        low, high = _range(array)
        if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
            raise ImageDecodingError(
                f"{name} is a float image with values in [{low:g}, {high:g}]; float images must be in [0, 1] "
                "(pass 0-255 data as uint8)."
            )
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise ImageDecodingError(f"{name} has unsupported dtype {dtype}.")


def to_8_bit(array: np.ndarray, name: str = "image") -> np.ndarray:
    """`uint8` pixels of an array under the rules of `canonical_pixels` (16-bit: `round(v / 257)`)."""
    if array.dtype == np.uint16:  # in integers: exact rounding of v * 255 / 65535
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    pixels = canonical_pixels(array, name)
    return pixels if pixels.dtype == np.uint8 else np.rint(pixels * np.float32(255.0)).astype(np.uint8)


def array_to_rgb(array: np.ndarray, name: str = "image") -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of an `(H, W)` or `(H, W, 1|3|4)` array (grey replicated, alpha dropped)."""
    array = to_8_bit(check_channels(np.asarray(array), name), name)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def array_to_mask(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """`(H, W)` bool mask of an `(H, W)` or `(H, W, 1|3|4)` array: alpha dropped, then the mean over channels above
    half of full scale (see the module docstring; bool and 0/1 integer masks have full scale 1)."""
    array = check_channels(np.asarray(array), name)
    array = array[..., :3] if array.shape[-1] == 4 else array
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ImageDecodingError(f"{name} contains non-finite values (NaN or inf).")
    low, high = _range(array)
    if np.issubdtype(array.dtype, np.floating):
        if low < 0.0 or high > 1.0:
            raise ImageDecodingError(
                f"{name} is a float mask with values in [{low:g}, {high:g}]; float masks must be in [0, 1] (pass "
                "8-bit masks as uint8)."
            )
        full_scale = 1.0
    elif array.dtype == np.bool_ or (np.issubdtype(array.dtype, np.integer) and 0 <= low and high <= 1):
        full_scale = 1.0  # a 0/1 label map
    elif array.dtype == np.uint16:
        full_scale = 65535.0
    else:
        array, full_scale = canonical_pixels(array, name), 255.0
    return array.astype(np.float64).mean(axis=-1) > full_scale / 2


def decode_pixels(source, name: str | None = None) -> np.ndarray:
    """The pixels of an image file (path, encoded bytes, binary file object) or a PIL image at their own depth,
    upright (`pil_to_array` of `open_image`). Raises `ImageDecodingError` (or `ImageFileNotFoundError`) naming it."""
    name = name or describe(source)
    return pil_to_array(open_image(source, name), name)


def decode_image(source, name: str | None = None) -> np.ndarray:
    """Decode an image file or a PIL image to `(H, W, 3)` uint8 RGB, upright (errors as `decode_pixels`)."""
    name = name or describe(source)
    return array_to_rgb(decode_pixels(source, name), name)


def decode_mask(source, name: str | None = None) -> np.ndarray:
    """Decode a mask file or PIL image to an `(H, W)` bool array (True = manipulated), upright."""
    name = name or describe(source)
    return array_to_mask(decode_pixels(source, name), name)


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDecodingError",
    "ImageFileNotFoundError",
    "array_to_mask",
    "array_to_rgb",
    "canonical_pixels",
    "channels_last",
    "check_channels",
    "decode_image",
    "decode_mask",
    "decode_pixels",
    "describe",
    "image_size",
    "open_image",
    "pil_to_array",
    "to_8_bit",
]
