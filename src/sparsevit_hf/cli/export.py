"""`sparsevit-export`: write a SparseViT model as an ONNX deployment folder (model.onnx, configs, README).

    sparsevit-export MODEL --output-dir DIR [--size 512] [--quantize int8] [--opset 20]

MODEL is a folder written by `save_pretrained` (or `sparsevit-convert`) or a Hugging Face Hub model id. The graph
takes `(batch, 3, SIZE, SIZE)` normalised pixels (the batch is free) and is checked against PyTorch before the
command reports success. Exit status: 0 on success, 2 for a usage error, a model that cannot be loaded or a failed
export.
"""

from __future__ import annotations

import argparse
import sys

from ..inference.loading import ModelLoadError, load_model
from ..inference.onnx import DEFAULT_OPSET, QUANTIZATIONS, OnnxExportError, export_onnx


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsevit-export",
        description="Export a SparseViT model to ONNX (for ONNX Runtime and sparsevit-predict --backend onnxruntime).",
    )
    parser.add_argument("model", metavar="MODEL", help="save_pretrained folder or Hugging Face Hub model id")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for model.onnx, the configs and a README")
    parser.add_argument(
        "--size", type=int, default=512, help="input height and width, a multiple of 32 (default 512: the official "
        "protocol and the default tile)"
    )
    parser.add_argument(
        "--quantize", choices=QUANTIZATIONS, help="int8: ONNX Runtime's dynamic quantization of the matrix products"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--trust-remote-code", action="store_true", help="passed to from_pretrained")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, processor = load_model(args.model, device="cpu", dtype="fp32", trust_remote_code=args.trust_remote_code)
        report = export_onnx(
            model, processor, args.output_dir, size=args.size, opset=args.opset, quantize=args.quantize,
            source=args.model,
        )
    except (ModelLoadError, OnnxExportError, ImportError, ValueError) as error:
        print(f"sparsevit-export: error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {report.path} ({report.megabytes:.1f} MB, {report.size} x {report.size}, opset {report.opset}, "
        f"{report.quantization or 'fp32'}) in {report.export_seconds:.0f} s; max abs logit difference to PyTorch "
        f"fp32 on a random batch: {report.max_abs_logit_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
