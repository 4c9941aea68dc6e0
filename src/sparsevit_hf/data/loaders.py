"""Image manipulation localization (IML) data sets as `datasets.Dataset` objects.

Every loader returns a data set with the same three columns:

* `image` -- `datasets.Image` (decoded lazily, only when a row is read),
* `mask` -- `datasets.Image`, or `None` for an authentic image,
* `label` -- `datasets.ClassLabel` `["authentic", "tampered"]` (0 / 1).

The one entry point is `load_iml_dataset` (or `load_iml_bundle`, which also
returns the sizes of the parts of a combined data set for balanced sampling). Accepted specs:

`"path/to/folder"` with `Tp/` and `Gt/` (and optionally `Au/`)
    Tampered images in `Tp/`, their masks in `Gt/`, paired by file stem whatever the
    extensions; a mask stem may carry a `_gt` / `_mask` (or `-gt` / `-mask`) suffix.
    Authentic images in `Au/` (label 0, no mask). Sub-folders are searched and must be
    mirrored between `Tp/` and `Gt/`. Non-image files are ignored.
`"pairs.json"`
    A JSON list of `[image, mask]` pairs; `mask` may be `"Negative"` (or `null`) for
    an authentic image. Relative paths are relative to the JSON file's folder.
`"combined.json"` (or a Python list of specs)
    A JSON list of `[kind, path]` entries, `kind` one of `folder` (aliases
    `ManiDataset`, `mani`), `json` (`JsonDataset`), `datasets` (`hf`,
    `HFDataset`, `imagefolder`) or `synthetic`. The parts are concatenated;
    `balanced_epoch_indices` / `BalancedSampler` draw the same number of
    samples from every part in each epoch (1,840 in the CAT-Net protocol).
a `datasets` data set
    A `save_to_disk` folder, an `imagefolder` folder (`metadata.jsonl` / `.csv` with
    `file_name` and `mask_file_name`), or a Hub id (needs network: the error of
    `datasets.load_dataset` is re-raised with an explanation when offline). Column
    names are configurable; without a label column the label is derived from mask emptiness.
`"synthetic"`, `"synthetic:test"`, `"synthetic:train:num_images=200,size=256,seed=1"`
    The built-in synthetic tampering data set (`sparsevit_hf.synthetic`), in memory.

Decoding follows the official recipe: images are converted to RGB (16-bit images are scaled to
8 bits, CMYK and palette images converted), masks are binarised as `mean(RGB) > 127.5`
(`load_mask`). EXIF orientation tags are *not* applied, so that images and masks stay
pixel-aligned as they were annotated. Use `load_example` or `with_decoding` for
training-time reading: they raise `CorruptImageError` naming the file for unreadable or
truncated images and `MaskSizeMismatchError` naming both files when a mask's size differs
from its image's. `validate_dataset` checks a whole data set cheaply from image headers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_SUFFIXES",
    "DEFAULT_PER_DATASET",
    "LABEL_NAMES",
    "IMLDatasetError",
    "CorruptImageError",
    "MaskSizeMismatchError",
    "MissingFilesError",
    "UnpairedImagesError",
    "IMLDatasetBundle",
    "ValidationReport",
    "BalancedSampler",
    "iml_features",
    "load_iml_dataset",
    "load_iml_bundle",
    "load_image",
    "load_mask",
    "image_size",
    "load_example",
    "with_decoding",
    "validate_dataset",
    "balanced_epoch_indices",
]

# File extensions (lower case) recognised as images when scanning folders.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)
# Suffixes a mask's file stem may carry in addition to its image's stem (compared case-insensitively).
MASK_SUFFIXES = ("_gt", "_mask", "-gt", "-mask")
# Samples drawn from each part of a combined data set per epoch in the CAT-Net protocol.
DEFAULT_PER_DATASET = 1840
# Names of the `label` column's classes.
LABEL_NAMES = ("authentic", "tampered")
# Strings that mark an authentic image in place of a mask path in JSON pair lists.
NEGATIVE_MASK = "negative"

_SHOW = 10  # how many file names an error message lists


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
class IMLDatasetError(ValueError):
    """A data set spec or its files are not usable (the message says which file and why)."""


class MissingFilesError(IMLDatasetError, FileNotFoundError):
    """Files or folders named by a data set spec do not exist."""


class UnpairedImagesError(IMLDatasetError):
    """Tampered images without a mask (see `authentic_unpaired`)."""


class CorruptImageError(IMLDatasetError, OSError):
    """An image or mask file cannot be decoded (unreadable, truncated, unknown format)."""


class MaskSizeMismatchError(IMLDatasetError):
    """A mask's size differs from its image's size."""


def _list_some(items: Sequence[Any], show: int = _SHOW) -> str:
    names = ", ".join(str(x) for x in items[:show])
    if len(items) > show:
        names += f", ... ({len(items) - show} more)"
    return names


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------
ImageSource = str | os.PathLike | bytes | bytearray | Mapping[str, Any] | PILImage.Image | np.ndarray


def _describe(source: Any) -> str:
    """A human-readable name for an image source (its path where there is one)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Mapping):
        if source.get("path"):
            return str(source["path"])
        return "<in-memory image bytes>"
    if isinstance(source, PILImage.Image):
        name = getattr(source, "filename", None)
        return str(name) if name else "<PIL image>"
    if isinstance(source, (bytes, bytearray)):
        return "<in-memory image bytes>"
    if isinstance(source, np.ndarray):
        return "<numpy array>"
    return repr(source)


