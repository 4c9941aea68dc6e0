"""Specification of `SparseViTConfig` beyond transformers' common config tests: named sizes and labels."""

import pytest
import torch

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.configuration_sparsevit import (
    PRESETS,
    PUBLISHED_FUSED_BLOCKS,
    PUBLISHED_SPARSITY_RATES,
    scaled_sparsity_schedule,
)


def test_scaled_schedule_keeps_the_published_pattern():
    rates, fused = scaled_sparsity_schedule(20, 7)
    assert rates == [list(r) for r in PUBLISHED_SPARSITY_RATES]
    assert fused == [list(b) for b in PUBLISHED_FUSED_BLOCKS]
    assert scaled_sparsity_schedule(4, 2) == ([[8, 4, 2, 1], [2, 1]], [[0, 1, 2, 3], [0, 1]])
    assert scaled_sparsity_schedule(8, 3) == ([[8, 8, 4, 4, 2, 2, 1, 1], [2, 2, 1]], [[1, 3, 5, 7], [1, 2]])
    with pytest.raises(ValueError, match="must be positive"):
        scaled_sparsity_schedule(0, 2)


def test_presets_build_working_models():
    assert list(PRESETS) == ["published", "small", "tiny"]
    small = SparseViTConfig.from_preset("small")
    assert small.hidden_sizes == [32, 64, 128, 256] and small.depths == [1, 2, 4, 2]
    assert small.attention_head_size == 32 and small.fusion_hidden_size == 256
    assert small.sparsity_rates == [[8, 4, 2, 1], [2, 1]] and small.fused_blocks == [[0, 1, 2, 3], [0, 1]]
    model = SparseViTForManipulationLocalization(small).eval()
    assert 2.5e6 < sum(p.numel() for p in model.parameters()) < 3.2e6
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 64, 64)).logits.shape == (1, 1, 4, 4)
    assert SparseViTConfig.from_preset("published").to_dict() == SparseViTConfig().to_dict()
    tiny = SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny"))
    assert sum(p.numel() for p in tiny.parameters()) < 2e5


def test_preset_overrides_keep_the_schedule_consistent():
    assert SparseViTConfig.from_preset("tiny", drop_path_rate=0.3).drop_path_rate == 0.3
    deeper = SparseViTConfig.from_preset("small", depths=[1, 2, 8, 3])
    assert deeper.sparsity_rates == [[8, 8, 4, 4, 2, 2, 1, 1], [2, 2, 1]]
    assert deeper.fused_blocks == [[1, 3, 5, 7], [1, 2]]
    # Given rates without fused blocks: the head reads the end of every run of equal rate.
    custom = SparseViTConfig.from_preset("tiny", sparsity_rates=[[2, 2], [1, 1]])
    assert custom.fused_blocks == [[1], [1]]
    with pytest.raises(ValueError, match="unknown model preset 'huge'; choose one of published, small, tiny"):
        SparseViTConfig.from_preset("huge")


def test_labels_are_authentic_and_manipulated_by_default():
    config = SparseViTConfig()
    assert config.id2label == {0: "authentic", 1: "manipulated"}
    assert config.label2id == {"authentic": 0, "manipulated": 1}
    assert config.num_labels == 2
    assert SparseViTConfig(num_labels=2).id2label == {0: "authentic", 1: "manipulated"}
    renamed = SparseViTConfig(id2label={0: "pristine", 1: "tampered"})
    assert renamed.label2id == {"pristine": 0, "tampered": 1}


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"num_labels": 1}, "num_labels=1"),
        ({"num_labels": 5}, "num_labels=5"),
        ({"id2label": {0: "background", 1: "spliced", 2: "copy-move"}}, "id2label"),
    ],
)
def test_other_label_counts_are_refused(kwargs, shown):
    """The head has one output channel: a config that promises several classes would be silently ignored."""
    with pytest.raises(ValueError, match="one channel") as error:
        SparseViTConfig(**kwargs)
    assert shown in str(error.value)


def test_label_count_cannot_change_later(tmp_path):
    config = SparseViTConfig()
    with pytest.raises(ValueError, match="num_labels=3"):
        config.num_labels = 3
    config.num_labels = 2
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=4"):
        SparseViTConfig.from_pretrained(tmp_path, num_labels=4)
    with pytest.raises(ValueError, match="num_labels=4"):
        SparseViTForManipulationLocalization.from_pretrained(tmp_path, num_labels=4)
