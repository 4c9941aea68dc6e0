"""Seeds derived from tuples of integers, so that a random draw depends only on what it is for (the seed, the
epoch, the sample) and never on how many draws came before it."""

from __future__ import annotations

import numpy as np


def derive_seed(*values: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (NumPy `SeedSequence`; well mixed, deterministic)."""
    entropy = [int(v) % (1 << 64) for v in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))
