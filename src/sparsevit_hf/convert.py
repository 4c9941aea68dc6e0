"""Convert the official SparseViT checkpoint, or initialise from ImageNet UniFormer-B, into a `save_pretrained` folder.

    sparsevit-convert --checkpoint sparsevit.pth --output-dir sparsevit-hf
    sparsevit-convert --uniformer uniformer_base_ls_in1k.pth --output-dir sparsevit-imagenet [--official-reinit]
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .configuration_sparsevit import SparseViTConfig
from .modeling_sparsevit import SparseViTForManipulationLocalization


class CheckpointError(ValueError):
    """The checkpoint does not match the SparseViT layout."""


# Official backbone names -> ours, as regular expressions over the key without its `encoder_net.` prefix.
# Conv stages are `blocks1`/`blocks2`, attention stages `blocks3`/`blocks4`; the attention blocks own a
# `pos_embed` their forward never calls, and the backbone's `norm1`/`norm2` are never used: those are dead.
_BACKBONE_RULES = [
    (r"patch_embed(\d)\.proj\.(.+)", lambda m: f"stages.{int(m[1]) - 1}.patch_embeddings.projection.{m[2]}"),
    (r"patch_embed(\d)\.norm\.(.+)", lambda m: f"stages.{int(m[1]) - 1}.patch_embeddings.layernorm.{m[2]}"),
    (r"blocks([12])\.(\d+)\.pos_embed\.(.+)", lambda m: f"{_block(m)}.position_conv.{m[3]}"),
    (r"blocks([12])\.(\d+)\.(norm1|norm2|conv1|conv2)\.(.+)", lambda m: f"{_block(m)}.{m[3]}.{m[4]}"),
    (r"blocks([12])\.(\d+)\.attn\.(.+)", lambda m: f"{_block(m)}.spatial_conv.{m[3]}"),
    (r"blocks([12])\.(\d+)\.mlp\.(fc1|fc2)\.(.+)", lambda m: f"{_block(m)}.mlp.{m[3]}.{m[4]}"),
    (r"blocks([34])\.(\d+)\.gamma_([12])", lambda m: f"{_block(m)}.layer_scale_{m[3]}"),
    (r"blocks([34])\.(\d+)\.norm1\.(.+)", lambda m: f"{_block(m)}.layernorm_before.{m[3]}"),
    (r"blocks([34])\.(\d+)\.norm2\.(.+)", lambda m: f"{_block(m)}.layernorm_after.{m[3]}"),
    (r"blocks([34])\.(\d+)\.attn\.(qkv|proj)\.(.+)", lambda m: f"{_block(m)}.attention.{m[3]}.{m[4]}"),
    (r"blocks([34])\.(\d+)\.mlp\.(fc1|fc2)\.(.+)", lambda m: f"{_block(m)}.mlp.{m[3]}.{m[4]}"),
    (r"blocks([34])\.(\d+)\.mlp\.dwconv\.dwconv\.(.+)", lambda m: f"{_block(m)}.mlp.depthwise_conv.{m[3]}"),
    (r"norm([34])\.(.+)", lambda m: f"stages.{int(m[1]) - 1}.layernorm.{m[2]}"),
]
_DEAD_BACKBONE_KEYS = [r"blocks[34]\.\d+\.pos_embed\..+", r"norm[12]\..+"]
# The UniFormer ImageNet classifier's final norm and head have no counterpart.
_UNIFORMER_UNUSED_KEYS = [r"norm\..+", r"head\..+"]
# What an ImageNet UniFormer-B checkpoint cannot provide (the `plain` variant also lacks the layer scales).
_UNIFORMER_MISSING_KEYS = [
    r"sparsevit\.stages\.[23]\.blocks\.\d+\.mlp\.depthwise_conv\..+",
    r"sparsevit\.stages\.[23]\.layernorm\..+",
    r"sparsevit\.stages\.[23]\.blocks\.\d+\.layer_scale_[12]",
    r"fusion_head\..+",
]


def _block(match: re.Match) -> str:
    return f"stages.{int(match[1]) - 1}.blocks.{match[2]}"


def _matches(key: str, patterns: list[str]) -> bool:
    return any(re.fullmatch(pattern, key) for pattern in patterns)


@dataclass
class ConversionReport:
    converted: int = 0
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a `.pth` checkpoint safely (tensors only), unwrap `{"model": ...}` and strip a `module.` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"Could not read {path} as a PyTorch checkpoint: {error}") from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path} holds no state dict (a mapping of names to tensors, or one under 'model').")
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def _rename_backbone(key: str) -> str | None:
    for pattern, rename in _BACKBONE_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return "sparsevit." + rename(match)
    return None


def convert_official_state_dict(
    state_dict: dict[str, torch.Tensor], config: SparseViTConfig
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Official `SparseViT_Mul` names -> `SparseViTForManipulationLocalization` names (no shape checks here)."""
    report = ConversionReport()
    converted, unknown = {}, []
    gammas = {}
    for key, tensor in state_dict.items():
        if key.startswith("encoder_net."):
            inner = key.removeprefix("encoder_net.")
            if _matches(inner, _DEAD_BACKBONE_KEYS):
                report.dropped.append(key)
                continue
            new_key = _rename_backbone(inner)
        elif match := re.fullmatch(r"lmu\.gamma(\d)", key):
            gammas[int(match[1])] = tensor
            continue
        elif match := re.fullmatch(r"lmu\.conv_layer(\d)\.(weight|bias)", key):
            new_key = f"fusion_head.projections.{int(match[1]) - 1}.{match[2]}"
            tensor = tensor.flatten(1) if match[2] == "weight" else tensor
        elif match := re.fullmatch(r"lmu\.conv_last\.(weight|bias)", key):
            new_key = f"fusion_head.classifier.{match[1]}"
            tensor = tensor.flatten(1) if match[1] == "weight" else tensor
        elif match := re.fullmatch(r"lmu\.norm\.(weight|bias)", key):
            new_key = f"fusion_head.layernorm.{match[1]}"
        else:
            new_key = None
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = tensor
    if gammas:
        expected = list(range(1, len(config.fused_blocks[0]) + len(config.fused_blocks[1]) + 1))
        if sorted(gammas) != expected:
            raise CheckpointError(f"Fusion weights lmu.gamma{sorted(gammas)} do not match lmu.gamma{expected}.")
        converted["fusion_head.fusion_weights"] = torch.stack([gammas[i] for i in expected])
    if unknown:
        if not converted:
            raise CheckpointError(
                f"This is not an official SparseViT checkpoint: none of its {len(state_dict)} keys has the "
                f"`encoder_net.` or `lmu.` names of SparseViT (first keys: {sorted(state_dict)[:5]})."
            )
        raise CheckpointError(f"Unexpected keys in the checkpoint: {listing(unknown)}")
    report.converted = len(converted)
    return converted, report


