"""Training data: the specs loaded and concatenated, the epoch sampler and the augmented view a data loader reads.

Reproducibility contract (what makes `--resume_from_checkpoint` continue exactly):

- the sampler yields `(epoch, index)` pairs drawn from `(seed, epoch)` only (`EpochSampler`), so an epoch's order
  does not depend on how it was reached;
- augmentations of sample `index` in `epoch` are seeded by `(seed, epoch, index)` (`IMLTrainingDataset`), whatever
  the process, the DataLoader worker or the number of samples already drawn;
- the torch RNG (stochastic depth, dropout) is re-seeded before every batch from `(seed, epoch, batch, process)`
  (`batch_seed`), as fairseq does per update, so model randomness does not depend on anything consumed before;
- the optimiser, scheduler, gradient scaler and model (BatchNorm statistics included) are restored by
  `accelerator.load_state`, and the position in the epoch by skipping the batches already consumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..evaluation.sets import collate_iml, is_synthetic_spec
from ..utils import derive_seed

# Seed streams (the second value given to `derive_seed`), one per use, so that no two uses share random numbers.
_AUGMENTATION_STREAM = 0
_BATCH_STREAM = 1
_WARM_UP_IMAGE = np.zeros((32, 32, 3), dtype=np.uint8)


def batch_seed(seed: int, epoch: int, batch_index: int, process_index: int) -> int:
    """Seed of the torch RNG for one training batch (stochastic depth, dropout) of one process."""
    return derive_seed(seed, _BATCH_STREAM, epoch, batch_index, process_index)


@dataclass
class TrainingData:
    """The training `datasets.Dataset` (columns `image`, `mask`, `label`) and its parts, in order: the number of
    samples and the name of each (a combined spec has several), for even sampling per part."""

    dataset: Any
    sizes: list[int]
    names: list[str]

    def truncated(self, limit: int) -> TrainingData:
        """The first `limit` samples, the part sizes cut to match."""
        if limit >= len(self.dataset):
            return self
        sizes, names, total = [], [], 0
        for size, name in zip(self.sizes, self.names):
            take = min(size, limit - total)
            if take <= 0:
                break
            sizes.append(take)
            names.append(name)
            total += take
        return TrainingData(self.dataset.select(range(limit)), sizes, names)


def load_training_data(specs: Sequence[str], max_samples: int | None = None, **loader_options: Any) -> TrainingData:
    """Load and concatenate training data specs (each may itself be combined: `load_iml_bundle`; the synthetic
    data set's `train` split unless the spec names one), cut to `max_samples`. `loader_options` go to
    `load_iml_bundle` (`skip_corrupt`, `synthetic_options`, ...)."""
    from datasets import concatenate_datasets

    from ..data import iml_features, load_iml_bundle

    parts, sizes, names = [], [], []
    for spec in specs:
        bundle = load_iml_bundle(spec, split="train" if is_synthetic_spec(spec) else None, **loader_options)
        parts.append(bundle.dataset.select_columns(["image", "mask", "label"]).cast(iml_features()))
        sizes.extend(bundle.sizes)
        names.extend(bundle.names)
    data = TrainingData(concatenate_datasets(parts) if len(parts) > 1 else parts[0], sizes, names)
    return data if max_samples is None else data.truncated(max_samples)


class EpochSampler(torch.utils.data.Sampler):
    """Yields `(epoch, index)` pairs: the `BalancedSampler` order of the current epoch, tagged with the epoch so
    that the data set can seed each sample's augmentation from `(seed, epoch, index)`.

    `per_dataset` None means one full pass over every part (a seeded permutation for a single data set);
    otherwise that many samples are drawn from each part (the CAT-Net protocol for combined data sets).
    Call `set_epoch` before each epoch (`accelerate`'s data loaders forward it).
    """

    def __init__(self, sizes: Sequence[int], per_dataset: int | Sequence[int] | None = None, seed: int = 0):
        from ..data import BalancedSampler

        sizes = [int(size) for size in sizes]
        self.inner = BalancedSampler(sizes, sizes if per_dataset is None else per_dataset, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.inner.set_epoch(epoch)
        return ((epoch, index) for index in self.inner)


class IMLTrainingDataset(torch.utils.data.Dataset):
    """Training view of an IML `datasets.Dataset`: decode, augment (seeded by `(seed, epoch, index)`), process.

    Items are `{"pixel_values": (3, S, S) float32, "labels": (S, S) float32}`. Keys are `(epoch, index)` pairs
    (`EpochSampler`) or plain indices (epoch 0).
    """

    def __init__(
        self,
        dataset,
        processor,
        image_size: int,
        seed: int = 0,
        augment: bool = True,
        augmentation_kwargs: Mapping[str, Any] | None = None,
    ):
        from ..data import with_decoding

        self.rows = with_decoding(dataset.select_columns(["image", "mask"]))
        self.processor = processor
        self.seed = int(seed)
        self.transform = None
        if augment:
            from ..data.augmentations import training_transforms

            self.transform = training_transforms(image_size, seed=self.seed, **dict(augmentation_kwargs or {}))
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _prepare_worker(self) -> None:
        # `JointTransform` re-seeds itself from the worker's torch seed on its first call inside each DataLoader
        # worker, which would override our explicit per-sample seed for that one call. One throw-away call per
        # worker consumes that automatic re-seed; from then on `set_seed` alone decides.
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self.transform(_WARM_UP_IMAGE, None)
            self._worker_seed = info.seed

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, (tuple, list)) else (0, key)
        row = self.rows[int(index)]
        image, mask = row["image"], row["mask"]
        if self.transform is not None:
            self._prepare_worker()
            self.transform.set_seed(derive_seed(self.seed, _AUGMENTATION_STREAM, epoch, index))
            image, mask = self.transform(image, mask)
        encoding = self.processor(images=image, segmentation_maps=mask, return_tensors="pt")
        return {"pixel_values": encoding["pixel_values"][0], "labels": encoding["labels"][0]}


def training_loader(
    data: TrainingData,
    processor,
    *,
    image_size: int,
    batch_size: int,
    seed: int,
    augment: bool = True,
    samples_per_dataset: int | None = None,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """The training data loader: `EpochSampler` order (one pass, or `samples_per_dataset` from each part; 1840 by
    default when there are several parts, the CAT-Net protocol), full batches only. Raises `ValueError` when an
    epoch holds less than one batch."""
    from ..data import DEFAULT_PER_DATASET

    per_dataset = samples_per_dataset
    if per_dataset is None and len(data.sizes) > 1:
        per_dataset = DEFAULT_PER_DATASET
    sampler = EpochSampler(data.sizes, per_dataset, seed=seed)
    if len(sampler) < batch_size:
        raise ValueError(
            f"an epoch holds {len(sampler)} samples, fewer than one batch of {batch_size}: lower "
            "--per_device_train_batch_size"
        )
    return torch.utils.data.DataLoader(
        IMLTrainingDataset(data.dataset, processor, image_size, seed=seed, augment=augment),
        sampler=sampler,
        batch_size=batch_size,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=collate_iml,
        # Its own generator: creating a loader iterator then never draws from the global torch RNG.
        generator=torch.Generator().manual_seed(seed),
    )
