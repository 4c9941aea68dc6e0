"""Loading SparseViT models: the one place where the package calls `from_pretrained` on a model, and the one error
(`ModelLoadError`) every loader raises.

`load_pretrained(model_class, name_or_path, ...)` is `from_pretrained` made strict: a local folder is checked first
(`check_model_folder`: a saved SparseViT config and weights files whose headers can be read), and the model is
loaded with transformers' loading report (`output_loading_info=True`), so that weights missing from the files,
weights the model does not have and weights of another shape are errors instead of randomly initialised layers.
`load_model` adds the image processor, the device, the dtype and the ONNX Runtime backend. The command-line
programs turn `ModelLoadError` into one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from ..attention_sparsevit import cpu_has_fast_matmul
from ..utils import is_local_path

# What runs the network: PyTorch (any folder written by save_pretrained, or a Hub id) or ONNX Runtime (a folder
# written by sparsevit-export; see `inference.onnx`).
BACKENDS = ("pytorch", "onnxruntime")
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
# How many key names a message lists before it says how many more there are.
_KEYS_SHOWN = 8


class ModelLoadError(ValueError):
    """A model name or folder does not hold a (complete, readable) SparseViT model; the message names the folder or
    file and the problem."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` or `"auto"`: CUDA if available, else Apple MPS, else CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"Unknown device {device!r} ({error}).") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} requested but CUDA is not available; use --device cpu (or auto).")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"Device {device!r} requested but Apple MPS is not available; use --device cpu (or auto).")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`"fp32" | "bf16" | "fp16"` (or the torch names, or a `torch.dtype`) to a `torch.dtype`."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of fp32, bf16, fp16.") from None


def slow_precision_warning(device: torch.device, dtype: torch.dtype) -> str | None:
    """The warning for running SparseViT in `dtype` on `device` where that is several times slower than fp32 (bf16 or
    fp16 on a CPU without native products in that dtype, see `cpu_has_fast_matmul`); None where it is not."""
    if torch.device(device).type != "cpu" or cpu_has_fast_matmul(dtype):
        return None
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
    return (
        f"This CPU has no native {name} matrix products (torch falls back to scalar code without AVX-512 / AMX): "
        f"SparseViT in {name} runs about 10x slower here than in fp32. Use fp32 (dtype 'fp32', --dtype fp32, or "
        "mixed precision 'no')."
    )


