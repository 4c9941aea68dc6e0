"""The columns every image manipulation localization data set has (the loaders and the synthetic set share them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..configuration_sparsevit import DEFAULT_ID2LABEL

if TYPE_CHECKING:  # pragma: no cover
    import datasets

# Names of the `label` column's classes: the model's default `id2label`, defined once in the configuration.
LABEL_NAMES = tuple(DEFAULT_ID2LABEL[label_id] for label_id in sorted(DEFAULT_ID2LABEL))


def iml_features() -> datasets.Features:
    """The features of every IML data set: `image`, `mask` (Image; `None` for authentic images) and `label`
    (ClassLabel `LABEL_NAMES`)."""
    from datasets import ClassLabel, Features, Image

    return Features({"image": Image(), "mask": Image(), "label": ClassLabel(names=list(LABEL_NAMES))})
