"""The model folders of a run: the output folder and the best model, written with `save_pretrained` (weights in the
format and shards it chooses, config with `auto_map`, the model code, the processor) and read back with
`from_pretrained`, whatever that format is."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoints import write_json_atomic

BEST_MODEL_DIR = "best_model"
EVAL_RESULTS_NAME = "eval_results.json"


def save_model_folder(
    accelerator, model: nn.Module, processor, folder: str | os.PathLike, state_dict=None, **save_kwargs: Any
) -> None:
    """`save_pretrained` of the (unwrapped) model, with its config, auto_map and code files, and of the processor,
    plus the Inference Endpoints handler. Call it on every process: gathering a sharded state dict is collective.
    Only the main process touches the folder (another process creating or listing it could race with the main
    process renaming it). `save_kwargs` go to `save_pretrained` (e.g. `max_shard_size`)."""
    from ..hub import write_endpoint_files

    if state_dict is None:
        state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(
            folder, save_function=accelerator.save, state_dict=state_dict, **save_kwargs
        )
        processor.save_pretrained(folder)
        write_endpoint_files(folder)


def save_best_model(
    accelerator, model: nn.Module, processor, folder: str | os.PathLike, eval_results: Any, **save_kwargs: Any
) -> None:
    """Replace the model folder `folder` (with `eval_results.json`) atomically: write `<folder>.tmp`, then swap it
    in, so that a crash at any moment leaves a complete best model. Call it on every process."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    save_model_folder(accelerator, model, processor, tmp, **save_kwargs)
    if accelerator.is_main_process:
        write_json_atomic(tmp / EVAL_RESULTS_NAME, eval_results)
        old = folder.with_name(f"{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_best_model(accelerator, model: nn.Module, folder: str | os.PathLike) -> dict[str, Any]:
    """Load the weights of the model folder `folder` into the (prepared) `model` in place; returns the folder's
    `eval_results.json`. Call it on every process.

    The folder is read by `from_pretrained` of the model's class (through `load_pretrained`: missing or unexpected
    weights raise `ModelLoadError`), so one `model.safetensors`, shards with their index or `pytorch_model.bin` all
    load. The full state dict then goes in through `torch.distributed.checkpoint`'s `set_model_state_dict`, which
    also places it into sharded (FSDP) parameters, or, under DeepSpeed ZeRO-3, into the parameters gathered for the
    purpose.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from ..inference.loading import load_pretrained

    folder = Path(folder)
    unwrapped = accelerator.unwrap_model(model)
    best = load_pretrained(type(unwrapped), folder, config=unwrapped.config, dtype=next(unwrapped.parameters()).dtype)
    engine = str(accelerator.distributed_type).rpartition(".")[2]
    plugin = getattr(accelerator.state, "deepspeed_plugin", None) if engine == "DEEPSPEED" else None
    if plugin is not None and plugin.zero_stage == 3:
        import deepspeed

        # ZeRO-3 partitions every parameter: gather them, load (the buffers, never partitioned, on every process),
        # and let the context re-partition the main process's values.
        with deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=0):
            unwrapped.load_state_dict(best.state_dict(), strict=True)
    else:
        set_model_state_dict(
            model if engine == "FSDP" else unwrapped, best.state_dict(),
            options=StateDictOptions(full_state_dict=True, strict=True),
        )
    return json.loads((folder / EVAL_RESULTS_NAME).read_text(encoding="utf-8"))
