"""ONNX Runtime against PyTorch: fidelity of the fp32 and int8 exports, and speed side by side in one run.

    python benchmarks/onnx_runtime.py                              # published model at 512 x 512
    python benchmarks/onnx_runtime.py --samples ../shared/samples --synthetic 8 --repeats 10

The published architecture with seeded, non-degenerate random weights (`_common.randomise_`) is exported twice with
`sparsevit_hf.inference.export_onnx` (fp32, and int8 dynamic quantization). Fidelity: the largest logit
difference of ONNX Runtime fp32 to PyTorch fp32 on a random batch, and, on real photos (`--samples`: a folder with
`Tp/`) and on synthetic tampering (`--synthetic N` test-split images of `sparsevit_hf.data.synthetic`), the
per-pixel agreement of the binary masks (probability > 0.5 at the original size, resize mode) of each backend with
PyTorch fp32. Speed: batch-1 latency at 512 x 512 of PyTorch fp32 and bf16 and ONNX Runtime fp32 and int8, the four
calls interleaved round by round, medians, with GFLOP/s (FlopCounterMode count) against the matrix-product
ceilings measured in the same process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from _common import REPO, build_model, machine_description, markdown_table, median, time_call

from sparsevit_hf import SparseViTImageProcessor
from sparsevit_hf.inference import OnnxRuntimeModel, Predictor, export_onnx, load_image

SIZE = 512


def sample_images(samples: Path | None, synthetic: int) -> dict[str, list]:
    """{"real photos": [...], "synthetic tampering": [...]} of PIL images (empty lists when not asked for)."""
    sets = {"real photos": [], "synthetic tampering": []}
    if samples is not None:
        folder = samples / "Tp" if (samples / "Tp").is_dir() else samples
        sets["real photos"] = [load_image(path) for path in sorted(folder.iterdir()) if path.is_file()]
    if synthetic:
        from sparsevit_hf.data.synthetic import render_sample

        sets["synthetic tampering"] = [render_sample(i, split="test", size=SIZE).image for i in range(synthetic)]
    return sets


def agreement(maps: list[np.ndarray], references: list[np.ndarray]) -> float:
    agree = sum(int(((m > 0.5) == (r > 0.5)).sum()) for m, r in zip(maps, references, strict=True))
    return agree / sum(r.size for r in references)


def ceilings(repeats: int = 5) -> dict[str, float]:
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
        out[name] = 2 * 2048**3 / median(time_call(lambda a=a, b=b: torch.mm(a, b), 2, repeats)) / 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_samples = REPO.parent / "shared" / "samples"
    parser.add_argument("--samples", type=Path, default=default_samples if default_samples.is_dir() else None,
                        help="folder of real photos (or with Tp/); default: the project's shared samples if present")
    parser.add_argument("--synthetic", type=int, default=8, help="synthetic tampered images (test split)")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timed rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model("sdpa")
    processor = SparseViTImageProcessor()
    rows, exports = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for quantize in (None, "int8"):
            start = time.perf_counter()
            report = export_onnx(model, processor, Path(scratch) / (quantize or "fp32"), size=SIZE, quantize=quantize)
            exports[quantize or "fp32"] = report
            print(f"exported {quantize or 'fp32'} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        sessions = {name: OnnxRuntimeModel(Path(scratch) / name, threads=args.threads) for name in exports}

        bf16 = build_model("sdpa").to(torch.bfloat16)
        backends = {"PyTorch fp32": model, "PyTorch bf16": bf16, "ONNX Runtime fp32": sessions["fp32"],
                    "ONNX Runtime int8": sessions["int8"]}
        fidelity = {name: {} for name in backends}
        for set_name, images in sample_images(args.samples, args.synthetic).items():
            if not images:
                continue
            maps = {name: Predictor(backend, processor, "resize").predict(images) for name, backend in backends.items()}
            for name in backends:
                fidelity[name][set_name] = (agreement(maps[name], maps["PyTorch fp32"]), len(images))

        x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
        calls = {
            "PyTorch fp32": lambda: model(x).logits,
            "PyTorch bf16": lambda: bf16(x.to(torch.bfloat16)).logits,
            "ONNX Runtime fp32": lambda: sessions["fp32"](pixel_values=x).logits,
            "ONNX Runtime int8": lambda: sessions["int8"](pixel_values=x).logits,
        }
        times = {name: [] for name in calls}
        with torch.inference_mode():
            for call in calls.values():
                call()
            names = list(calls)
            for round_ in range(args.repeats):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    times[name] += time_call(calls[name], 0, 1)
        peak = ceilings()

    from cost import count

    meta_model = build_model("sdpa").to("meta")
    flops = count(lambda t: meta_model(t).logits, torch.empty(1, 3, SIZE, SIZE, device="meta"))
    reference = median(times["PyTorch fp32"])
    for name in calls:
        latency = median(times[name])
        ceiling = peak["bf16"] if "bf16" in name else peak["fp32"]
        gflops = flops["flops"] / latency / 1e9
        per_set = [f"{fidelity[name][s][0]:.2%} ({fidelity[name][s][1]})" if s in fidelity[name] else "-"
                   for s in ("real photos", "synthetic tampering")]
        rows.append([name, f"{latency:.3f}", f"{latency / reference:.2f}", f"{gflops:.0f} ({gflops / ceiling:.0%})",
                     *per_set])
    print(markdown_table(
        ["512 x 512, batch 1", "median s", "vs PyTorch fp32", "GFLOP/s (of matmul ceiling)",
         "mask agreement with PyTorch fp32, real photos (images)", "synthetic tampering (images)"],
        rows,
    ))
    print()
    print(markdown_table(
        ["export", "MB", "export s", "max abs logit diff to PyTorch fp32 (random batch of 2)", "logit std"],
        [[name, f"{r.megabytes:.0f}", f"{r.export_seconds:.0f}", f"{r.max_abs_logit_diff:.1e}",
          f"{r.reference_logit_std:.2f}"] for name, r in exports.items()],
    ))
    machine = machine_description("cpu")
    import onnxruntime

    print(f"\nMachine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), onnxruntime {onnxruntime.__version__}; matmul ceiling fp32 "
          f"{peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s; medians of {args.repeats} interleaved rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
