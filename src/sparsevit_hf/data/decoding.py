"""Decoding the rows of IML data sets: images to `(H, W, 3)` uint8 RGB, masks to `(H, W)` bool.

Every file goes through the package's one decoder (`sparsevit_hf.image_decoding_sparsevit`, the rules the image
processor and prediction use too): EXIF orientation applied to images and masks alike, 16-bit and float data scaled
to 8 bits, alpha dropped, palettes and CMYK converted, masks binarised the official way (mean over channels above
half of full scale; bool and 0/1 masks are label maps). Here its errors become the data set errors that name the
file: `CorruptImageError` and `MissingFilesError`, and `MaskSizeMismatchError` when a mask's size differs from its
image's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from ..image_decoding_sparsevit import (
    ImageDecodingError,
    ImageFileNotFoundError,
    array_to_mask,
    array_to_rgb,
    decode_image,
    decode_mask,
)
from ..image_decoding_sparsevit import image_size as _image_size
from .errors import CorruptImageError, MaskSizeMismatchError, MissingFilesError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

# A path, encoded bytes, a `{"path", "bytes"}` dict (a `datasets.Image` value read with `decode=False`), a PIL image
# or an array.
ImageSource = str | os.PathLike | bytes | bytearray | Mapping[str, Any] | PILImage.Image | np.ndarray


def describe(source: Any) -> str:
    """A human-readable name for an image source (its path where there is one)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Mapping):
        return str(source["path"]) if source.get("path") else "<in-memory image bytes>"
    if isinstance(source, PILImage.Image):
        name = getattr(source, "filename", None)
        return str(name) if name else "<PIL image>"
    if isinstance(source, (bytes, bytearray)):
        return "<in-memory image bytes>"
    if isinstance(source, np.ndarray):
        return "<numpy array>"
    return repr(source)


def _file(source: ImageSource) -> Any:
    """What the decoder reads for a source: the bytes or path of a `datasets.Image` dict, else the source itself."""
    if isinstance(source, Mapping):
        if source.get("bytes") is not None:
            return source["bytes"]
        if source.get("path"):
            return source["path"]
        raise CorruptImageError(f"image entry has neither 'path' nor 'bytes': {source!r}")
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, PILImage.Image, np.ndarray)):
        raise TypeError(f"unsupported image source of type {type(source).__name__}")
    return source


def _decode(decoder: Callable[[Any, str], Any], source: ImageSource) -> Any:
    """`decoder(file, name)` with the decoder's errors turned into data set errors naming the file."""
    name = describe(source)
    try:
        return decoder(_file(source), name)
    except ImageFileNotFoundError as exc:
        raise MissingFilesError(f"image file not found: {name}") from exc
    except CorruptImageError:
        raise
    except ImageDecodingError as exc:
        raise CorruptImageError(f"cannot decode image {exc}") from exc


def load_image(source: ImageSource) -> np.ndarray:
    """Decode an image to an `(H, W, 3)` uint8 RGB array, upright (EXIF orientation applied).

    `source` may be a path, encoded bytes, a `{"path", "bytes"}` dict (a `datasets.Image` value read with
    `decode=False`), a PIL image or an array (`sparsevit_hf.image_decoding_sparsevit` states the rules).

    Raises:
        MissingFilesError: the file does not exist.
        CorruptImageError: the file is not a readable image or is truncated (message names it).
    """
    if isinstance(source, np.ndarray):  # never the caller's own array: transforms may write to the result
        return _decode(array_to_rgb, source.copy())
    return _decode(decode_image, source)


def load_mask(source: ImageSource) -> np.ndarray:
    """Decode a mask to an `(H, W)` bool array (True = manipulated), upright, the official way.

    The mean over the mask's channels (alpha dropped, palette applied) above half of full scale: `> 127.5` for 8-bit
    masks, so grey, RGB, palette and lossy JPEG masks all work. Boolean masks and integer masks holding only 0 and 1
    are label maps (full scale 1), read like their 0/255 versions. Arrays are accepted too.
    """
    return _decode(array_to_mask if isinstance(source, np.ndarray) else decode_mask, source)


def image_size(source: ImageSource) -> tuple[int, int]:
    """`(width, height)` of an image as it is decoded (upright), read from its header only."""
    if isinstance(source, np.ndarray):
        return int(source.shape[1]), int(source.shape[0])
    return _decode(_image_size, source)


def check_sizes(image_name: str, image_wh: tuple[int, int], mask_name: str, mask_wh: tuple[int, int]) -> None:
    """Raise `MaskSizeMismatchError` naming both files when a mask's size differs from its image's."""
    if tuple(image_wh) == tuple(mask_wh):
        return
    hint = ""
    if tuple(image_wh) == tuple(mask_wh)[::-1]:
        hint = (
            "; width and height are swapped: both files are read with their EXIF orientation applied, so the image "
            "and its mask disagree on orientation (rotate the mask, or strip the image's orientation tag)"
        )
    raise MaskSizeMismatchError(
        f"mask {mask_name} is {mask_wh[0]}x{mask_wh[1]} (width x height) but its image {image_name} is "
        f"{image_wh[0]}x{image_wh[1]}{hint}"
    )


def load_example(
    example: Mapping[str, Any],
    *,
    image_column: str = "image",
    mask_column: str = "mask",
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one row into `(image uint8 (H, W, 3), mask bool (H, W))`.

    Works on rows read with `decode=False` (`{"path", "bytes"}` dicts; see `with_decoding`) and on decoded rows (PIL
    images). An authentic row (mask `None`) gets an all-false mask.

    Raises:
        CorruptImageError: image or mask cannot be decoded (message names the file).
        MaskSizeMismatchError: mask and image sizes differ (message names both files and sizes).
    """
    image_src = example[image_column]
    mask_src = example.get(mask_column)
    image = load_image(image_src)
    if mask_src is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    mask = load_mask(mask_src)
    check_sizes(
        describe(image_src), (image.shape[1], image.shape[0]), describe(mask_src), (mask.shape[1], mask.shape[0])
    )
    return image, mask


class _DecodingTransform:
    """Batch transform for `Dataset.with_transform` (a class, so that it pickles into DataLoader workers)."""

    def __init__(
        self,
        transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
        image_column: str,
        mask_column: str,
    ):
        self.transform = transform
        self.image_column = image_column
        self.mask_column = mask_column

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = dict(batch)
        images, masks = [], []
        for image_src, mask_src in zip(batch[self.image_column], batch[self.mask_column]):
            image, mask = load_example({"image": image_src, "mask": mask_src})
            if self.transform is not None:
                image, mask = self.transform(image, mask)
            images.append(image)
            masks.append(mask)
        out[self.image_column] = images
        out[self.mask_column] = masks
        return out


def with_decoding(
    ds: datasets.Dataset,
    transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    image_column: str = "image",
    mask_column: str = "mask",
) -> datasets.Dataset:
    """A view of `ds` whose rows hold decoded numpy arrays (lazily, on access).

    `ds[i]["image"]` is `(H, W, 3)` uint8, `ds[i]["mask"]` `(H, W)` bool (all false for authentic rows), decoded with
    `load_example` (clear errors) and then passed through `transform(image, mask) -> (image, mask)` if given (for
    example `sparsevit_hf.data.augmentations.training_transforms`). Other columns pass through.
    """
    from datasets import Image

    raw = ds.cast_column(image_column, Image(decode=False)).cast_column(mask_column, Image(decode=False))
    return raw.with_transform(_DecodingTransform(transform, image_column, mask_column))
