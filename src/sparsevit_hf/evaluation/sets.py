"""Named evaluation sets: `name=spec` parsing, loading, and the view a data loader reads (decoded, optionally
degraded, processed, with the ground truth kept at the image's own size)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..utils import derive_seed
from .robustness import Perturbation

_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Seed stream of the perturbations (noise) of evaluation images, apart from every training stream.
_PERTURBATION_STREAM = 2


def is_synthetic_spec(spec: str) -> bool:
    """Whether a data spec names the built-in synthetic data set (`synthetic`, `synthetic:test:num_images=50`)."""
    return spec == "synthetic" or spec.startswith("synthetic:")


def parse_eval_specs(items: Iterable[str]) -> dict[str, str]:
    """Parse `name=spec` items into an ordered `{name: spec}`; names are letters, digits, `_ . -`."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, spec = str(item).partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise ValueError(
                f"bad --eval_data {item!r}: give each evaluation set a name, as NAME=SPEC (e.g. casia=/data/CASIAv1 "
                "or synthetic=synthetic:test)"
            )
        if not _SET_NAME.match(name):
            raise ValueError(f"bad evaluation set name {name!r}: use letters, digits, '_', '.' and '-' only")
        if name in result:
            raise ValueError(f"evaluation set name {name!r} is given twice")
        result[name] = spec
    return result


def load_evaluation_sets(
    specs: Mapping[str, str], max_samples: int | None = None, **loader_options: Any
) -> dict[str, Any]:
    """`{name: datasets.Dataset}` of `{name: spec}` (`load_iml_dataset`; the synthetic data set's `test` split
    unless the spec names one), each cut to its first `max_samples` images when given. `loader_options` go to
    `load_iml_dataset` (`skip_corrupt`, `synthetic_options`, ...). An empty set raises `IMLDatasetError` naming its
    spec."""
    return load_evaluation_sets_counted(specs, max_samples, **loader_options)[0]


def load_evaluation_sets_counted(
    specs: Mapping[str, str], max_samples: int | None = None, **loader_options: Any
) -> tuple[dict[str, Any], dict[str, int]]:
    """`load_evaluation_sets`, plus `{name: number of unreadable samples skipped}` (with `skip_corrupt=True`)."""
    from ..data import IMLDatasetError, load_iml_bundle

    sets, skipped = {}, {}
    for name, spec in specs.items():
        bundle = load_iml_bundle(spec, split="test" if is_synthetic_spec(spec) else None, **loader_options)
        dataset = bundle.dataset
        if len(dataset) == 0:
            raise IMLDatasetError(f"evaluation set {name}={spec} holds no image")
        if max_samples is not None and max_samples < len(dataset):
            dataset = dataset.select(range(max_samples))
        sets[name], skipped[name] = dataset, len(bundle.skipped)
    return sets, skipped


class IMLEvaluationDataset(torch.utils.data.Dataset):
    """Evaluation view of an IML `datasets.Dataset`: decode, optionally degrade (`Perturbation`, seeded by the
    index), process.

    Items are `{"pixel_values", "labels"}` at the model input size (with `process=False` instead `"image"`, the
    decoded, degraded image, for predictors that size it themselves) plus `"mask"`, the ground truth at the
    original image size (bool NumPy array), against which the metrics are computed, and `"index"`, the row.
    """

    def __init__(
        self, dataset, processor, perturbation: Perturbation | None = None, seed: int = 0, process: bool = True
    ):
        from ..data import with_decoding

        self.rows = with_decoding(dataset.select_columns(["image", "mask"]))
        self.processor = processor
        self.perturbation = perturbation
        self.seed = int(seed)
        self.process = process

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[int(index)]
        image, mask = row["image"], row["mask"]
        if self.perturbation is not None:
            image = self.perturbation(image, derive_seed(self.seed, _PERTURBATION_STREAM, index))
        item = {"mask": np.asarray(mask, dtype=bool), "index": int(index)}
        if not self.process:
            return {"image": np.asarray(image), **item}
        encoding = self.processor(images=image, segmentation_maps=mask, return_tensors="pt")
        return {"pixel_values": encoding["pixel_values"][0], "labels": encoding["labels"][0], **item}


def collate_iml(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape (`pixel_values`, `labels`); keep anything else (original-size masks) as lists."""
    batch: dict[str, Any] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor) and all(value.shape == values[0].shape for value in values):
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch
