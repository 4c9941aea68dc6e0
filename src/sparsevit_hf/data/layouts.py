"""Data set layouts on disk: `Tp/` + `Gt/` (+ `Au/`) folders, JSON pair lists and combined `[kind, path]` lists.

Each reader returns three parallel lists, image paths, mask paths (`None` for authentic images) and labels (0 / 1),
without decoding anything; `sparsevit_hf.data.loaders` turns them into `datasets.Dataset` objects.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..image_decoding_sparsevit import IMAGE_EXTENSIONS
from .errors import IMLDatasetError, MissingFilesError, UnpairedImagesError, list_some

logger = logging.getLogger(__name__)

# Suffixes a mask's file stem may carry in addition to its image's stem (compared case-insensitively).
MASK_SUFFIXES = ("_gt", "_mask", "-gt", "-mask")
# Strings that mark an authentic image in place of a mask path in JSON pair lists.
NEGATIVE_MASK = "negative"
# Kind names of combined-data-set entries (lower case, letters only), including IMDLBenCo's.
KIND_ALIASES = {
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

Paths = tuple[list[str], list[str | None], list[int]]


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


def find_child(folder: Path, name: str) -> Path | None:
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


def load_folder(folder: Path, *, authentic_unpaired: bool) -> Paths:
    if not folder.is_dir():
        raise MissingFilesError(f"data set folder not found: {folder}")
    tp_dir = find_child(folder, "Tp")
    gt_dir = find_child(folder, "Gt")
    au_dir = find_child(folder, "Au")
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
            f"{list_some(unpaired)}. Pass authentic_unpaired=True to treat them as authentic images."
        )
    used = set(pairs.values())
    orphans = [m for m in gt_masks if m not in used]
    if orphans:
        logger.warning("%d mask(s) in %s match no image in %s: %s", len(orphans), gt_dir, tp_dir, list_some(orphans))

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


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise IMLDatasetError(f"{path} is not valid JSON: {exc}") from exc


def resolve_path(base: Path, p: str) -> str:
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else (base / q))


def _is_negative(mask: Any) -> bool:
    return mask is None or (isinstance(mask, str) and mask.strip().lower() in (NEGATIVE_MASK, ""))


def load_pair_list(entries: list[Any], json_path: Path) -> Paths:
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
        images.append(resolve_path(base, image))
        if _is_negative(mask):
            masks.append(None)
            labels.append(0)
        elif isinstance(mask, str):
            masks.append(resolve_path(base, mask))
            labels.append(1)
        else:
            raise IMLDatasetError(f'entry {i} of {json_path}: mask must be a path or "Negative", got {mask!r}')
    if not images:
        raise IMLDatasetError(f"{json_path} lists no images")
    missing = [p for p in images + [m for m in masks if m is not None] if not os.path.isfile(p)]
    if missing:
        raise MissingFilesError(
            f"{len(missing)} file(s) listed in {json_path} do not exist (relative paths are resolved "
            f"against {base}): {list_some(missing)}"
        )
    return images, masks, labels


def kind_of(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    return KIND_ALIASES.get(re.sub(r"[^a-z]", "", name.lower()))


def is_combined_list(entries: Sequence[Any]) -> bool:
    def is_kind_entry(e: Any) -> bool:
        return isinstance(e, (list, tuple)) and len(e) == 2 and kind_of(e[0]) is not None

    flags = [is_kind_entry(e) for e in entries]
    if entries and all(flags):
        return True
    if any(flags):
        bad = [e for e, f in zip(entries, flags) if not f]
        raise IMLDatasetError(
            "a combined data set list mixes [kind, path] entries with other entries: "
            f"{list_some([repr(b) for b in bad], 3)}; known kinds: {', '.join(sorted(KIND_ALIASES))}"
        )
    return False


def combined_entries(spec: Any) -> tuple[list[tuple[str | None, Any]], Path | None] | None:
    """The parts of a combined spec (a list, or a JSON file holding a [kind, path] list), else None."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise IMLDatasetError("an empty list of data sets was given")
        parts: list[tuple[str | None, Any]] = []
        for entry in spec:
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and kind_of(entry[0]) is not None:
                parts.append((kind_of(entry[0]), entry[1]))
            else:
                parts.append((None, entry))
        return parts, None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(spec)))
        if path.is_file() and path.suffix.lower() == ".json":
            entries = read_json(path)
            if isinstance(entries, list) and is_combined_list(entries):
                return [(kind_of(k), p) for k, p in entries], path.parent
    return None
