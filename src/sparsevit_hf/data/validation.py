"""Checking an IML data set before training: missing, unreadable or truncated files, masks of the wrong size."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .decoding import check_sizes, describe, image_size, load_example
from .errors import SHOW, IMLDatasetError, MaskSizeMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)


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
        lines += [f"  row {i}: {msg}" for i, msg in (self.corrupt + self.size_mismatches)[:SHOW]]
        extra = len(self.corrupt) + len(self.size_mismatches) - SHOW
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
                    check_sizes(describe(image_src), wh, describe(mask_src), image_size(mask_src))
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
