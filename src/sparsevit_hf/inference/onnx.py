"""ONNX export of SparseViT, and ONNX Runtime as a backend of the predictor.

`export_onnx` writes a deployment folder:

- `model.onnx`: the network from normalised pixels `pixel_values` `(batch, 3, size, size)` to the 1/16-resolution
  `logits` `(batch, 1, ceil(size / 16), ceil(size / 16))`, exported with `torch.onnx.export(dynamo=True)`. The
  batch axis is free; height and width are fixed at export (512 by default, the official protocol and the default
  tile). They are fixed on purpose: the model pads inputs to a multiple of 32 and sparse groups to a multiple of S,
  and an export with free spatial axes keeps only the branch of the example input, which then fails (or is wrong)
  at other sizes. Export once per size instead.
- `config.json` and `preprocessor_config.json`: the model's configuration and its image processor, resizing to the
  exported size, so that `SparseViTImageProcessor.from_pretrained(folder)` prepares the inputs;
- `README.md`: what the folder holds, how it was made and how well it matched PyTorch at export.

With `quantize="int8"`, `model.onnx` holds ONNX Runtime's dynamic int8 quantization of the exported graph (weights
of the matrix products stored as int8, activations quantized per call); inputs and outputs stay float32.

`OnnxRuntimeModel` runs such a folder and is called like the PyTorch model (`model(pixel_values=...).logits`), so
`Predictor` and `sparsevit-predict --backend onnxruntime` use it in the `resize` and `tiled` modes. Inputs smaller
than the exported size (a photo smaller than one tile) are padded at the bottom and right with zeros (the mean colour
after normalisation) and the logits cropped, as the PyTorch model pads to a multiple of 32; larger inputs are an
error that names both sizes.

onnx, onnxscript and onnxruntime come with the `onnx` extra: `pip install "sparsevit-hf[onnx]"`.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ONNX_NAME = "model.onnx"
DEFAULT_OPSET = 20
QUANTIZATIONS = ("int8",)
# Operators whose weights the int8 export quantizes. Convolutions stay float: ONNX Runtime's ConvInteger has no fast
# CPU kernel, and the depthwise convolutions carry too few weights to gain from int8.
INT8_OPERATORS = ("MatMul",)
METADATA_PREFIX = "sparsevit."
EXTRA_HINT = 'pip install "sparsevit-hf[onnx]"'


class OnnxExportError(RuntimeError):
    """The export failed, or the exported graph does not reproduce the PyTorch model."""


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely ONNX Runtime reproduced PyTorch on a random batch of two."""

    path: str
    size: int
    opset: int
    quantization: str | None
    megabytes: float
    export_seconds: float
    max_abs_logit_diff: float
    reference_logit_std: float


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed for ONNX export and ONNX Runtime inference: {EXTRA_HINT}") from error


class _Logits(nn.Module):
    """The exported function: normalised pixels in, logits out (no loss, no optional outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _export_fp32(model: nn.Module, path: Path, size: int, opset: int) -> None:
    _require("onnxscript")
    example = torch.zeros(2, model.config.num_channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            _Logits(model).eval(),
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_shapes={"pixel_values": {0: batch}},
            verbose=False,
        )
    except Exception as error:
        raise OnnxExportError(f"torch.onnx.export failed at {size} x {size}: {error}") from error
    program.save(str(path))


def quantize_int8(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """ONNX Runtime's dynamic int8 quantization of `source` (weights of `INT8_OPERATORS` as int8) into
    `destination`."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        Path(source), Path(destination), op_types_to_quantize=list(INT8_OPERATORS), weight_type=QuantType.QInt8
    )


def _write_metadata(path: Path, entries: dict[str, str]) -> None:
    onnx = _require("onnx")
    graph = onnx.load(str(path))
    for key, value in entries.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    onnx.save(graph, str(path))