def check_weight_files(folder: str | os.PathLike) -> None:
    """Read the header of every `*.safetensors` file in `folder` (a model folder or a training checkpoint).

    A truncated or corrupt file fails here with `ModelLoadError` naming it, instead of safetensors' "incomplete
    metadata" from deep inside `from_pretrained` or `load_state`, which names no file. Only headers are read.
    """
    from safetensors import safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(os.fspath(path), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own SafetensorError, OSError or ValueError
            raise ModelLoadError(
                f"{path}: the weights file cannot be read ({error}); it is truncated or corrupt, e.g. from an "
                "interrupted copy or download. Copy or save it again."
            ) from error


def check_model_folder(folder: str | os.PathLike) -> dict:
    """Check that a local folder holds a saved SparseViT model; return its config dictionary.

    Raises `ModelLoadError` with the reason: not a folder, no `config.json`, unreadable config, another
    `model_type`, no weights, or a weights file that cannot be read (`check_weight_files`).
    """
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelLoadError(f"Model folder {os.fspath(folder)!r} does not exist.")
    if not path.is_dir():
        raise ModelLoadError(
            f"{os.fspath(folder)!r} is a file; MODEL must be a folder written by save_pretrained (config.json, "
            "model.safetensors, preprocessor_config.json) or a Hugging Face Hub model id."
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{os.fspath(folder)!r} has no config.json: it is not a saved transformers model (expected the output "
            "of save_pretrained, or of sparsevit-convert)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{config_file}: cannot read the model config ({error}).") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "sparsevit":
        raise ModelLoadError(
            f"{os.fspath(folder)!r} holds a {model_type!r} model, not a SparseViT model (model_type {model_type!r} "
            "is not 'sparsevit')."
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(f"{os.fspath(folder)!r} has a SparseViT config but no weights (model.safetensors).")
    check_weight_files(path)
    return config


def _keys(kind: str, keys) -> str:
    names = sorted(str(key) for key in keys)
    shown = ", ".join(names[:_KEYS_SHOWN])
    more = f", ... ({len(names) - _KEYS_SHOWN} more)" if len(names) > _KEYS_SHOWN else ""
    return f"{len(names)} {kind}: {shown}{more}"


def load_pretrained(model_class, name_or_path: str | os.PathLike, **kwargs):
    """`model_class.from_pretrained(name_or_path, **kwargs)` that refuses incomplete or mismatched weights.

    `model_class` is a SparseViT model class or an Auto class. A local folder is checked first
    (`check_model_folder`); a string that is not a local path is a Hub id. Raises `ModelLoadError` naming the folder
    (or file) and the problem: keys missing from the weights, keys the model does not have, shape mismatches, an
    unreadable file, or any other failure of `from_pretrained`.
    """
    name = os.fspath(name_or_path)
    if is_local_path(name_or_path):
        check_model_folder(name)  # a missing folder is an error here, not a Hub request
        name = os.fspath(Path(name).expanduser())
    try:
        model, info = model_class.from_pretrained(name, output_loading_info=True, **kwargs)
    except ModelLoadError:
        raise
    except Exception as error:
        where = "" if Path(name).exists() else " (from the Hugging Face Hub)"
        raise ModelLoadError(f"Cannot load the SparseViT model {name!r}{where}: {error}") from error
    problems = []
    if info.get("missing_keys"):
        problems.append(_keys("weights missing from the files, which would be left randomly initialised",
                              info["missing_keys"]))
    if info.get("unexpected_keys"):
        problems.append(_keys("weights the model does not have", info["unexpected_keys"]))
    if info.get("mismatched_keys"):
        mismatched = [f"{key} {tuple(saved)} vs {tuple(expected)}" for key, saved, expected in info["mismatched_keys"]]
        problems.append(_keys("weights of another shape (saved vs model)", mismatched))
    if info.get("error_msgs"):
        problems.append("; ".join(str(message) for message in info["error_msgs"]))
    if problems:
        raise ModelLoadError(
            f"{name!r} does not hold the weights of its SparseViT config: " + "; ".join(problems) + ". The files "
            "were written by another version or configuration of the model, or edited; save the model again."
        )
    return model


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    token: str | bool | None = None,
    backend: str = "pytorch",
):
    """Load a SparseViT model (in eval mode, on `device`, in `dtype`) and its image processor.

    With `backend="onnxruntime"`, `name_or_path` is a local folder written by `sparsevit-export` and the model is an
    `OnnxRuntimeModel` (its precision is the exported graph's: `dtype` may only be fp32).

    `name_or_path` is a folder written by `save_pretrained` or a Hub model id, loaded by `load_pretrained` (so
    missing or unexpected weights are errors); a folder without `preprocessor_config.json` gets the default
    processor (the official 512 x 512 preprocessing) with a warning. `trust_remote_code` is passed to
    `from_pretrained`: with this package importable its own classes are used for `model_type` "sparsevit" either
    way; it only matters for the Auto classes' remote-code prompt. Raises `ModelLoadError`.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

    from ..image_processing_sparsevit import SparseViTImageProcessor

    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend == "onnxruntime":
        return _load_onnx(name, local, device, dtype)
    if is_local_path(name_or_path):
        check_model_folder(local)
        name = os.fspath(local)

    hub_kwargs = {"trust_remote_code": trust_remote_code, "token": token}
    try:
        config = AutoConfig.from_pretrained(name, **hub_kwargs)
    except Exception as error:
        where = "the local folder" if local.exists() else "a local folder or the Hugging Face Hub"
        raise ModelLoadError(f"Cannot load a model config for {name!r} from {where}: {error}") from error
    if getattr(config, "model_type", None) != "sparsevit":
        raise ModelLoadError(f"{name!r} is a {config.model_type!r} model, not SparseViT (model_type 'sparsevit').")

    torch_dtype = resolve_dtype(dtype)
    model = load_pretrained(
        AutoModelForSemanticSegmentation, name, config=config,
        dtype=torch_dtype if torch_dtype is not None else "auto", **hub_kwargs,
    )
    has_processor_config = (local / "preprocessor_config.json").is_file() if local.exists() else True
    processor = None
    if has_processor_config:
        try:
            processor = AutoImageProcessor.from_pretrained(name, **hub_kwargs)
        except Exception as error:
            if local.exists():
                raise ModelLoadError(f"Cannot load the image processor of {name!r}: {error}") from error
    if processor is None:
        warnings.warn(
            f"{name!r} has no preprocessor_config.json; using the default SparseViT processor (512 x 512, ImageNet "
            "normalisation).",
            stacklevel=2,
        )
        processor = SparseViTImageProcessor()
    model.to(resolve_device(device))
    model.eval()
    return model, processor


def _load_onnx(name: str, local: Path, device, dtype):
    from .onnx import load_onnx_model

    if not local.is_dir():
        raise ModelLoadError(
            f"{name!r} is not a local folder; the onnxruntime backend runs a folder written by sparsevit-export."
        )
    if resolve_dtype(dtype) not in (None, torch.float32):
        raise ModelLoadError(
            f"dtype {dtype!r} does not apply to the onnxruntime backend: it runs the exported graph's precision "
            "(fp32, or int8 with float32 inputs); use fp32."
        )
    try:
        return load_onnx_model(local, device=None if device in (None, "auto") else str(device))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise ModelLoadError(str(error)) from error


__all__ = [
    "BACKENDS",
    "ModelLoadError",
    "check_model_folder",
    "check_weight_files",
    "load_model",
    "load_pretrained",
    "resolve_device",
    "resolve_dtype",
]
