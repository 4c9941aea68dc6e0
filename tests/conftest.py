import os
from pathlib import Path

import pytest

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def tiny_config():
    from sparsevit_hf import SparseViTConfig

    return SparseViTConfig(
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 4, 2],
        attention_head_size=16,
        sparsity_rates=[[4, 4, 2, 1], [2, 1]],
        fused_blocks=[[1, 3], [0, 1]],
        fusion_hidden_size=64,
        drop_path_rate=0.0,
    )


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the project's shared reference folder) is not present")
    return SHARED
