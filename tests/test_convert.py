"""Conversion of the official checkpoint and of ImageNet UniFormer-B weights."""

import json

import pytest
import torch
from reference_sparsevit import official_shapes, random_official_state_dict

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.cli.convert import main
from sparsevit_hf.convert import CheckpointError, convert_official_checkpoint, init_from_uniformer


def tiny_official(config, seed=0):
    shapes = official_shapes(
        config.hidden_sizes, config.depths, tuple(map(len, config.fused_blocks)), fusion=config.fusion_hidden_size
    )
    return random_official_state_dict(shapes, seed=seed)


def uniformer_state_dict(official, plain=False):
    """What an ImageNet UniFormer-B checkpoint holds: the backbone (no mlp dwconv, no stage norms), `norm`, `head`."""
    state = {}
    for key, tensor in official.items():
        if not key.startswith("encoder_net."):
            continue
        key = key.removeprefix("encoder_net.")
        if ".mlp.dwconv." in key or key.split(".")[0] in {"norm1", "norm2", "norm3", "norm4"}:
            continue
        if plain and ".gamma_" in key:
            continue
        state["backbone." + key] = tensor
    last = official["encoder_net.norm4.weight"].shape[0]
    state |= {"backbone.norm.weight": torch.ones(last), "backbone.norm.bias": torch.zeros(last)}
    state |= {"backbone.head.weight": torch.randn(1000, last), "backbone.head.bias": torch.zeros(1000)}
    return {"model": state}


def test_cli_converts_the_published_checkpoint_into_a_loadable_folder(tmp_path, capsys):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    official = random_official_state_dict(official_shapes([64, 128, 320, 512], [5, 8, 20, 7], (4, 2)), seed=1)
    checkpoint = tmp_path / "sparsevit.pth"
    torch.save({"model": {f"module.{k}": v for k, v in official.items()}, "epoch": 199}, checkpoint)

    assert main(["--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "out")]) == 0

    report = capsys.readouterr().out
    assert "dropped 58 unused tensors" in report  # 27 attention-block pos_embed convs (weight, bias), norm1, norm2
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "out")
    assert isinstance(model, SparseViTForManipulationLocalization)
    state = model.state_dict()
    torch.testing.assert_close(
        state["sparsevit.stages.2.blocks.7.attention.qkv.weight"], official["encoder_net.blocks3.7.attn.qkv.weight"]
    )
    torch.testing.assert_close(
        state["sparsevit.stages.0.blocks.2.spatial_conv.weight"], official["encoder_net.blocks1.2.attn.weight"]
    )
    torch.testing.assert_close(state["fusion_head.fusion_weights"][4], official["lmu.gamma5"])
    torch.testing.assert_close(state["fusion_head.classifier.weight"], official["lmu.conv_last.weight"].flatten(1))
    assert state["sparsevit.stages.1.blocks.0.norm1.num_batches_tracked"] == 7
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert type(processor).__name__ == "SparseViTImageProcessor"
    assert set(json.loads((tmp_path / "out" / "config.json").read_text())["auto_map"]) == {
        "AutoConfig", "AutoModel", "AutoModelForSemanticSegmentation", "AutoImageProcessor"
    }


def test_a_bare_state_dict_converts_like_a_wrapped_one(tiny_config, tmp_path):
    official = tiny_official(tiny_config)
    torch.save(official, tmp_path / "bare.pth")
    torch.save({"model": official}, tmp_path / "wrapped.pth")
    bare, _ = convert_official_checkpoint(tmp_path / "bare.pth", tiny_config)
    wrapped, report = convert_official_checkpoint(tmp_path / "wrapped.pth", tiny_config)
    for key, tensor in bare.state_dict().items():
        torch.testing.assert_close(tensor, wrapped.state_dict()[key])
    assert report.missing == []
    assert any("pos_embed" in key for key in report.dropped)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda sd: sd.update({"lmu.extra.weight": torch.zeros(1)}), r"Unexpected keys.*lmu\.extra\.weight"),
        (lambda sd: sd.pop("encoder_net.blocks3.1.attn.proj.bias"), r"missing.*stages\.2\.blocks\.1\.attention\.proj"),
        (
            lambda sd: sd.update({"encoder_net.blocks4.0.mlp.fc1.weight": torch.zeros(3, 3)}),
            r"shape mismatches.*stages\.3\.blocks\.0\.mlp\.fc1\.weight: checkpoint \(3, 3\)",
        ),
    ],
    ids=["unexpected", "missing", "shape"],
)
def test_checkpoints_that_do_not_fit_are_errors_that_list_the_keys(tiny_config, tmp_path, corrupt, message):
    official = tiny_official(tiny_config)
    corrupt(official)
    torch.save(official, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message):
        convert_official_checkpoint(tmp_path / "bad.pth", tiny_config)


