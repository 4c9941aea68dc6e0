"""Behaviour of the SparseViT model: fidelity to the published computation, any input size, outputs, errors."""

import csv
import math

import pytest
import torch
from reference_sparsevit import official_shapes, random_official_state_dict, reference_logits
from torch.nn import functional as F

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTModel
from sparsevit_hf.convert import convert_official_state_dict, load_into_model

PUBLISHED_PARAMETERS = 50_345_921
# The official attention blocks' unused pos_embed (27 depthwise 3x3 convs) and the unused backbone norm1/norm2.
DEAD_PARAMETERS = 20 * (320 * 9 + 320) + 7 * (512 * 9 + 512) + 2 * (64 + 128)


def converted_model(config, seed=0, attn_implementation="sdpa"):
    shapes = official_shapes(
        config.hidden_sizes,
        config.depths,
        (len(config.fused_blocks[0]), len(config.fused_blocks[1])),
        fusion=config.fusion_hidden_size,
    )
    official = random_official_state_dict(shapes, seed=seed)
    state_dict, report = convert_official_state_dict(official, config)
    config._attn_implementation = attn_implementation
    model = SparseViTForManipulationLocalization(config)
    load_into_model(model, state_dict, allowed_missing=[], report=report)
    return model.eval(), official


def reference(official, config, pixel_values):
    return reference_logits(
        official, pixel_values, config.depths, config.sparsity_rates, config.fused_blocks, config.attention_head_size
    )


def test_official_names_and_shapes_generated_by_the_tests_match_the_published_checkpoint(shared_dir):
    table = (shared_dir / "reference" / "official_state_dict_keys.tsv").read_text()
    rows = list(csv.reader(table.splitlines(), delimiter="\t"))[1:]
    published = {key: () if shape == "scalar" else tuple(map(int, shape.split("x"))) for key, shape, _ in rows}
    assert official_shapes([64, 128, 320, 512], [5, 8, 20, 7], (4, 2)) == published


def test_published_model_has_the_official_parameters_minus_the_dead_ones():
    model = SparseViTForManipulationLocalization(SparseViTConfig())
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS - DEAD_PARAMETERS


def test_published_model_reproduces_the_reference_forward_at_512():
    config = SparseViTConfig()
    model, official = converted_model(config)
    pixel_values = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(pixel_values).logits
    expected = reference(official, config, pixel_values)
    size = (512, 512)
    upsampled = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    expected = F.interpolate(expected, size=size, mode="bilinear", align_corners=False)
    assert logits.shape == (1, 1, 32, 32)
    assert expected.abs().max() > 0.5  # a degenerate network would make the comparison meaningless
    torch.testing.assert_close(upsampled, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("size", [(64, 64), (128, 96), (96, 160), (160, 64)])
def test_tiny_model_matches_the_reference_on_grids_divisible_or_not_by_the_sparsity(
    tiny_config, size, attn_implementation
):
    model, official = converted_model(tiny_config, seed=3, attn_implementation=attn_implementation)
    pixel_values = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(pixel_values).logits
    torch.testing.assert_close(logits, reference(official, tiny_config, pixel_values), atol=1e-5, rtol=1e-5)


def test_inputs_not_multiple_of_32_are_zero_padded_bottom_right_and_logits_cropped(tiny_config):
    model, official = converted_model(tiny_config)
    pixel_values = torch.randn(1, 3, 33, 70)
    with torch.no_grad():
        logits = model(pixel_values).logits
    assert logits.shape == (1, 1, math.ceil(33 / 16), math.ceil(70 / 16))
    padded = F.pad(pixel_values, (0, 96 - 70, 0, 64 - 33))
    expected = reference(official, tiny_config, padded)[..., :3, :5]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_attention_give_the_same_outputs(tiny_config):
    pixel_values = torch.randn(2, 3, 96, 160)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model, _ = converted_model(tiny_config, seed=5, attn_implementation=implementation)
        with torch.no_grad():
            outputs[implementation] = model(pixel_values).logits
    torch.testing.assert_close(outputs["eager"], outputs["sdpa"], atol=1e-5, rtol=1e-5)


def test_sdpa_is_the_default_attention(tiny_config):
    assert SparseViTModel(tiny_config).config._attn_implementation == "sdpa"


def test_attentions_are_computed_on_request_even_with_sdpa(tiny_config):
    model, _ = converted_model(tiny_config, attn_implementation="sdpa")
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 96, 160), output_attentions=True)
    # Stage 3 grid is 6 x 10: S=4 gives 16 groups of up to 2 x 3 tokens (padded to 2 x 3), S=2 gives 4 of 3 x 5;
    # stage 4 is 3 x 5: S=2 gives 4 groups of 2 x 3 (padded to 4 x 6).
    shapes = [tuple(a.shape) for a in outputs.attentions]
    assert shapes == [
        (2, 16, 2, 6, 6), (2, 16, 2, 6, 6), (2, 4, 2, 15, 15), (2, 1, 2, 60, 60), (2, 4, 4, 6, 6), (2, 1, 4, 15, 15)
    ]
    for attention in outputs.attentions:
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))
    # Grid rows 6, 7 do not exist for S=4 groups of row offset 2 and 3: padded keys get no weight.
    first = outputs.attentions[0].view(2, 4, 4, 2, 6, 2, 3)
    assert first[:, 2:, :, :, :, 1, :].abs().max() == 0