def _open(source: ImageSource) -> PILImage.Image:
    """Open (not decode) an image source with PIL; errors name the file."""
    if isinstance(source, PILImage.Image):
        return source
    name = _describe(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            return PILImage.open(os.fspath(source))
        if isinstance(source, (bytes, bytearray)):
            return PILImage.open(io.BytesIO(source))
        if isinstance(source, Mapping):
            if source.get("bytes") is not None:
                return PILImage.open(io.BytesIO(source["bytes"]))
            if source.get("path"):
                return PILImage.open(source["path"])
            raise CorruptImageError(f"image entry has neither 'path' nor 'bytes': {source!r}")
    except FileNotFoundError as exc:
        raise MissingFilesError(f"image file not found: {name}") from exc
    except CorruptImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise CorruptImageError(f"cannot read image {name}: {exc}") from exc
    raise TypeError(f"unsupported image source of type {type(source).__name__}")


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def _pil_to_rgb(im: PILImage.Image) -> np.ndarray:
    """Decode a PIL image to an `(H, W, 3)` uint8 RGB array (16-bit scaled, CMYK/palette converted)."""
    mode = im.mode
    if mode.startswith("I;16"):
        a = _scale_16bit(np.asarray(im))
    elif mode == "I":  # 32-bit integer: 16-bit data (for example some TIFFs) unless it fits in 8 bits
        a32 = np.asarray(im)
        a = _scale_16bit(a32) if a32.max(initial=0) > 255 else np.clip(a32, 0, 255).astype(np.uint8)
    elif mode == "F":
        af = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if af.max(initial=0.0) <= 1.0:
            af = af * 255.0
        a = np.clip(np.rint(af), 0, 255).astype(np.uint8)
    elif mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    else:  # L, 1, P, PA, LA, RGBA, CMYK, YCbCr, LAB, HSV, ...: PIL's conversion (alpha dropped)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return np.repeat(a[:, :, None], 3, axis=2)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype == np.uint16:
        a = _scale_16bit(a)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255.0 if a.max(initial=0.0) <= 1.0 else a), 0, 255).astype(np.uint8)
    else:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def load_image(source: ImageSource) -> np.ndarray:
    """Decode an image to an `(H, W, 3)` uint8 RGB array.

    `source` may be a path, encoded bytes, a `{"path", "bytes"}` dict (a
    `datasets.Image` value read with `decode=False`), a PIL image or an array.
    16-bit images are scaled to 8 bits (not clipped), CMYK / palette / grey / alpha images are
    converted to RGB (alpha dropped), and EXIF orientation is ignored.

    Raises:
        MissingFilesError: the file does not exist.
        CorruptImageError: the file is not a readable image or is truncated (message names it).
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    name = _describe(source)
    im = _open(source)
    try:
        im.load()
        return _pil_to_rgb(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot decode image {name} (unreadable or truncated file): {exc}") from exc
    finally:
        if not isinstance(source, PILImage.Image):
            im.close()


def _binarise(rgb: np.ndarray) -> np.ndarray:
    if rgb.size and int(rgb.max()) == 1:
        # A 0/1 label map stored as an image: the official threshold would make it empty.
        return rgb.max(axis=2) > 0
    # mean over channels > 127.5  <=>  sum over channels > 382.5
    return rgb.astype(np.uint16).sum(axis=2) > 382


def load_mask(source: ImageSource) -> np.ndarray:
    """Decode a mask to an `(H, W)` bool array, the official way.

    The mask is converted to RGB and binarised as `mean over channels > 127.5`, so grey,
    RGB, palette and lossy JPEG masks all work; 16-bit masks are scaled to 8 bits first. One
    deliberate extension: a mask whose maximum value is exactly 1 (a 0/1 label map saved as
    an image, which the official rule would read as empty) is binarised as `> 0`. Arrays are
    accepted too (bool as is; others with the same rules).
    """
    if isinstance(source, np.ndarray):
        if source.dtype == np.bool_:
            return source if source.ndim == 2 else source.any(axis=2)
        return _binarise(_array_to_rgb(source))
    return _binarise(load_image(source))


def image_size(source: ImageSource) -> tuple[int, int]:
    """`(width, height)` of an image, read from its header only (nothing is decoded)."""
    if isinstance(source, np.ndarray):
        return int(source.shape[1]), int(source.shape[0])
    if isinstance(source, PILImage.Image):
        return source.size
    im = _open(source)
    try:
        return im.size
    finally:
        im.close()


def _check_sizes(image_name: str, image_wh: tuple[int, int], mask_name: str, mask_wh: tuple[int, int]) -> None:
    if tuple(image_wh) != tuple(mask_wh):
        raise MaskSizeMismatchError(
            f"mask {mask_name} is {mask_wh[0]}x{mask_wh[1]} (width x height) but its image "
            f"{image_name} is {image_wh[0]}x{image_wh[1]}"
        )


def load_example(
    example: Mapping[str, Any],
    *,
    image_column: str = "image",
    mask_column: str = "mask",
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one row into `(image uint8 (H, W, 3), mask bool (H, W))`.

    Works on rows read with `decode=False` (`{"path", "bytes"}` dicts; see
    `with_decoding`) and on decoded rows (PIL images). An authentic row (mask `None`)
    gets an all-false mask.

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
    _check_sizes(
        _describe(image_src), (image.shape[1], image.shape[0]), _describe(mask_src), (mask.shape[1], mask.shape[0])
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

    `ds[i]["image"]` is `(H, W, 3)` uint8, `ds[i]["mask"]` `(H, W)` bool (all false for
    authentic rows), decoded with `load_example` (clear errors) and then passed through
    `transform(image, mask) -> (image, mask)` if given (for example
    `sparsevit_hf.augmentations.training_transforms`). Other columns pass through.
    """
    from datasets import Image

    raw = ds.cast_column(image_column, Image(decode=False)).cast_column(mask_column, Image(decode=False))
    return raw.with_transform(_DecodingTransform(transform, image_column, mask_column))


