"""Balanced sampling of combined data sets: the same number of samples from every part in each epoch (the CAT-Net
protocol draws 1,840 from each)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

# Samples drawn from each part of a combined data set per epoch in the CAT-Net protocol.
DEFAULT_PER_DATASET = 1840


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
