"""AdamW with the official recipe's parameter groups, and its learning-rate schedule.

The schedule is transformers' `get_cosine_with_min_lr_schedule_with_warmup`: a linear warm-up from 0, then a
per-step half-cycle cosine from the base rate down to `min_lr`, which is the official recipe's schedule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import get_cosine_with_min_lr_schedule_with_warmup


def no_weight_decay(model: nn.Module, name: str, parameter: nn.Parameter) -> bool:
    """Whether the official recipe exempts a parameter from weight decay: biases and normalisation weights (every
    tensor of at most one dimension), and whatever the model declares in `_no_weight_decay_parameters` (names
    matched against the parameter's own name, the last part of the dotted one)."""
    declared = getattr(model, "_no_weight_decay_parameters", ())
    return parameter.ndim <= 1 or name.rpartition(".")[2] in declared


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: `weight_decay` on weight matrices and convolution kernels, none on the parameters
    `no_weight_decay` names (for SparseViT: biases, LayerNorm / BatchNorm weights, layer scales, fusion weights).
    Frozen parameters are left out; empty groups are dropped."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if no_weight_decay(model, name, parameter) else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def create_optimizer(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `parameter_groups(model, weight_decay)`."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate, betas=betas, eps=eps)


def create_lr_scheduler(
    optimizer: torch.optim.Optimizer, min_lr: float, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The official schedule, per optimisation step, for an optimizer created with the base learning rate:
    `lr(k) = base * k / warmup` during the warm-up, then `min_lr + (base - min_lr) * (1 + cos(pi * p)) / 2` with
    `p = (k - warmup) / (total - warmup)`. The warm-up is capped at `total_steps - 1`. The lambda is a picklable
    `functools.partial`, so `accelerator.save_state` stores the scheduler with the checkpoint."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps, min_lr=min_lr
    )