# --------------------------------------------------------------------------------------------------
# Building data sets
# --------------------------------------------------------------------------------------------------
def iml_features() -> datasets.Features:
    """The features of every IML data set: `image`, `mask` (Image) and `label` (ClassLabel)."""
    from datasets import ClassLabel, Features, Image

    return Features({"image": Image(), "mask": Image(), "label": ClassLabel(names=list(LABEL_NAMES))})


def _dataset_from_paths(images: list[str], masks: list[str | None], labels: list[int]) -> datasets.Dataset:
    from datasets import Dataset

    return Dataset.from_dict({"image": images, "mask": masks, "label": labels}, features=iml_features())


def _is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_images(folder: Path) -> list[str]:
    """Relative paths (POSIX, sorted) of the image files under `folder` (recursively)."""
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(folder / rel if rel else folder) as entries:
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir():
                    if not entry.name.startswith("."):
                        stack.append(sub)
                elif _is_image_file(entry.name):
                    found.append(sub)
    return sorted(found)


def _find_child(folder: Path, name: str) -> Path | None:
    """The sub-folder of `folder` called `name`, compared case-insensitively."""
    exact = folder / name
    if exact.is_dir():
        return exact
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.name.lower() == name.lower():
            return Path(entry.path)
    return None


def _split_key(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, os.path.splitext(name)[0]


def _strip_mask_suffix(stem: str) -> str | None:
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def _pair_masks(tp_dir: Path, gt_dir: Path, images: list[str], masks: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map each image (relative path) to its mask (relative path); return the map and the unpaired images."""
    exact: dict[tuple[str, str], list[str]] = {}
    stripped: dict[tuple[str, str], list[str]] = {}
    for rel in masks:
        parent, stem = _split_key(rel)
        exact.setdefault((parent, stem), []).append(rel)
        base = _strip_mask_suffix(stem)
        if base is not None:
            stripped.setdefault((parent, base), []).append(rel)
    pairs: dict[str, str] = {}
    unpaired: list[str] = []
    seen_keys: dict[tuple[str, str], str] = {}
    for rel in images:
        key = _split_key(rel)
        if key in seen_keys:
            raise IMLDatasetError(
                f"two images in {tp_dir} share the file stem {key[1]!r}: {seen_keys[key]} and {rel}; "
                "masks are paired by stem, so stems must be unique"
            )
        seen_keys[key] = rel
        candidates = exact.get(key) or stripped.get(key) or []
        if len(candidates) > 1:
            raise IMLDatasetError(f"image {tp_dir / rel} matches several masks in {gt_dir}: {', '.join(candidates)}")
        if candidates:
            pairs[rel] = candidates[0]
        else:
            unpaired.append(rel)
    return pairs, unpaired


def _load_folder(folder: Path, *, authentic_unpaired: bool) -> tuple[list[str], list[str | None], list[int]]:
    if not folder.is_dir():
        raise MissingFilesError(f"data set folder not found: {folder}")
    tp_dir = _find_child(folder, "Tp")
    gt_dir = _find_child(folder, "Gt")
    au_dir = _find_child(folder, "Au")
    if tp_dir is None or gt_dir is None:
        missing = " and ".join(n for n, d in (("Tp/", tp_dir), ("Gt/", gt_dir)) if d is None)
        raise MissingFilesError(
            f"{folder} is not a Tp/Gt data set folder: missing {missing}. Expected Tp/ (tampered images), "
            "Gt/ (their masks, same file stems, optionally with a _gt or _mask suffix) and optionally "
            "Au/ (authentic images)"
        )
    tp_images = _scan_images(tp_dir)
    if not tp_images:
        raise IMLDatasetError(
            f"no image files in {tp_dir} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "the Tp/ folder must hold the tampered images"
        )
    gt_masks = _scan_images(gt_dir)
    pairs, unpaired = _pair_masks(tp_dir, gt_dir, tp_images, gt_masks)
    if unpaired and not authentic_unpaired:
        raise UnpairedImagesError(
            f"{len(unpaired)} of {len(tp_images)} image(s) in {tp_dir} have no mask in {gt_dir} "
            f"(masks are paired by file stem, optionally with a {'/'.join(MASK_SUFFIXES)} suffix): "
            f"{_list_some(unpaired)}. Pass authentic_unpaired=True to treat them as authentic images."
        )
    used = set(pairs.values())
    orphans = [m for m in gt_masks if m not in used]
    if orphans:
        logger.warning("%d mask(s) in %s match no image in %s: %s", len(orphans), gt_dir, tp_dir, _list_some(orphans))

    images: list[str] = []
    masks: list[str | None] = []
    labels: list[int] = []
    for rel in tp_images:
        images.append(str(tp_dir / rel))
        if rel in pairs:
            masks.append(str(gt_dir / pairs[rel]))
            labels.append(1)
        else:
            masks.append(None)
            labels.append(0)
    if au_dir is not None:
        for rel in _scan_images(au_dir):
            images.append(str(au_dir / rel))
            masks.append(None)
            labels.append(0)
    return images, masks, labels


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise IMLDatasetError(f"{path} is not valid JSON: {exc}") from exc


def _resolve(base: Path, p: str) -> str:
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else (base / q))


def _is_negative(mask: Any) -> bool:
    return mask is None or (isinstance(mask, str) and mask.strip().lower() in (NEGATIVE_MASK, ""))


def _load_pair_list(entries: list[Any], json_path: Path) -> tuple[list[str], list[str | None], list[int]]:
    base = json_path.parent
    images: list[str] = []
    masks: list[str | None] = []
    labels: list[int] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            image, mask = entry.get("image"), entry.get("mask")
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            image, mask = entry
        else:
            raise IMLDatasetError(
                f"entry {i} of {json_path} is {entry!r}; expected an [image_path, mask_path] pair "
                '(mask_path "Negative" for an authentic image)'
            )
        if not isinstance(image, str):
            raise IMLDatasetError(f"entry {i} of {json_path}: image path must be a string, got {image!r}")
        images.append(_resolve(base, image))
        if _is_negative(mask):
            masks.append(None)
            labels.append(0)
        elif isinstance(mask, str):
            masks.append(_resolve(base, mask))
            labels.append(1)
        else:
            raise IMLDatasetError(f'entry {i} of {json_path}: mask must be a path or "Negative", got {mask!r}')
    if not images:
        raise IMLDatasetError(f"{json_path} lists no images")
    missing = [p for p in images + [m for m in masks if m is not None] if not os.path.isfile(p)]
    if missing:
        raise MissingFilesError(
            f"{len(missing)} file(s) listed in {json_path} do not exist (relative paths are resolved "
            f"against {base}): {_list_some(missing)}"
        )
    return images, masks, labels


# Kind names of combined-data-set entries (lower case), including IMDLBenCo's.
_KIND_ALIASES = {
    "folder": "folder",
    "manidataset": "folder",
    "mani": "folder",
    "tpgt": "folder",
    "json": "json",
    "jsondataset": "json",
    "datasets": "datasets",
    "hf": "datasets",
    "hfdataset": "datasets",
    "huggingface": "datasets",
    "imagefolder": "datasets",
    "synthetic": "synthetic",
    "syntheticdataset": "synthetic",
}


def _kind(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    return _KIND_ALIASES.get(re.sub(r"[^a-z]", "", name.lower()))


def _is_combined_list(entries: Sequence[Any]) -> bool:
    def is_kind_entry(e: Any) -> bool:
        return isinstance(e, (list, tuple)) and len(e) == 2 and _kind(e[0]) is not None

    flags = [is_kind_entry(e) for e in entries]
    if entries and all(flags):
        return True
    if any(flags):
        bad = [e for e, f in zip(entries, flags) if not f]
        raise IMLDatasetError(
            "a combined data set list mixes [kind, path] entries with other entries: "
            f"{_list_some([repr(b) for b in bad], 3)}; known kinds: {', '.join(sorted(_KIND_ALIASES))}"
        )
    return False


@dataclass
class IMLDatasetBundle:
    """A data set together with the sizes of the parts it was concatenated from.

    Attributes:
        dataset: the concatenated `datasets.Dataset` (columns `image`, `mask`, `label`).
        sizes: number of rows of each part, in order (one part for a single data set).
        names: a name for each part (its path or spec).
        skipped: files skipped as corrupt (`skip_corrupt=True`); empty otherwise.
    """

    dataset: datasets.Dataset
    sizes: tuple[int, ...]
    names: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index of the first row of each part in `dataset`."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.sizes)[:-1]])) if self.sizes else ()

    def epoch_indices(
        self, epoch: int, per_dataset: int | Sequence[int] = DEFAULT_PER_DATASET, seed: int = 0
    ) -> np.ndarray:
        """Balanced indices into `dataset` for one epoch (see `balanced_epoch_indices`)."""
        return balanced_epoch_indices(self.sizes, per_dataset, epoch=epoch, seed=seed)

    def sampler(self, per_dataset: int | Sequence[int] = DEFAULT_PER_DATASET, seed: int = 0) -> BalancedSampler:
        """A `BalancedSampler` over `dataset`."""
        return BalancedSampler(self.sizes, per_dataset, seed=seed)


def _check_readable(paths: list[str], num_workers: int) -> dict[str, str]:
    """Fully decode each file; return `{path: error}` for those that fail."""

    def check(p: str) -> tuple[str, str | None]:
        try:
            load_image(p)
        except IMLDatasetError as exc:
            return p, str(exc)
        return p, None

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        return {p: err for p, err in pool.map(check, paths) if err is not None}


def _drop_corrupt(
    images: list[str], masks: list[str | None], labels: list[int], num_workers: int
) -> tuple[list[str], list[str | None], list[int], list[str]]:
    files = images + [m for m in masks if m is not None]
    bad = _check_readable(files, num_workers)
    if not bad:
        return images, masks, labels, []
    keep = [i for i, (im, m) in enumerate(zip(images, masks)) if im not in bad and (m is None or m not in bad)]
    logger.warning(
        "skip_corrupt=True: skipped %d sample(s) with %d unreadable file(s): %s",
        len(images) - len(keep),
        len(bad),
        _list_some(sorted(bad)),
    )
    return [images[i] for i in keep], [masks[i] for i in keep], [labels[i] for i in keep], sorted(bad)


def _has_any(folder: Path, names: Sequence[str]) -> bool:
    return any((folder / n).exists() for n in names)


def _parse_synthetic(spec: str, split: str | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
    parts = spec.split(":")
    kwargs: dict[str, Any] = {"split": split or "train"}
    aliases = {
        "n": "num_images",
        "num": "num_images",
        "num_images": "num_images",
        "size": "size",
        "seed": "seed",
        "authentic_fraction": "authentic_fraction",
        "split": "split",
    }
    for token in parts[1:]:
        for item in filter(None, (t.strip() for t in token.split(","))):
            if "=" not in item:
                kwargs["split"] = item
                continue
            key, value = (s.strip() for s in item.split("=", 1))
            if key not in aliases:
                raise IMLDatasetError(
                    f"unknown synthetic data set parameter {key!r} in {spec!r}; known: {', '.join(sorted(aliases))}"
                )
            key = aliases[key]
            kwargs[key] = value if key == "split" else (float(value) if key == "authentic_fraction" else int(value))
    kwargs.update(options or {})
    return kwargs


def _normalise_hf(
    ds: datasets.Dataset,
    name: str,
    *,
    image_column: str,
    mask_column: str,
    label_column: str,
    num_proc: int | None,
) -> datasets.Dataset:
    from datasets import ClassLabel, Image, Value

    columns = ds.column_names
    for col, what in ((image_column, "image"), (mask_column, "mask")):
        if col not in columns:
            raise IMLDatasetError(
                f"data set {name} has no {what} column {col!r} (columns: {', '.join(columns)}); "
                f"pass {what}_column=... to name it"
            )
    if image_column != "image" and "image" in columns:
        ds = ds.remove_columns("image")
    if mask_column != "mask" and "mask" in ds.column_names:
        ds = ds.remove_columns("mask")
    ds = ds.rename_columns({c: t for c, t in ((image_column, "image"), (mask_column, "mask")) if c != t})
    for col in ("image", "mask"):
        feat = ds.features[col]
        if not (isinstance(feat, Image) and feat.decode and feat.mode is None):
            if isinstance(feat, Image) or (isinstance(feat, Value) and feat.dtype in ("string", "large_string")):
                ds = ds.cast_column(col, Image())
            else:
                raise IMLDatasetError(
                    f"column {col!r} of data set {name} has feature {feat}; expected datasets.Image or file paths"
                )
    if label_column in ds.column_names:
        if label_column != "label":
            if "label" in ds.column_names:
                ds = ds.remove_columns("label")
            ds = ds.rename_column(label_column, "label")
        values = set(ds.unique("label"))
        if not values <= {0, 1}:
            raise IMLDatasetError(
                f"label column {label_column!r} of data set {name} holds {sorted(values)}; "
                "expected 0 (authentic) / 1 (tampered)"
            )
        if ds.features["label"] != ClassLabel(names=list(LABEL_NAMES)):
            ds = ds.cast_column("label", ClassLabel(names=list(LABEL_NAMES)))
    else:

        def derive(batch: dict[str, list[Any]]) -> dict[str, list[int]]:
            return {"label": [0 if m is None else int(load_mask(m).any()) for m in batch["mask"]]}

        raw = ds.cast_column("mask", Image(decode=False))
        labels = raw.select_columns(["mask"]).map(
            derive, batched=True, remove_columns=["mask"], num_proc=num_proc, desc="labels from masks"
        )["label"]
        ds = ds.add_column("label", labels, feature=ClassLabel(names=list(LABEL_NAMES)))
    return ds


def _load_hf(
    spec: str,
    *,
    split: str | None,
    image_column: str,
    mask_column: str,
    label_column: str,
    cache_dir: str | None,
    num_proc: int | None,
) -> datasets.Dataset:
    import datasets as hfds

    path = Path(spec)
    if path.is_dir():
        if _has_any(path, ["dataset_dict.json", "state.json"]):
            loaded = hfds.load_from_disk(str(path))
        else:
            loaded = hfds.load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
    else:
        try:
            loaded = hfds.load_dataset(spec, cache_dir=cache_dir)
        except Exception as exc:
            offline = hfds.config.HF_DATASETS_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            raise IMLDatasetError(
                f"{spec!r} is not a local file or folder, so it was loaded as a Hugging Face Hub data set "
                f"with datasets.load_dataset, which failed{' (offline mode is on)' if offline else ''}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(loaded, (hfds.DatasetDict, dict)):
        splits = list(loaded.keys())
        chosen = split or (splits[0] if len(splits) == 1 else ("train" if "train" in splits else None))
        if chosen not in loaded:
            raise IMLDatasetError(f"data set {spec} has splits {', '.join(splits)}; pass split=... to choose one")
        loaded = loaded[chosen]
    elif split is not None:
        logger.info("data set %s has a single split; ignoring split=%r", spec, split)
    return _normalise_hf(
        loaded, spec, image_column=image_column, mask_column=mask_column, label_column=label_column, num_proc=num_proc
    )


def _load_part(
    kind: str | None,
    spec: Any,
    base: Path | None,
    opts: dict[str, Any],
) -> tuple[datasets.Dataset, str, list[str]]:
    """Load one (non-combined) data set; returns (dataset, name, skipped files)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise IMLDatasetError(f"a data set spec must be a path or string, got {spec!r}")
    if kind == "synthetic" or (kind is None and (spec == "synthetic" or spec.startswith("synthetic:"))):
        from . import synthetic

        text = spec if spec.startswith("synthetic") else f"synthetic:{spec}"
        kwargs = _parse_synthetic(text, opts["split"], opts["synthetic_options"])
        return synthetic.synthetic_dataset(**kwargs), text, []
    path = Path(_resolve(base, spec)) if base is not None else Path(os.path.expanduser(spec))
    if kind is None:
        if path.is_file() and path.suffix.lower() == ".json":
            kind = "json"
        elif path.is_dir():
            is_tp_gt = _find_child(path, "Tp") is not None and _find_child(path, "Gt") is not None
            hf_markers = ["dataset_dict.json", "state.json", "metadata.jsonl", "metadata.csv", "metadata.parquet"]
            kind = "datasets" if not is_tp_gt and _has_any(path, hf_markers) else "folder"
        elif path.exists():
            raise IMLDatasetError(f"{path} is neither a folder nor a .json file")
        elif spec.startswith((".", "/", "~", "\\")) or "\\" in spec or spec.endswith(".json") or spec.count("/") > 1:
            # looks like a local path (a Hub id is "name" or "owner/name")
            raise MissingFilesError(f"data set path not found: {path}")
        else:
            kind = "datasets"
    skipped: list[str] = []
    if kind == "datasets":
        ds = _load_hf(
            str(path) if path.exists() else spec,
            split=opts["split"],
            image_column=opts["image_column"],
            mask_column=opts["mask_column"],
            label_column=opts["label_column"],
            cache_dir=opts["cache_dir"],
            num_proc=opts["num_proc"],
        )
        if opts["skip_corrupt"]:
            report = validate_dataset(ds, decode=True, raise_on_error=False, num_workers=opts["num_workers"])
            bad = sorted({i for i, _ in report.corrupt})
            if bad:
                skipped = [msg for _, msg in report.corrupt]
                logger.warning(
                    "skip_corrupt=True: skipped %d unreadable sample(s) of %s: %s",
                    len(bad),
                    spec,
                    _list_some(skipped, 3),
                )
                bad_set = set(bad)
                ds = ds.select([i for i in range(len(ds)) if i not in bad_set])
        return ds, spec, skipped
    if kind == "folder":
        images, masks, labels = _load_folder(path, authentic_unpaired=opts["authentic_unpaired"])
    elif kind == "json":
        if not path.is_file():
            raise MissingFilesError(f"JSON data set file not found: {path}")
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise IMLDatasetError(f"{path} must hold a JSON list of [image, mask] pairs or [kind, path] entries")
        if _is_combined_list(entries):
            raise IMLDatasetError(f"{path} is a combined [kind, path] list and cannot be nested in another one")
        images, masks, labels = _load_pair_list(entries, path)
    else:  # pragma: no cover - _kind only yields the kinds above
        raise IMLDatasetError(f"unknown data set kind {kind!r}")
    if opts["skip_corrupt"]:
        images, masks, labels, skipped = _drop_corrupt(images, masks, labels, opts["num_workers"])
        if not images:
            raise IMLDatasetError(f"every sample of {path} is unreadable ({len(skipped)} corrupt files)")
    return _dataset_from_paths(images, masks, labels), str(path), skipped


def _combined_entries(spec: Any) -> tuple[list[tuple[str | None, Any]], Path | None] | None:
    """The parts of a combined spec (a list, or a JSON file holding a [kind, path] list), else None."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise IMLDatasetError("an empty list of data sets was given")
        parts: list[tuple[str | None, Any]] = []
        for entry in spec:
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and _kind(entry[0]) is not None:
                parts.append((_kind(entry[0]), entry[1]))
            else:
                parts.append((None, entry))
        return parts, None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(spec)))
        if path.is_file() and path.suffix.lower() == ".json":
            entries = _read_json(path)
            if isinstance(entries, list) and _is_combined_list(entries):
                return [(_kind(k), p) for k, p in entries], path.parent
    return None


def load_iml_bundle(
    spec: str | os.PathLike | Sequence[Any],
    *,
    split: str | None = None,
    authentic_unpaired: bool = False,
    skip_corrupt: bool = False,
    image_column: str = "image",
    mask_column: str = "mask",
    label_column: str = "label",
    synthetic_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    num_workers: int = 8,
) -> IMLDatasetBundle:
    """Load any supported data set spec and return it with the sizes of its parts.

    Accepts everything `load_iml_dataset` accepts (see there for the arguments). For a
    combined spec (a JSON `[kind, path]` list, or a Python list of specs / `(kind, spec)`
    pairs) the parts are concatenated in order, keeping only the `image`, `mask` and
    `label` columns; `IMLDatasetBundle.sizes` gives their lengths for
    `balanced_epoch_indices`. A single data set is a bundle of one part.
    """
    from datasets import concatenate_datasets

    opts = dict(
        split=split,
        authentic_unpaired=authentic_unpaired,
        skip_corrupt=skip_corrupt,
        image_column=image_column,
        mask_column=mask_column,
        label_column=label_column,
        synthetic_options=synthetic_options,
        cache_dir=cache_dir,
        num_proc=num_proc,
        num_workers=num_workers,
    )
    combined = _combined_entries(spec)
    if combined is None:
        ds, name, skipped = _load_part(None, spec, None, opts)
        return IMLDatasetBundle(ds, (len(ds),), (name,), tuple(skipped))
    entries, base = combined
    parts, names, skipped_all = [], [], []
    for kind, sub in entries:
        ds, name, skipped = _load_part(kind, sub, base, opts)
        parts.append(ds.select_columns(["image", "mask", "label"]).cast(iml_features()))
        names.append(name)
        skipped_all.extend(skipped)
    dataset = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return IMLDatasetBundle(dataset, tuple(len(p) for p in parts), tuple(names), tuple(skipped_all))


def load_iml_dataset(
    spec: str | os.PathLike | Sequence[Any],
    *,
    split: str | None = None,
    authentic_unpaired: bool = False,
    skip_corrupt: bool = False,
    image_column: str = "image",
    mask_column: str = "mask",
    label_column: str = "label",
    synthetic_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    num_workers: int = 8,
) -> datasets.Dataset:
    """Load an image manipulation localization data set from any supported spec.

    Args:
        spec: a `Tp/`+`Gt/` folder, a JSON pair list, a combined JSON `[kind, path]` list
            (or a Python list of specs), a `datasets` `save_to_disk` / `imagefolder`
            folder or Hub id, or `"synthetic[:split][:key=value,...]"` (keys `num_images`,
            `size`, `seed`, `authentic_fraction`). See the module docstring.
        split: split of a `DatasetDict` / Hub data set, or of the synthetic data set.
        authentic_unpaired: treat images in `Tp/` without a mask as authentic (label 0)
            instead of raising `UnpairedImagesError`.
        skip_corrupt: fully decode every file of folder / JSON data sets once now and drop the
            samples whose image or mask is unreadable or truncated; the count and names are
            logged (warning) and returned by `load_iml_bundle` in `skipped`. Without it
            nothing is decoded now and a corrupt file raises `CorruptImageError` when read.
        image_column, mask_column, label_column: column names of a `datasets` data set
            (renamed to `image` / `mask` / `label`). Without a label column the label is
            1 when the mask has any tampered pixel (this decodes every mask once).
        synthetic_options: extra keyword arguments for
            `sparsevit_hf.synthetic.synthetic_dataset`.
        cache_dir: `datasets` cache folder for `imagefolder` / Hub loading.
        num_proc: processes for deriving labels from masks.
        num_workers: threads for the `skip_corrupt` check.

    Returns:
        A `datasets.Dataset` with columns `image`, `mask`, `label` (plus `kind`
        for the synthetic data set and any extra columns of a single `datasets` data set).
        Building it decodes no image (unless `skip_corrupt` or label derivation asks for it).
    """
    return load_iml_bundle(
        spec,
        split=split,
        authentic_unpaired=authentic_unpaired,
        skip_corrupt=skip_corrupt,
        image_column=image_column,
        mask_column=mask_column,
        label_column=label_column,
        synthetic_options=synthetic_options,
        cache_dir=cache_dir,
        num_proc=num_proc,
        num_workers=num_workers,
    ).dataset


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
@dataclass
class ValidationReport:
    """Result of `validate_dataset`.

    Attributes:
        num_checked: rows checked.
        corrupt: `(row, message)` for rows whose image or mask cannot be read.
        size_mismatches: `(row, message)` for rows whose mask size differs from the image size.
    """

    num_checked: int = 0
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    size_mismatches: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.size_mismatches

    @property
    def bad_rows(self) -> list[int]:
        return sorted({i for i, _ in self.corrupt} | {i for i, _ in self.size_mismatches})

    def summary(self) -> str:
        lines = [
            f"checked {self.num_checked} row(s): {len(self.corrupt)} unreadable, "
            f"{len(self.size_mismatches)} size mismatch(es)"
        ]
        lines += [f"  row {i}: {msg}" for i, msg in (self.corrupt + self.size_mismatches)[:_SHOW]]
        extra = len(self.corrupt) + len(self.size_mismatches) - _SHOW
        if extra > 0:
            lines.append(f"  ... ({extra} more)")
        return "\n".join(lines)


def validate_dataset(
    ds: datasets.Dataset,
    *,
    image_column: str = "image",
    mask_column: str = "mask",
    decode: bool = False,
    raise_on_error: bool = True,
    num_workers: int = 8,
    batch_size: int = 1000,
) -> ValidationReport:
    """Check every image/mask pair of `ds`.

    By default only image headers are read (`PIL.Image.open(...).size`, no decoding): this
    finds missing / unidentifiable files and masks whose size differs from their image. With
    `decode=True` every file is also fully decoded, which finds truncated files too.

    Raises:
        MaskSizeMismatchError: (`raise_on_error`) the first size mismatch, naming both files.
        CorruptImageError / MissingFilesError: (`raise_on_error`) the first unreadable file.
    Returns:
        A `ValidationReport` (when nothing was raised).
    """
    from datasets import Image

    raw = ds.select_columns([image_column, mask_column])
    raw = raw.cast_column(image_column, Image(decode=False)).cast_column(mask_column, Image(decode=False))

    def check(args: tuple[int, Any, Any]) -> tuple[int, str | None, IMLDatasetError | None]:
        i, image_src, mask_src = args
        try:
            if decode:
                load_example({"image": image_src, "mask": mask_src})
            else:
                wh = image_size(image_src)
                if mask_src is not None:
                    _check_sizes(_describe(image_src), wh, _describe(mask_src), image_size(mask_src))
        except MaskSizeMismatchError as exc:
            return i, "size", exc
        except IMLDatasetError as exc:
            return i, "corrupt", exc
        return i, None, None

    report = ValidationReport()
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for start in range(0, len(raw), batch_size):
            batch = raw[start : start + batch_size]
            jobs = [(start + j, im, m) for j, (im, m) in enumerate(zip(batch[image_column], batch[mask_column]))]
            for i, problem, exc in pool.map(check, jobs):
                report.num_checked += 1
                if problem is None:
                    continue
                if raise_on_error:
                    raise exc
                (report.size_mismatches if problem == "size" else report.corrupt).append((i, str(exc)))
    if not report.ok:
        logger.warning("validate_dataset: %s", report.summary())
    return report


# --------------------------------------------------------------------------------------------------
# Balanced sampling of combined data sets
# --------------------------------------------------------------------------------------------------
def balanced_epoch_indices(
    sizes: Sequence[int],
    per_dataset: int | Sequence[int] = DEFAULT_PER_DATASET,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
) -> np.ndarray:
    """Indices into the concatenation of data sets of the given `sizes` for one epoch.

    Each part `k` contributes `per_dataset` (or `per_dataset[k]`) indices from its own
    range: drawn without replacement when it has at least that many rows, with replacement
    otherwise. The result is deterministic for a given `(seed, epoch)`, differs between
    epochs, and is shuffled across parts unless `shuffle=False` (then grouped by part).
    """
    sizes = [int(s) for s in sizes]
    counts = [int(per_dataset)] * len(sizes) if np.isscalar(per_dataset) else [int(c) for c in per_dataset]
    if len(counts) != len(sizes):
        raise ValueError(f"per_dataset has {len(counts)} counts for {len(sizes)} data sets")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"every data set must be non-empty, got sizes {sizes}")
    if any(c < 0 for c in counts):
        raise ValueError(f"per_dataset counts must be >= 0, got {counts}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]))
    chunks = []
    offset = 0
    for size, count in zip(sizes, counts):
        chunks.append(offset + rng.choice(size, size=count, replace=count > size))
        offset += size
    indices = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)
    if shuffle:
        rng.shuffle(indices)
    return indices


class BalancedSampler:
    """A sampler (usable as `torch.utils.data.DataLoader(sampler=...)`) drawing evenly from parts.

    Call `set_epoch` at the start of every epoch (as with `DistributedSampler`); each
    epoch yields `balanced_epoch_indices` `(sizes, per_dataset, epoch=epoch, seed=seed)`.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        per_dataset: int | Sequence[int] = DEFAULT_PER_DATASET,
        *,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.sizes = tuple(int(s) for s in sizes)
        self.per_dataset = per_dataset
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        balanced_epoch_indices(self.sizes, per_dataset, epoch=0, seed=seed)  # validate arguments early

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if np.isscalar(self.per_dataset):
            return int(self.per_dataset) * len(self.sizes)
        return int(sum(int(c) for c in self.per_dataset))

    def __iter__(self) -> Iterator[int]:
        idx = balanced_epoch_indices(
            self.sizes, self.per_dataset, epoch=self.epoch, seed=self.seed, shuffle=self.shuffle
        )
        return iter(idx.tolist())
