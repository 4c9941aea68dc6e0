"""`config.official_grouping_size`: the official code's grouping at any input size, opt-in.

The official code keeps, per block, the group side that its sparsity rate gives at 512 x 512 (32 // S in stage 3,
16 // S in stage 4), so at other sizes the rate follows the token grid. The model tests use every published rate,
one block each, on narrow widths (the rule depends only on the grids and the rates), so they stay fast.
"""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from reference_sparsevit import official_group_sides, official_shapes, random_official_state_dict, reference_logits
from torch.nn import functional as F

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.convert import convert_official_state_dict, load_into_model


def narrow_published_config(**kwargs):
    return SparseViTConfig(
        depths=[1, 1, 4, 2],
        sparsity_rates=[[8, 4, 2, 1], [2, 1]],
        fused_blocks=[[0, 1, 2, 3], [0, 1]],
        hidden_sizes=[8, 16, 32, 64],
        attention_head_size=16,
        fusion_hidden_size=64,
        drop_path_rate=0.0,
        **kwargs,
    )


def converted(config, seed=0):
    shapes = official_shapes(
        config.hidden_sizes,
        config.depths,
        (len(config.fused_blocks[0]), len(config.fused_blocks[1])),
        fusion=config.fusion_hidden_size,
    )
    official = random_official_state_dict(shapes, seed=seed)
    state_dict, report = convert_official_state_dict(official, config)
    model = SparseViTForManipulationLocalization(config)
    load_into_model(model, state_dict, allowed_missing=[], report=report)
    return model.eval(), official


def reference(official, config, pixel_values, group_sides=None):
    return reference_logits(
        official,
        pixel_values,
        config.depths,
        config.sparsity_rates,
        config.fused_blocks,
        config.attention_head_size,
        group_sides=group_sides,
    )


def upsampled(logits, size):
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def test_the_group_sides_are_the_official_ones_at_512():
    config = SparseViTConfig(official_grouping_size=512)
    sides = [[config.official_group_side(2, s) for s in config.sparsity_rates[0]]]
    sides.append([config.official_group_side(3, s) for s in config.sparsity_rates[1]])
    assert sides == [[4] * 5 + [8] * 5 + [16] * 5 + [32] * 5, [8] * 4 + [16] * 3]
    assert sides == official_group_sides(config.sparsity_rates, 512)
    assert SparseViTConfig().official_group_side(2, 8) is None  # off by default


@pytest.mark.parametrize("size", [(1024, 1024), (768, 512)])
def test_with_the_option_the_model_matches_the_official_grouping_away_from_512(size):
    config = narrow_published_config(official_grouping_size=512)
    model, official = converted(config, seed=4)
    pixel_values = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(pixel_values).logits
    expected = reference(official, config, pixel_values, official_group_sides(config.sparsity_rates, 512))
    kept_rates = reference(official, config, pixel_values)
    assert (upsampled(expected, size) - upsampled(kept_rates, size)).abs().max() > 1e-2  # the rule matters here
    torch.testing.assert_close(upsampled(logits, size), upsampled(expected, size), atol=1e-4, rtol=0)


def test_without_the_option_the_model_keeps_the_rates_at_any_size():
    config = narrow_published_config()
    model, official = converted(config, seed=4)
    pixel_values = torch.randn(1, 3, 768, 512, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(pixel_values).logits
    torch.testing.assert_close(logits, reference(official, config, pixel_values), atol=1e-4, rtol=0)


def test_at_512_the_option_changes_nothing():
    pixel_values = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(6))
    outputs = []
    for grouping in (None, 512):
        model, _ = converted(narrow_published_config(official_grouping_size=grouping), seed=7)
        with torch.no_grad():
            outputs.append(model(pixel_values).logits)
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


def test_the_option_is_saved_with_the_config_and_can_be_set_when_loading(tmp_path):
    model = SparseViTForManipulationLocalization(narrow_published_config())
    model.save_pretrained(tmp_path)
    loaded = SparseViTForManipulationLocalization.from_pretrained(tmp_path, official_grouping_size=512)
    assert loaded.config.official_grouping_size == 512
    loaded.save_pretrained(tmp_path / "again")
    assert SparseViTConfig.from_pretrained(tmp_path / "again").official_grouping_size == 512


@pytest.mark.parametrize("size", [0, 100, -32])
def test_an_official_grouping_size_that_is_not_a_multiple_of_32_is_refused(size):
    with pytest.raises(StrictDataclassClassValidationError, match="official_grouping_size"):
        SparseViTConfig(official_grouping_size=size)
