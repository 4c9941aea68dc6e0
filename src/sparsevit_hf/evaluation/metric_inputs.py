"""Checking and converting what the metrics are given: probability maps, binary masks, labels, thresholds,
protocols (the rules are in `metrics`' module docstring, "Inputs" and "Precision")."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

# Supported poolings of a probability map into an image-level score.
IMAGE_SCORES = ("max", "mean")

# Metric definitions: the exact ones, or IMDLBenCo's (see `metrics`).
PROTOCOLS = ("exact", "imdlbenco")


def _to_numpy(x: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _as_map(x: Any, what: str, index: int) -> np.ndarray:
    arr = _to_numpy(x)
    original_shape = arr.shape
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        hint = ""
        if arr.ndim < 2:
            hint = (
                " If you meant to score a single image, wrap it in a list: "
                "[prediction], [reference]."
            )
        raise ValueError(
            f"{what}[{index}] has shape {tuple(original_shape)}; every {what[:-1]} must be "
            f"a 2-D (H, W) map or a (1, H, W) map with a single leading channel.{hint}"
        )
    if arr.size == 0:
        raise ValueError(f"{what}[{index}] is empty (shape {tuple(original_shape)}).")
    return arr


def _validate_prediction(arr: np.ndarray, index: int) -> np.ndarray:
    """The map as float32 (see "Precision" in the module docstring), after checking its values."""
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"predictions[{index}] has dtype {arr.dtype}; expected real-valued probabilities."
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad = arr[~finite]
        n_nan = int(np.isnan(bad).sum())
        raise ValueError(
            f"predictions[{index}] contains non-finite values ({n_nan} NaN, "
            f"{bad.size - n_nan} +/-inf); check the model output for that image."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"predictions[{index}] has values in [{lo:.6g}, {hi:.6g}], outside [0, 1]. "
            "Predictions must be probabilities; this looks like logits -- apply a sigmoid "
            "first (e.g. torch.sigmoid(logits))"
            + (" -- or like a 0-255 map: divide it by 255." if lo >= 0.0 and hi <= 255.0 else ".")
        )
    return arr.astype(np.float32, copy=False)


def _validate_reference(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"references[{index}] has dtype {arr.dtype}; expected a binary mask.")
    is_zero = arr == 0
    binary = is_zero | (arr == 1)
    if not binary.all():
        examples = np.unique(arr[~binary])[:5].tolist()
        raise ValueError(
            f"references[{index}] is not binary: it holds values other than 0 and 1 "
            f"(e.g. {examples}). Binarise the mask first, e.g. mask > 127.5 for a 0-255 mask."
        )
    return ~is_zero


def _validate_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number in [0, 1], got {threshold!r}.")
    value = float(threshold)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
    return value


def _validate_protocol(protocol: Any) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {', '.join(map(repr, PROTOCOLS))}.")
    return protocol


def _validate_image_score(image_score: Any) -> str:
    if image_score not in IMAGE_SCORES:
        raise ValueError(
            f"Unknown image_score {image_score!r}; choose one of {', '.join(map(repr, IMAGE_SCORES))}."
        )
    return image_score


def _as_list(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of 2-D maps, got {type(items).__name__}.")
    if isinstance(items, np.ndarray) and items.dtype == object and items.ndim == 1:
        return list(items)  # an object array holding one map per image
    if isinstance(items, np.ndarray) or hasattr(items, "detach"):
        if items.ndim < 3:
            raise ValueError(
                f"{what} is a single array of shape {tuple(items.shape)}; pass a sequence of "
                "(H, W) maps, or a batched array of shape (N, H, W) or (N, 1, H, W). "
                "To score one image, wrap it in a list."
            )
        return [items[i] for i in range(items.shape[0])]
    if not isinstance(items, Iterable):
        raise ValueError(f"{what} must be a sequence of 2-D maps, got {type(items).__name__}.")
    return list(items)

def _validate_label(label: Any, index: int) -> bool:
    value = _to_numpy(label)
    if value.ndim != 0 or value.item() not in (0, 1):
        raise ValueError(f"labels[{index}] is {label!r}; an image label is 0 (authentic) or 1 (tampered).")
    return bool(value.item())
