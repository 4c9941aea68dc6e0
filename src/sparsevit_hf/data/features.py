"""The columns every image manipulation localization data set has (the loaders and the synthetic set share them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import datasets

# Names of the `label` column's classes, as the model's `id2label` names them.
LABEL_NAMES = ("authentic", "manipulated")


def iml_features() -> datasets.Features:
    """The features of every IML data set: `image`, `mask` (Image; `None` for authentic images) and `label`
    (ClassLabel `LABEL_NAMES`)."""
    from datasets import ClassLabel, Features, Image

    return Features({"image": Image(), "mask": Image(), "label": ClassLabel(names=list(LABEL_NAMES))})
