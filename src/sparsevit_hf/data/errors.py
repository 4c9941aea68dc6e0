"""Errors of the data loaders; each message names the file or spec and says what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..image_decoding_sparsevit import ImageDecodingError

# How many file names an error message lists.
SHOW = 10


class IMLDatasetError(ValueError):
    """A data set spec or its files are not usable (the message says which file and why)."""


class MissingFilesError(IMLDatasetError, FileNotFoundError):
    """Files or folders named by a data set spec do not exist."""


class UnpairedImagesError(IMLDatasetError):
    """Tampered images without a mask (see `authentic_unpaired`)."""


class CorruptImageError(IMLDatasetError, ImageDecodingError, OSError):
    """An image or mask file cannot be decoded (unreadable, truncated, unknown format)."""


class MaskSizeMismatchError(IMLDatasetError):
    """A mask's size differs from its image's size."""


def list_some(items: Sequence[Any], show: int = SHOW) -> str:
    """The first `show` items, comma-separated, and how many more there are."""
    names = ", ".join(str(x) for x in items[:show])
    if len(items) > show:
        names += f", ... ({len(items) - show} more)"
    return names
