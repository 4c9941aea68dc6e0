"""Where the time of one SparseViT forward pass goes: torch.profiler operator times, grouped by what they compute.

    python benchmarks/profile_ops.py                                  # 512 x 512, fp32 and bf16, SDPA
    python benchmarks/profile_ops.py --sizes 1024 --dtypes bf16 --attn sdpa eager --top 15
    python benchmarks/profile_ops.py --trace trace.json               # also a Chrome trace of the last configuration

For each configuration it prints the share of the self time of the operators in each group (matrix products,
convolutions, fused attention, softmax, activations, normalisations, element-wise arithmetic, layout and
everything else), and the slowest operators by input shape. The `layout` group is the time that is not the
model's arithmetic: copies made by `reshape`/`contiguous`/`permute`, allocations, and the dispatch of views. An
`aten::copy_` issued *inside* `aten::addmm` is the bias broadcast into the output before the matrix product (part
of a biased Linear), so it is counted with the matrix products.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import DTYPES, build_model, machine_description, markdown_table
from torch.profiler import ProfilerActivity, profile

GROUPS = {
    "matrix products": (
        "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
    ),
    "convolutions": (
        "aten::mkldnn_convolution", "aten::convolution", "aten::_convolution", "aten::conv2d", "aten::thnn_conv2d",
        "aten::_slow_conv2d_forward", "aten::cudnn_convolution",
    ),
    "fused attention": (
        "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention",
        "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention",
        "aten::scaled_dot_product_attention",
    ),
    "softmax": (
        "aten::_softmax", "aten::softmax",
    ),
    "activations": (
        "aten::gelu", "aten::sigmoid",
    ),
    "normalisations": (
        "aten::native_layer_norm", "aten::layer_norm", "aten::native_batch_norm", "aten::batch_norm",
        "aten::_native_batch_norm_legit_no_training", "aten::_batch_norm_impl_index",
    ),
    "element-wise arithmetic": (
        "aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::masked_fill",
        "aten::upsample_bilinear2d", "aten::constant_pad_nd", "aten::isfinite", "aten::all", "aten::eq", "aten::ne",
        "aten::abs",
    ),
    "layout": (
        "aten::copy_", "aten::clone", "aten::contiguous", "aten::reshape", "aten::permute", "aten::view",
        "aten::transpose", "aten::t", "aten::expand", "aten::unbind", "aten::select", "aten::slice",
        "aten::as_strided", "aten::_unsafe_view", "aten::unsqueeze", "aten::squeeze", "aten::flatten", "aten::to",
        "aten::_to_copy", "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::resize_", "aten::zeros",
        "aten::fill_", "aten::zero_", "aten::split", "aten::chunk", "aten::cat", "aten::stack", "aten::lift_fresh",
        "aten::detach", "aten::alias",
    ),
}
GROUP_OF = {op: group for group, ops in GROUPS.items() for op in ops}


def group_of(event) -> str:
    """The group of one profiler event; a copy issued by a matrix product (its bias broadcast) is a matrix product."""
    group = GROUP_OF.get(event.name, "other")
    if group == "layout" and event.name == "aten::copy_":
        parent = event.cpu_parent
        while parent is not None:
            if GROUP_OF.get(parent.name) == "matrix products":
                return "matrix products"
            parent = parent.cpu_parent
    return group


def profile_forward(size: int, dtype: str, attn: str, warmup: int = 2, device: str = "cpu", trace: str | None = None):
    """(wall seconds of the profiled call, {group: self seconds}, [(op, shapes, self seconds, calls)])."""
    model = build_model(attn).to(device).to(DTYPES[dtype])
    pixel_values = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device, DTYPES[dtype])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.inference_mode():
        for _ in range(warmup):
            model(pixel_values)
        with profile(activities=activities, record_shapes=True) as prof:
            start = time.perf_counter()
            model(pixel_values)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
    if trace:
        prof.export_chrome_trace(trace)
    groups = dict.fromkeys([*GROUPS, "other"], 0.0)
    for event in prof.events():
        groups[group_of(event)] += event.self_cpu_time_total / 1e6
    ops = [
        (e.key, str(e.input_shapes), e.self_cpu_time_total / 1e6, e.count)
        for e in prof.key_averages(group_by_input_shape=True)
    ]
    ops.sort(key=lambda op: -op[2])
    return wall, groups, ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--attn", nargs="+", default=["sdpa"], choices=["sdpa", "eager"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled calls first")
    parser.add_argument("--top", type=int, default=10, help="slowest operators (by input shape) to list")
    parser.add_argument("--trace", help="write a Chrome trace of the last configuration to this file")
    args = parser.parse_args(argv)

    summary_rows = []
    configurations = [(s, d, a) for s in args.sizes for d in args.dtypes for a in args.attn]
    for index, (size, dtype, attn) in enumerate(configurations):
        trace = args.trace if index == len(configurations) - 1 else None
        wall, groups, ops = profile_forward(size, dtype, attn, args.warmup, args.device, trace)
        total = sum(groups.values())
        name = f"{size} x {size}, {dtype}, {attn}"
        summary_rows.append([name, f"{wall:.3f}"] + [f"{groups[g] / total:.1%}" for g in groups])
        print(f"\n{name}: slowest operators (self time of the profiled call, {wall:.3f} s wall)\n")
        print(markdown_table(
            ["operator", "input shapes", "self ms", "calls", "share"],
            [[op, shapes[:90], f"{seconds * 1e3:.1f}", calls, f"{seconds / total:.1%}"]
             for op, shapes, seconds, calls in ops[: args.top]],
        ))
    print("\nShare of operator self time per group\n")
    print(markdown_table(["configuration", "wall s (profiled)", *groups], summary_rows))
    machine = machine_description(args.device)
    print(f"\nMachine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads, {machine['cpu_capability']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
