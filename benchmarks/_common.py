"""Shared helpers of the benchmark scripts: model construction, non-degenerate random weights, loading the same
weights into the official implementation (when the user gives its path), timing and machine description.

Nothing here downloads anything: every model is randomly initialised from a seed.
"""

from __future__ import annotations

import gc
import importlib
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    try:
        import sparsevit_hf  # noqa: F401  (installed)
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization  # noqa: E402
from sparsevit_hf.convert import convert_official_state_dict  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_model(
    attn_implementation: str = "sdpa", config: SparseViTConfig | None = None, seed: int = 0
) -> SparseViTForManipulationLocalization:
    """The published SparseViT (or `config`) with the non-degenerate random weights of `randomise_`, in eval mode."""
    config = config or SparseViTConfig()
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = SparseViTForManipulationLocalization(config)
    randomise_(model, seed)
    return model.eval()


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0) -> None:
    """Give every tensor a random value with roughly unit-variance activations.

    The initialiser's layer scales (1e-6) would make every attention block and the fusion head nearly the identity
    (and the logits nearly constant), which would make timing fine but the bf16-vs-fp32 mask agreement meaningless.
    Here layer scales and fusion weights are O(0.1-1), BatchNorm statistics and norm affines are non-trivial and the
    other weights are scaled by 1 / sqrt(fan-in).
    """
    generator = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=generator)

    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if "running_var" in name:
            value = torch.rand(tensor.shape, generator=generator) + 0.5
        elif "running_mean" in name:
            value = 0.1 * randn(tensor.shape)
        elif "layer_scale" in name:
            value = 0.2 + 0.1 * randn(tensor.shape)
        elif "fusion_weights" in name:
            value = 0.5 * randn(tensor.shape)
        elif tensor.ndim == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scale
            value = 1.0 + 0.2 * randn(tensor.shape)
        elif tensor.ndim == 1:  # biases
            value = 0.05 * randn(tensor.shape)
        else:
            fan_in = tensor[0].numel()
            value = randn(tensor.shape) / fan_in**0.5
        tensor.copy_(value.to(tensor.dtype))


def load_official(path: str | Path, model: SparseViTForManipulationLocalization, img_size: int = 512) -> nn.Module:
    """Import the official `SparseViT_Mul` from the folder `path` (user-given; never part of this project) and load
    the weights of `model` into it, through the inverse of `convert_official_state_dict`'s renaming."""
    path = str(Path(path).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    module = importlib.import_module("SparseViT_Mul")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the official blocks print a line each
        official = module.SparseViT_Mul(img_size=img_size)
    ours = model.state_dict()
    state_dict = official.state_dict()
    loaded = set()
    for key, tensor in state_dict.items():
        if match := re.fullmatch(r"lmu\.gamma(\d)", key):
            tensor.copy_(ours["fusion_head.fusion_weights"][int(match[1]) - 1])
            loaded.add("fusion_head.fusion_weights")
            continue
        converted, _ = convert_official_state_dict({key: tensor}, model.config)
        for new_key in converted:  # empty for the official dead tensors
            tensor.copy_(ours[new_key].reshape(tensor.shape))
            loaded.add(new_key)
    missing = set(ours) - loaded
    if missing:
        raise RuntimeError(f"weights not transferred to the official model: {sorted(missing)[:5]}")
    official.load_state_dict(state_dict)
    return official.eval()


def official_logits(official: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The official network up to its 1/16-resolution logits: what `SparseViTForManipulationLocalization` returns
    (the official `forward` also upsamples, takes a sigmoid and computes a loss against a mask)."""
    features = official.encoder_net(pixel_values)
    return official.lmu(list(features.values()))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(
    fn: Callable[[], object], warmup: int, repeats: int, device: str = "cpu", cpu_times: list | None = None
) -> list[float]:
    """Wall-clock seconds of `repeats` calls after `warmup` calls. When `cpu_times` is given, the process CPU time
    (all threads) of each call is appended to it: on a shared machine it is far less sensitive to other processes
    than the wall clock."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - start_cpu)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cleanup() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_description(device: str = "cpu") -> dict:
    import transformers

    flags = cpu_flags()
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "KMP_", "DNNL_"))},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)
