"""`datasets` data sets as IML data sets: `save_to_disk` folders, `imagefolder` folders and Hub ids.

Their image and mask columns are renamed to `image` / `mask` and cast to `datasets.Image`; the label column is
checked (0 / 1) or, when there is none, derived from the masks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .decoding import load_mask
from .errors import IMLDatasetError
from .features import LABEL_NAMES

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

# Files that mark a folder as a `datasets` folder rather than a Tp/Gt folder.
HF_MARKERS = ("dataset_dict.json", "state.json", "metadata.jsonl", "metadata.csv", "metadata.parquet")


def has_any(folder: Path, names: Any) -> bool:
    return any((folder / n).exists() for n in names)


def normalise_columns(
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
                "expected 0 (authentic) / 1 (manipulated)"
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


def load_hf_dataset(
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
        if has_any(path, ["dataset_dict.json", "state.json"]):
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
    return normalise_columns(
        loaded, spec, image_column=image_column, mask_column=mask_column, label_column=label_column, num_proc=num_proc
    )