def test_a_checkpoint_of_another_model_is_named_as_such(tmp_path, capsys):
    torch.save({"model": {"conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(3)}}, tmp_path / "resnet.pth")
    assert main(["--checkpoint", str(tmp_path / "resnet.pth"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "not an official SparseViT checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pickled_objects_are_refused_by_the_safe_loader(tmp_path):
    torch.save({"model": {"a": torch.zeros(1)}, "args": object()}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="Could not read"):
        convert_official_checkpoint(tmp_path / "unsafe.pth")


def test_a_missing_file_is_reported(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.pth"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("plain", [False, True], ids=["ls", "plain"])
def test_uniformer_initialisation_keeps_the_imagenet_backbone(tiny_config, tmp_path, plain):
    official = tiny_official(tiny_config)
    torch.save(uniformer_state_dict(official, plain=plain), tmp_path / "uniformer.pth")
    model, report = init_from_uniformer(tmp_path / "uniformer.pth", tiny_config)
    state = model.state_dict()
    torch.testing.assert_close(
        state["sparsevit.stages.3.blocks.1.attention.qkv.weight"], official["encoder_net.blocks4.1.attn.qkv.weight"]
    )
    torch.testing.assert_close(
        state["sparsevit.stages.0.blocks.0.norm2.running_var"], official["encoder_net.blocks1.0.norm2.running_var"]
    )
    assert {"backbone.norm.weight", "backbone.head.weight"} <= set(report.dropped)
    assert any("depthwise_conv" in key for key in report.missing)
    assert any("layer_scale" in key for key in report.missing) == plain
    if not plain:
        torch.testing.assert_close(
            state["sparsevit.stages.2.blocks.0.layer_scale_1"], official["encoder_net.blocks3.0.gamma_1"]
        )


def test_official_reinit_resets_linear_and_layernorm_but_keeps_convolutions(tiny_config, tmp_path):
    official = tiny_official(tiny_config)
    torch.save(uniformer_state_dict(official), tmp_path / "uniformer.pth")
    model, _ = init_from_uniformer(tmp_path / "uniformer.pth", tiny_config, reinit=True)
    state = model.state_dict()
    qkv = state["sparsevit.stages.2.blocks.0.attention.qkv.weight"]
    assert not torch.allclose(qkv, official["encoder_net.blocks3.0.attn.qkv.weight"])
    assert qkv.std().item() == pytest.approx(0.02, rel=0.25)
    assert torch.all(state["sparsevit.stages.0.patch_embeddings.layernorm.weight"] == 1)
    torch.testing.assert_close(
        state["sparsevit.stages.2.patch_embeddings.projection.weight"], official["encoder_net.patch_embed3.proj.weight"]
    )
    torch.testing.assert_close(
        state["sparsevit.stages.3.blocks.0.layer_scale_2"], official["encoder_net.blocks4.0.gamma_2"]
    )


def test_official_reinit_needs_uniformer(tmp_path):
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x.pth", "--official-reinit", "--output-dir", str(tmp_path)])


def test_the_published_configuration_is_the_default():
    config = SparseViTConfig()
    assert config.hidden_sizes == [64, 128, 320, 512] and config.depths == [5, 8, 20, 7]
    assert config.sparsity_rates == [[8] * 5 + [4] * 5 + [2] * 5 + [1] * 5, [2] * 4 + [1] * 3]
    assert config.fused_blocks == [[4, 9, 14, 19], [3, 6]]
    assert (config.layer_norm_eps, config.patch_embedding_layer_norm_eps) == (1e-6, 1e-5)
    assert config.id2label == {0: "authentic", 1: "manipulated"}
