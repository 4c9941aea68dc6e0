"""The distributed side of a run: what `accelerate launch` asked for against what the run got, and parameter layouts
that DDP reduces without copies.

`accelerate launch` passes the engine of its config to the processes as environment variables
(`ACCELERATE_USE_FSDP`, `ACCELERATE_USE_DEEPSPEED`, `ACCELERATE_USE_MEGATRON_LM`); `Accelerator` reads them, but
falls back to plain DDP without a word where the engine cannot run (FSDP on CPU processes, for example). A run that
meant to shard its model and got a full copy per process should say so at its first line, not at its first
out-of-memory error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from ..inference.loading import DTYPES, slow_precision_warning

logger = logging.getLogger(__name__)

# The launcher's environment variable for each engine, and the `DistributedType` name that engine runs as.
ENGINE_FLAGS = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED",
    "ACCELERATE_USE_MEGATRON_LM": "MEGATRON_LM",
}


def requested_engine(environ: Mapping[str, str] | None = None) -> str | None:
    """The engine (`FSDP`, `DEEPSPEED` or `MEGATRON_LM`) that the accelerate config asked for, read from the
    launcher's environment variables as `Accelerator` reads them (`"true"`, any case); None for none."""
    environ = os.environ if environ is None else environ
    for variable, engine in ENGINE_FLAGS.items():
        if environ.get(variable, "false").lower() == "true":
            return engine
    return None


def distributed_type_name(accelerator) -> str:
    """`accelerator.distributed_type` as its bare name (`MULTI_CPU`, `FSDP`, ...)."""
    value = accelerator.distributed_type
    return getattr(value, "name", str(value).rpartition(".")[2])


def engine_mismatch(accelerator, environ: Mapping[str, str] | None = None) -> str | None:
    """A warning when the accelerate config asked for an engine that `accelerator` does not run; None otherwise."""
    requested = requested_engine(environ)
    got = distributed_type_name(accelerator)
    if requested is None or got == requested:
        return None
    reason = (
        "the processes run on the CPU (--cpu, or no GPU was found), where Accelerate has no FSDP or DeepSpeed"
        if accelerator.device.type == "cpu"
        else "Accelerate did not set the engine up for this device"
    )
    return (
        f"The accelerate config asked for {requested}, but this run got distributed type {got} "
        f"({accelerator.num_processes} process(es) on {accelerator.device}): {reason}. Every process holds a full "
        "copy of the model and the optimiser state; nothing is sharded."
    )


def log_distributed_setup(accelerator, environ: Mapping[str, str] | None = None) -> list[str]:
    """Log the processes, distributed type, device and precision of the run, and warn (returning the warnings)
    when the accelerate config asked for another engine or the mixed precision is slow on this device."""
    logger.info("%d process(es), distributed type %s, device %s, mixed precision %s", accelerator.num_processes,
                accelerator.distributed_type, accelerator.device, accelerator.mixed_precision)
    precision = DTYPES.get(str(accelerator.mixed_precision))  # "bf16" / "fp16"; "no" has none
    messages = [engine_mismatch(accelerator, environ)]
    if precision is not None:
        messages.append(slow_precision_warning(accelerator.device, precision))
    messages = [message for message in messages if message is not None]
    for message in messages:
        logger.warning("%s", message)
    return messages


def use_channels_last_parameters(model: nn.Module) -> nn.Module:
    """Give the depthwise (C, 1, k, k) and 1 x 1 convolution weights the strides of their gradients under DDP.

    The convolution stages run on channels-last maps (see `modeling_sparsevit.elementwise_in_memory_order`), and a
    convolution returns its weight gradient in the layout of its input. For these weights the channels-last layout
    holds the same values in the same memory order as the default one, only the strides of the size-1 dimensions
    differ (a (256, 1, 3, 3) gradient with strides (9, 1, 3, 1) for a weight with (9, 9, 3, 1)); DDP compares
    strides exactly, so it copied those gradients into its buckets every step and warned "Grad strides do not
    match bucket view strides". Giving the weights the channels-last strides changes no value, no memory order and
    no kernel choice (the inputs are channels-last already). Weights whose two layouts differ in memory (the patch
    embeddings) keep theirs: their gradients already match, and FSDP2 rejects parameters that are not contiguous.
    Returns `model` (changed in place).
    """
    with torch.no_grad():
        for parameter in model.parameters():
            # True for the default layout only when no dimension but size-1 ones tells the two layouts apart.
            if parameter.ndim == 4 and parameter.is_contiguous(memory_format=torch.channels_last):
                parameter.data = torch.empty_like(parameter, memory_format=torch.channels_last).copy_(parameter)
    return model