def convert_uniformer_state_dict(
    state_dict: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """ImageNet UniFormer-B (`backbone.` prefix optional) -> backbone names of SparseViT."""
    report = ConversionReport()
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        inner = key.removeprefix("backbone.")
        if _matches(inner, _UNIFORMER_UNUSED_KEYS + _DEAD_BACKBONE_KEYS):
            report.dropped.append(key)
            continue
        new_key = _rename_backbone(inner)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = tensor
    if not converted:
        raise CheckpointError(
            f"This is not a UniFormer checkpoint: none of its {len(state_dict)} keys has UniFormer's names "
            f"(first keys: {sorted(state_dict)[:5]})."
        )
    if unknown:
        raise CheckpointError(f"Unexpected keys in the UniFormer checkpoint: {listing(unknown)}")
    report.converted = len(converted)
    return converted, report


def listing(keys: list[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} keys: {shown}" + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into_model(
    model: nn.Module, state_dict: dict[str, torch.Tensor], allowed_missing: list[str], report: ConversionReport
) -> None:
    """Copy tensors into `model`; any missing key outside `allowed_missing` or any shape mismatch is an error."""
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(key for key in set(expected) - set(state_dict))
    not_allowed = [key for key in missing if not _matches(key, allowed_missing)]
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(state_dict) & set(expected))
        if state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if unexpected:
        problems.append(f"keys the model does not have: {listing(unexpected)}")
    if not_allowed:
        problems.append(f"keys missing from the checkpoint: {listing(not_allowed)}")
    if mismatched:
        problems.append(f"shape mismatches: {listing(mismatched)}")
    if problems:
        raise CheckpointError("The checkpoint does not fit the SparseViT configuration; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=False)
    report.missing = missing


@torch.no_grad()
def official_reinit(model: SparseViTForManipulationLocalization) -> None:
    """What the official training code does after loading UniFormer: its weight initialiser runs again over the
    backbone, so every Linear (truncated normal, std 0.02, zero bias) and every LayerNorm (ones, zeros) is reset,
    which leaves only the convolutions, BatchNorms and layer scales of the ImageNet weights."""
    for module in model.sparsevit.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def convert_official_checkpoint(path: str | Path, config: SparseViTConfig | None = None):
    """Build `SparseViTForManipulationLocalization` holding the official checkpoint's weights."""
    config = config or SparseViTConfig()
    state_dict, report = convert_official_state_dict(load_state_dict(path), config)
    model = SparseViTForManipulationLocalization(config)
    load_into_model(model, state_dict, allowed_missing=[], report=report)
    return model.eval(), report


def init_from_uniformer(path: str | Path, config: SparseViTConfig | None = None, reinit: bool = False):
    """Build a fresh SparseViT whose backbone starts from ImageNet UniFormer-B (`ls` or plain variant)."""
    config = config or SparseViTConfig()
    state_dict, report = convert_uniformer_state_dict(load_state_dict(path))
    model = SparseViTForManipulationLocalization(config)
    load_into_model(model, state_dict, allowed_missing=_UNIFORMER_MISSING_KEYS, report=report)
    if reinit:
        official_reinit(model)
    return model, report
