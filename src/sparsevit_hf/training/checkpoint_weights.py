"""The model weights inside a resumable checkpoint, whatever engine wrote them, as one full state dict.

`accelerator.save_state` writes the model in the engine's own format:

| file or folder in `checkpoint-<step>/` | written by |
|---|---|
| `model.safetensors` | one process, DDP |
| `pytorch_model_fsdp_0/` (`.metadata`, `*.distcp`) | FSDP, `SHARDED_STATE_DICT` (`torch.distributed.checkpoint`) |
| `pytorch_model_fsdp_0.bin` | FSDP, `FULL_STATE_DICT` |
| `pytorch_model/` and `latest` | DeepSpeed (ZeRO partitions; reading them needs `deepspeed`) |

`checkpoint_state_dict` reads any of them in one CPU process, without the process group that wrote them, and
`export_checkpoint_model` turns a checkpoint into a `save_pretrained` model folder, e.g. to publish the weights of
a run that was stopped before its end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

FSDP_SHARDED_DIR = "pytorch_model_fsdp_0"
FSDP_FULL_FILE = "pytorch_model_fsdp_0.bin"
DEEPSPEED_DIR = "pytorch_model"


# Wrappers whose name `save_state` keeps in the keys: DDP (`module.`) and torch.compile (`_orig_mod.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def checkpoint_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full model state dict (CPU tensors, keys of the unwrapped model) stored in the checkpoint folder
    `checkpoint`."""
    state_dict = _read_model_weights(Path(checkpoint))
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def _read_model_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    if (checkpoint / "model.safetensors").is_file():
        return load_file(checkpoint / "model.safetensors")
    if (checkpoint / FSDP_SHARDED_DIR / ".metadata").is_file():
        from accelerate.utils import merge_fsdp_weights

        # Accelerate's own reader of its FSDP checkpoints: torch.distributed.checkpoint without a process group.
        with tempfile.TemporaryDirectory(prefix="sparsevit-merge-") as merged:
            merge_fsdp_weights(str(checkpoint / FSDP_SHARDED_DIR), merged, safe_serialization=True)
            return load_file(Path(merged) / "model.safetensors")
    for name in (FSDP_FULL_FILE, "pytorch_model.bin"):
        if (checkpoint / name).is_file():
            return torch.load(checkpoint / name, map_location="cpu", weights_only=True)
    if (checkpoint / DEEPSPEED_DIR).is_dir():
        try:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        except ImportError as error:
            raise ImportError(
                f"{checkpoint} holds DeepSpeed ZeRO partitions ({DEEPSPEED_DIR}/); reading them needs "
                "`pip install deepspeed`"
            ) from error
        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_DIR)
    raise ValueError(
        f"{checkpoint} holds no model weights that accelerate's save_state writes (model.safetensors, "
        f"{FSDP_SHARDED_DIR}/, {FSDP_FULL_FILE} or {DEEPSPEED_DIR}/)"
    )


def export_checkpoint_model(
    checkpoint: str | os.PathLike, model: nn.Module, output_dir: str | os.PathLike, processor=None, **save_kwargs
) -> nn.Module:
    """Load the weights of `checkpoint` into `model` (built from the run's config; every tensor must match) and
    `save_pretrained` it, with `processor` when given, into `output_dir`. `save_kwargs` go to `save_pretrained`
    (e.g. `max_shard_size`). Returns `model`."""
    state_dict = checkpoint_state_dict(checkpoint)
    model.load_state_dict(state_dict, strict=True)
    model.save_pretrained(output_dir, **save_kwargs)
    if processor is not None:
        processor.save_pretrained(output_dir)
    return model