def export_onnx(
    model: nn.Module,
    processor,
    output_dir: str | os.PathLike,
    *,
    size: int = 512,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    source: str | None = None,
) -> ExportReport:
    """Export `model` (a `SparseViTForManipulationLocalization`) and its processor into a deployment folder.

    The model is exported in fp32 on the CPU (a copy is cast when it is elsewhere), then checked: ONNX Runtime and
    PyTorch run the same random batch of two, and an fp32 export whose logits differ by more than 1e-4 raises
    `OnnxExportError`. `size` must be a multiple of 32 (the padding the model applies to other sizes would be
    exported as well, and tiles are multiples of 32). `source` (the model's name) goes into the README and the
    graph's metadata. Returns an `ExportReport`.
    """
    divisor = int(model.config.pad_size_divisor)
    if not isinstance(size, int) or size < divisor or size % divisor:
        raise ValueError(f"size must be a multiple of {divisor} of at least {divisor}, got {size!r}.")
    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} or None, got {quantize!r}.")
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        model = copy.deepcopy(model).to("cpu", torch.float32)
    model.eval()
    output = Path(output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    path = output / ONNX_NAME

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=output) as scratch:
        exported = Path(scratch) / ONNX_NAME
        _export_fp32(model, exported, size, opset)
        if quantize == "int8":
            quantize_int8(exported, Path(scratch) / "int8.onnx")
            exported = Path(scratch) / "int8.onnx"
        _write_metadata(exported, {"size": str(size), "quantization": quantize or "none", "source": source or ""})
        os.replace(exported, path)
    seconds = time.perf_counter() - start

    model.config.save_pretrained(output)
    settings = {**processor.to_dict(), "size": {"height": size, "width": size}, "do_resize": True}
    type(processor).from_dict(settings).save_pretrained(output)

    pixel_values = torch.randn(2, model.config.num_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(pixel_values=pixel_values).logits
    logits = OnnxRuntimeModel(output)(pixel_values=pixel_values).logits
    difference = (logits - expected).abs().max().item()
    report = ExportReport(
        path=str(path), size=size, opset=opset, quantization=quantize, megabytes=path.stat().st_size / 1e6,
        export_seconds=seconds, max_abs_logit_diff=difference, reference_logit_std=expected.std().item(),
    )
    (output / "README.md").write_text(_readme(report, source))
    if quantize is None and not difference <= 1e-4:
        raise OnnxExportError(
            f"the exported graph's logits differ from PyTorch's by {difference:.2e} (more than 1e-4) on a random "
            f"batch; the folder {output} is kept for inspection."
        )
    return report


def _readme(report: ExportReport, source: str | None) -> str:
    grid = math.ceil(report.size / 16)
    kind = "dynamic int8 quantization (ONNX Runtime) of the fp32 export" if report.quantization else "fp32"
    rows = [
        ("graph", f"`{ONNX_NAME}`, opset {report.opset}, {report.megabytes:.1f} MB, {kind}"),
        ("input", f"`pixel_values`: float32 `(batch, 3, {report.size}, {report.size})`, normalised as "
                  "`preprocessor_config.json` says"),
        ("output", f"`logits`: float32 `(batch, 1, {grid}, {grid})`; the sigmoid of the logits upsampled "
                   "bilinearly to the input size is the per-pixel probability of manipulation"),
        ("check at export", f"max abs logit difference to PyTorch fp32 on a random batch of two: "
                            f"{report.max_abs_logit_diff:.1e} (logit std {report.reference_logit_std:.2f})"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"""# SparseViT, ONNX export

Written by `sparsevit-export` (sparsevit-hf) from `{source or "a SparseViT model"}`.

| | |
| --- | --- |
{table}

Height and width are fixed at {report.size}; the batch is free. Prepare images with
`SparseViTImageProcessor.from_pretrained(this_folder)` (resize to {report.size} x {report.size}, ImageNet
normalisation), or predict whole photos with

```bash
sparsevit-predict THIS_FOLDER photos/ --output-dir results/ --backend onnxruntime [--mode resize|tiled]
```
"""


def _providers(device: str | None) -> list[str]:
    ort = _require("onnxruntime")
    available = ort.get_available_providers()
    if device in (None, "auto"):
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    kind = str(device).split(":")[0]
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(
        f"ONNX Runtime cannot run on {device!r} here (its providers: {', '.join(available)}); use --device cpu."
    )


class OnnxRuntimeModel:
    """A folder written by `export_onnx`, run by ONNX Runtime and called like the PyTorch model.

    `model(pixel_values=...)` takes a float tensor `(batch, 3, height, width)` no larger than the exported size and
    returns an object with `logits` (a float32 CPU tensor). Attributes: `config` (the `SparseViTConfig` of the
    folder), `input_size` (height, width), `quantization` (`"int8"` or None), `device` and `dtype` (where the
    inputs must be: the CPU, float32).
    """

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, folder: str | os.PathLike, *, device: str | None = None, threads: int | None = None):
        from ..configuration_sparsevit import SparseViTConfig

        ort = _require("onnxruntime")
        self.folder = Path(folder).expanduser()
        path = self.folder / ONNX_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{os.fspath(folder)!r} has no {ONNX_NAME}: export one with `sparsevit-export MODEL --output-dir "
                f"{os.fspath(folder)}` (the onnxruntime backend runs exported folders, not PyTorch weights)."
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=_providers(device))
        self.config = SparseViTConfig.from_pretrained(self.folder)
        (pixel_input,) = self.session.get_inputs()
        self.input_name = pixel_input.name
        self.input_size = tuple(int(side) for side in pixel_input.shape[2:])
        metadata = self.session.get_modelmeta().custom_metadata_map
        quantization = metadata.get(METADATA_PREFIX + "quantization", "none")
        self.quantization = None if quantization == "none" else quantization

    def eval(self) -> OnnxRuntimeModel:
        return self

    def __call__(self, pixel_values: torch.Tensor, **kwargs):
        from transformers.modeling_outputs import SemanticSegmenterOutput

        height, width = pixel_values.shape[-2:]
        size_h, size_w = self.input_size
        if height > size_h or width > size_w:
            raise ValueError(
                f"pixel_values are {height} x {width} but {self.folder / ONNX_NAME} was exported for {size_h} x "
                f"{size_w}: resize the images (mode 'resize'), use tiles of {size_h} (mode 'tiled'), or export again "
                "with --size."
            )
        padded = F.pad(pixel_values.float(), (0, size_w - width, 0, size_h - height))
        logits = self.session.run(None, {self.input_name: padded.cpu().numpy()})[0]
        stride = self.config.fusion_stride
        logits = torch.from_numpy(np.ascontiguousarray(logits[..., : -(-height // stride), : -(-width // stride)]))
        return SemanticSegmenterOutput(logits=logits)


def load_onnx_model(folder: str | os.PathLike, *, device: str | None = None, threads: int | None = None):
    """`(OnnxRuntimeModel, SparseViTImageProcessor)` of a folder written by `export_onnx` (or `sparsevit-export`)."""
    from ..image_processing_sparsevit import SparseViTImageProcessor

    model = OnnxRuntimeModel(folder, device=device, threads=threads)
    return model, SparseViTImageProcessor.from_pretrained(model.folder)


__all__ = [
    "EXTRA_HINT",
    "INT8_OPERATORS",
    "ONNX_NAME",
    "QUANTIZATIONS",
    "ExportReport",
    "OnnxExportError",
    "OnnxRuntimeModel",
    "export_onnx",
    "load_onnx_model",
    "quantize_int8",
]
