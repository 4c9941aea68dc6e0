"""Latency and share of the matrix-product ceiling, with every configuration and the ceiling itself timed in the same
rounds of one process: ratios that hold on a busy machine, where runs in separate processes drift apart.

    python benchmarks/interleaved.py --size 512 --repeats 10
    python benchmarks/interleaved.py --size 1024 --repeats 4 --baseline-src /tmp/main/src   # against another tree

Each round calls, in rotated order: the model in fp32 (SDPA), in bf16 (SDPA, the default dispatch) and in bf16 with
eager attention, and a 2048^3 `torch.mm` in fp32 and in bf16. With `--baseline-src` (the `src` folder of another
checkout, e.g. `git archive main src | tar -x -C /tmp/main`), that tree's model runs the same configurations on
the same weights and input. GFLOP/s = FlopCounterMode FLOPs of one image / median latency; the share is against the
median matrix product of the same dtype in the same rounds. Mask agreement: sigmoid(upsampled logits) > 0.5 of
the bf16 rows against the fp32 row of the same tree.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import build_model, machine_description, markdown_table, median, randomise_, time_call
from cost import count
from torch.nn import functional as F

EAGER_MAX_SIZE = 1024  # eager attention materialises 5 x N^2 scores per global block (5.4 GB at 2048)


def import_tree(src: Path, alias: str):
    """Import the `sparsevit_hf` package of another source tree under `alias`."""
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(src / "sparsevit_hf", folder / alias)
    sys.path.insert(0, str(folder))
    return importlib.import_module(alias)


def tree_model(package, attn: str, dtype: torch.dtype):
    config = package.SparseViTConfig()
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = package.SparseViTForManipulationLocalization(config)
    randomise_(model, 0)
    return model.eval().to(dtype)


def upsampled(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10, help="rounds (every call once per round)")
    parser.add_argument("--baseline-src", type=Path, help="src folder of another checkout to compare with")
    parser.add_argument("--no-eager", action="store_true", help="leave out bf16 eager attention")
    args = parser.parse_args(argv)

    size = args.size
    trees = {"ours": None}
    if args.baseline_src:
        trees["baseline"] = import_tree(args.baseline_src, "baseline_sparsevit_hf")
    configurations = [("fp32", "sdpa"), ("bf16", "sdpa")]
    if not args.no_eager and size <= EAGER_MAX_SIZE:
        configurations.append(("bf16", "eager"))
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    calls, outputs = {}, {}
    for tree, package in trees.items():
        for dtype, attn in configurations:
            model = build_model(attn) if package is None else tree_model(package, attn, torch.float32)
            model = model.to(dtypes[dtype])
            inputs = x.to(dtypes[dtype])
            calls[f"{tree} {dtype} {attn}"] = lambda model=model, inputs=inputs: model(inputs).logits
    matrices = {d: (torch.randn(2048, 2048).to(t), torch.randn(2048, 2048).to(t)) for d, t in dtypes.items()}
    for dtype, (a, b) in matrices.items():
        calls[f"matmul {dtype}"] = lambda a=a, b=b: torch.mm(a, b)

    times = {name: [] for name in calls}
    with torch.inference_mode():
        for name, call in calls.items():
            result = call()
            if not name.startswith("matmul"):
                outputs[name] = upsampled(result, size)
        names = list(calls)
        for round_ in range(args.repeats):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                times[name] += time_call(calls[name], 0, 1)

    meta_model = build_model("sdpa").to("meta")
    flops = count(lambda t: meta_model(t).logits, torch.empty(1, 3, size, size, device="meta"))["flops"]
    ceiling = {d: 2 * 2048**3 / median(times[f"matmul {d}"]) / 1e9 for d in dtypes}
    rows = []
    for name in names:
        if name.startswith("matmul"):
            continue
        tree, dtype, attn = name.split()
        latency = median(times[name])
        gflops = flops / latency / 1e9
        reference = outputs[f"{tree} fp32 sdpa"]
        fidelity = "-"
        if dtype == "bf16":
            fidelity = f"{((outputs[name] > 0) == (reference > 0)).float().mean().item():.2%}"
        elif tree != "ours":
            fidelity = f"max abs diff to ours {(outputs[name] - outputs['ours fp32 sdpa']).abs().max().item():.1e}"
        rows.append([tree, dtype, attn, f"{latency:.3f}", f"{min(times[name]):.3f}",
                     f"{gflops:.0f} ({gflops / ceiling[dtype]:.0%})", fidelity])
    print(f"\n{size} x {size}, batch 1, medians of {args.repeats} interleaved rounds; matrix-product ceiling in the "
          f"same rounds: fp32 {ceiling['fp32']:.0f}, bf16 {ceiling['bf16']:.0f} GFLOP/s; {flops / 1e9:.1f} GFLOP per "
          "image\n")
    print(markdown_table(
        ["tree", "dtype", "attention", "median s", "min s", "GFLOP/s (of the ceiling)",
         "mask agreement with fp32 (bf16) / logits (fp32)"],
        rows,
    ))
    machine = machine_description("cpu")
    print(f"\nMachine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads, {machine['cpu_capability']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
