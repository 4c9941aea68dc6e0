"""Checks of what SparseViT's forward is given: the pixel values and the training labels.

Part of the model's remote code (`modeling_sparsevit.py` imports it, and `save_pretrained` copies it along). Shape,
dtype and size checks always run; checks of the values run only where they cost no device-to-host synchronisation
(`reads_values_for_free`).
"""

import torch

from .configuration_sparsevit import SparseViTConfig


def reads_values_for_free(tensor: torch.Tensor) -> bool:
    """Whether a check of `tensor`'s values (NaN, non-binary labels) costs no device-to-host synchronisation.

    Shape, dtype and size checks read metadata and always run. A check of the values needs the answer on the host:
    for a CPU tensor that is a pass over memory, but for a tensor on an accelerator (CUDA, MPS, XLA) it would stall
    the host until the device has caught up, once per step. There the content checks live where the data is still on
    the CPU: `SparseViTImageProcessor` rejects non-finite images and binarises masks, and the training and inference
    data paths go through it. Tracing (`torch.compile`, `torch.export`) has no values to read either.
    """
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_pixel_values(pixel_values: torch.Tensor, config: SparseViTConfig) -> None:
    """Refuse, with the reason, pixel values the model cannot take: not a 4-D floating-point tensor, another number of
    channels than `config.num_channels`, a side under `config.pad_size_divisor`, NaN or infinity (on the CPU)."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a tensor of shape (batch, channels, height, width), got {shape}.")
    if pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[1]} channels but the model expects {config.num_channels} "
            f"(shape {tuple(pixel_values.shape)})."
        )
    minimum = config.pad_size_divisor
    if pixel_values.shape[2] < minimum or pixel_values.shape[3] < minimum:
        raise ValueError(
            f"pixel_values is {pixel_values.shape[2]} x {pixel_values.shape[3]} pixels; SparseViT needs at least "
            f"{minimum} x {minimum}."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(f"pixel_values must be floating point (normalised), got {pixel_values.dtype}.")
    if reads_values_for_free(pixel_values) and not torch.isfinite(pixel_values).all():
        raise ValueError("pixel_values contains NaN or infinite values.")


def check_labels(labels: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Labels as float `(batch, height, width)` 0/1 masks, checked against the batch of `pixel_values`."""
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 3 or labels.shape[0] != pixel_values.shape[0]:
        raise ValueError(
            f"labels must have shape (batch, height, width) or (batch, 1, height, width) with batch "
            f"{pixel_values.shape[0]}, got {tuple(labels.shape)}."
        )
    if reads_values_for_free(labels) and ((labels != 0) & (labels != 1)).any():
        raise ValueError("labels must be binary masks with values 0 (authentic) and 1 (manipulated).")
    return labels.float()


__all__ = ["check_labels", "check_pixel_values", "reads_values_for_free"]
