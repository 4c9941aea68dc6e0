"""Image manipulation localization (IML) data sets as `datasets.Dataset` objects.

Every loader returns a data set with the same three columns (`sparsevit_hf.data.features`):

* `image` -- `datasets.Image` (decoded lazily, only when a row is read),
* `mask` -- `datasets.Image`, or `None` for an authentic image,
* `label` -- `datasets.ClassLabel` `["authentic", "manipulated"]` (0 / 1).

The one entry point is `load_iml_dataset` (or `load_iml_bundle`, which also returns the sizes of the parts of a
combined data set for balanced sampling). Accepted specs:

`"path/to/folder"` with `Tp/` and `Gt/` (and optionally `Au/`)
    Tampered images in `Tp/`, their masks in `Gt/`, paired by file stem whatever the extensions; a mask stem may
    carry a `_gt` / `_mask` (or `-gt` / `-mask`) suffix. Authentic images in `Au/` (label 0, no mask). Sub-folders
    are searched and must be mirrored between `Tp/` and `Gt/`. Non-image files are ignored.
`"pairs.json"`
    A JSON list of `[image, mask]` pairs; `mask` may be `"Negative"` (or `null`) for an authentic image. Relative
    paths are relative to the JSON file's folder.
`"combined.json"` (or a Python list of specs)
    A JSON list of `[kind, path]` entries, `kind` one of `folder` (aliases `ManiDataset`, `mani`), `json`
    (`JsonDataset`), `datasets` (`hf`, `HFDataset`, `imagefolder`) or `synthetic`. The parts are concatenated;
    `balanced_epoch_indices` / `BalancedSampler` draw the same number of samples from every part in each epoch
    (1,840 in the CAT-Net protocol).
a `datasets` data set
    A `save_to_disk` folder, an `imagefolder` folder (`metadata.jsonl` / `.csv` with `file_name` and
    `mask_file_name`), or a Hub id (needs network: the error of `datasets.load_dataset` is re-raised with an
    explanation when offline). Column names are configurable; without a label column the label is derived from
    mask emptiness.
`"synthetic"`, `"synthetic:test"`, `"synthetic:train:num_images=200,size=256,seed=1"`
    The built-in synthetic tampering data set (`sparsevit_hf.data.synthetic`), in memory.

Files are decoded by the package's one decoder (`sparsevit_hf.data.decoding`): use `load_example` or
`with_decoding` for training-time reading, and `validate_dataset` to check a whole data set cheaply from image
headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..utils import is_local_path
from .decoding import load_image
from .errors import IMLDatasetError, MissingFilesError, list_some
from .features import iml_features
from .hf_datasets import HF_MARKERS, load_hf_dataset
from .layouts import (
    combined_entries,
    find_child,
    is_combined_list,
    load_folder,
    load_pair_list,
    read_json,
    resolve_path,
)
from .sampling import DEFAULT_PER_DATASET, BalancedSampler, balanced_epoch_indices
from .validation import validate_dataset

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)


def _dataset_from_paths(images: list[str], masks: list[str | None], labels: list[int]) -> datasets.Dataset:
    from datasets import Dataset

    return Dataset.from_dict({"image": images, "mask": masks, "label": labels}, features=iml_features())


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
        list_some(sorted(bad)),
    )
    return [images[i] for i in keep], [masks[i] for i in keep], [labels[i] for i in keep], sorted(bad)



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
    path = Path(resolve_path(base, spec)) if base is not None else Path(os.path.expanduser(spec))
    if kind is None:
        if path.is_file() and path.suffix.lower() == ".json":
            kind = "json"
        elif path.is_dir():
            is_tp_gt = find_child(path, "Tp") is not None and find_child(path, "Gt") is not None
            kind = "datasets" if not is_tp_gt and any((path / name).exists() for name in HF_MARKERS) else "folder"
        elif path.exists():
            raise IMLDatasetError(f"{path} is neither a folder nor a .json file")
        elif is_local_path(spec):
            # looks like a local path (a Hub id is "name" or "owner/name")
            raise MissingFilesError(f"data set path not found: {path}")
        else:
            kind = "datasets"
    skipped: list[str] = []
    if kind == "datasets":
        ds = load_hf_dataset(
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
                    list_some(skipped, 3),
                )
                bad_set = set(bad)
                ds = ds.select([i for i in range(len(ds)) if i not in bad_set])
        return ds, spec, skipped
    if kind == "folder":
        images, masks, labels = load_folder(path, authentic_unpaired=opts["authentic_unpaired"])
    elif kind == "json":
        if not path.is_file():
            raise MissingFilesError(f"JSON data set file not found: {path}")
        entries = read_json(path)
        if not isinstance(entries, list):
            raise IMLDatasetError(f"{path} must hold a JSON list of [image, mask] pairs or [kind, path] entries")
        if is_combined_list(entries):
            raise IMLDatasetError(f"{path} is a combined [kind, path] list and cannot be nested in another one")
        images, masks, labels = load_pair_list(entries, path)
    else:  # pragma: no cover - _kind only yields the kinds above
        raise IMLDatasetError(f"unknown data set kind {kind!r}")
    if opts["skip_corrupt"]:
        images, masks, labels, skipped = _drop_corrupt(images, masks, labels, opts["num_workers"])
        if not images:
            raise IMLDatasetError(f"every sample of {path} is unreadable ({len(skipped)} corrupt files)")
    return _dataset_from_paths(images, masks, labels), str(path), skipped



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
    combined = combined_entries(spec)
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
            1 when the mask has any manipulated pixel (this decodes every mask once).
        synthetic_options: extra keyword arguments for
            `sparsevit_hf.data.synthetic.synthetic_dataset`.
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