def test_hidden_states_hold_the_stem_and_every_block(tiny_config):
    model = converted_model(tiny_config)[0].sparsevit
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96), output_hidden_states=True)
    shapes = [tuple(h.shape) for h in outputs.hidden_states]
    assert shapes == [(1, 8, 16, 24), (1, 8, 16, 24), (1, 16, 8, 12)] + [(1, 32, 4, 6)] * 4 + [(1, 64, 2, 3)] * 2
    assert outputs.last_hidden_state.shape == (1, 64, 2, 3)
    assert [tuple(f.shape[1:]) for f in outputs.feature_maps] == [(32, 4, 6), (32, 4, 6), (64, 2, 3), (64, 2, 3)]
    # The last fused map of each stage passed through the stage's LayerNorm; hidden states are raw block outputs.
    assert not torch.allclose(outputs.feature_maps[1], outputs.hidden_states[6])
    torch.testing.assert_close(outputs.feature_maps[0], outputs.hidden_states[4])


def test_return_dict_false_gives_a_tuple(tiny_config):
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64), return_dict=False)
    assert isinstance(outputs, tuple) and outputs[0].shape == (1, 1, 4, 4)


@pytest.mark.parametrize("label_shape", ["bhw", "b1hw"])
@pytest.mark.parametrize("label_dtype", [torch.float32, torch.int64, torch.bool])
def test_loss_is_bce_of_logits_upsampled_to_the_label_size(tiny_config, label_shape, label_dtype):
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    labels = torch.rand(2, 64, 64) > 0.7
    with torch.no_grad():
        outputs = model(pixel_values, labels=(labels if label_shape == "bhw" else labels[:, None]).to(label_dtype))
    upsampled = F.interpolate(outputs.logits, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    expected = F.binary_cross_entropy_with_logits(upsampled, labels.float())
    torch.testing.assert_close(outputs.loss, expected)


def test_dice_loss_weight_adds_a_soft_dice_term_over_the_batch(tiny_config):
    pixel_values = torch.randn(2, 3, 64, 64)
    labels = torch.rand(2, 64, 64) > 0.7
    tiny_config.dice_loss_weight = 0.5
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    with torch.no_grad():
        outputs = model(pixel_values, labels=labels)
    upsampled = F.interpolate(outputs.logits, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    bce = F.binary_cross_entropy_with_logits(upsampled, labels.float())
    p = upsampled.sigmoid()
    dice = (2 * (p * labels).sum() + 1) / (p.sum() + labels.sum() + 1)
    torch.testing.assert_close(outputs.loss, bce + 0.5 * (1 - dice))
    assert SparseViTConfig().dice_loss_weight == 0  # the official loss unless asked


def test_labels_that_are_not_binary_masks_are_rejected(tiny_config):
    model = SparseViTForManipulationLocalization(tiny_config)
    with pytest.raises(ValueError, match="binary masks"):
        model(torch.randn(1, 3, 64, 64), labels=torch.full((1, 64, 64), 255))
    with pytest.raises(ValueError, match=r"labels must have shape"):
        model(torch.randn(1, 3, 64, 64), labels=torch.zeros(2, 64, 64))


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (torch.randn(1, 1, 64, 64), "1 channels but the model expects 3"),
        (torch.randn(1, 3, 31, 64), "needs at least 32 x 32"),
        (torch.randn(3, 64, 64), "batch, channels, height, width"),
        (torch.full((1, 3, 64, 64), float("nan")), "NaN or infinite"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating point"),
    ],
)
def test_bad_pixel_values_are_rejected_with_a_clear_message(tiny_config, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        SparseViTModel(tiny_config)(pixel_values)


def test_value_checks_never_read_tensors_off_the_cpu(tiny_config):
    """On an accelerator, reading a NaN check or a binary-label check back to the host would stall every step; the
    image processor checks those values before the transfer. The meta device has no values at all: a forward on it
    passes only if the model never asks for one."""
    model = SparseViTForManipulationLocalization(tiny_config).to("meta")
    pixel_values = torch.empty(2, 3, 64, 96, device="meta")
    outputs = model(pixel_values, labels=torch.empty(2, 64, 96, device="meta"))
    assert outputs.logits.shape == (2, 1, 4, 6) and outputs.loss.device.type == "meta"
    # The checks of shapes and types need no values and stay on every device.
    with pytest.raises(ValueError, match="needs at least 32 x 32"):
        model(torch.empty(1, 3, 16, 64, device="meta"))
    with pytest.raises(ValueError, match=r"labels must have shape"):
        model(pixel_values, labels=torch.empty(3, 64, 96, device="meta"))


def test_every_parameter_is_used(tiny_config):
    tiny_config.layer_scale_init_value = 0.5  # tiny layer scales would make some gradients underflow to zero
    model = SparseViTForManipulationLocalization(tiny_config).train()
    outputs = model(torch.randn(2, 3, 64, 64), labels=torch.rand(2, 64, 64) > 0.5)
    outputs.loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert unused == []


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_config):
    tiny_config.layer_scale_init_value = 0.5
    pixel_values, labels = torch.randn(2, 3, 64, 64), torch.rand(2, 64, 64) > 0.5
    torch.manual_seed(0)
    model = SparseViTForManipulationLocalization(tiny_config).train()
    gradients = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable()
        model.zero_grad()
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert model.is_activation_checkpointing
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_drop_path_rises_linearly_to_the_configured_rate():
    model = SparseViTModel(SparseViTConfig(drop_path_rate=0.2))
    rates = [
        getattr(block.drop_path, "drop_prob", 0.0) for stage in model.stages for block in stage.blocks
    ]
    assert len(rates) == 40 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert rates[20] == pytest.approx(0.2 * 20 / 39)


def test_initialisation_follows_the_config(tiny_config):
    tiny_config.layer_scale_init_value = 1e-3
    model = SparseViTForManipulationLocalization(tiny_config)
    block = model.sparsevit.stages[2].blocks[0]
    assert torch.all(block.layer_scale_1 == 1e-3) and torch.all(model.fusion_head.fusion_weights == 1e-3)
    assert torch.all(block.attention.qkv.bias == 0)
    assert block.attention.qkv.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_save_and_reload_gives_identical_outputs(tiny_config, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation

    model, _ = converted_model(tiny_config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    pixel_values = torch.randn(1, 3, 64, 96)
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, SparseViTForManipulationLocalization)
    assert AutoConfig.from_pretrained(tmp_path).sparsity_rates == tiny_config.sparsity_rates
    backbone = AutoModel.from_pretrained(tmp_path)
    assert isinstance(backbone, SparseViTModel)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, reloaded(pixel_values).logits)
