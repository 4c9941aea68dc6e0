"""Torch's fused SDPA kernel, eager attention and blocked matrix-product attention at the shapes SparseViT runs,
one row per (stage, sparsity rate), and the function SparseViT's `sdpa` implementation picks for each.

    python benchmarks/attention_kernels.py                           # 512 x 512, fp32 and bf16
    python benchmarks/attention_kernels.py --sizes 512 1024 2048 --dtypes bf16

A block with rate S attends within S^2 groups of N = (H / S) * (W / S) tokens, so the sequence length, and with it
the fastest kernel, changes from block to block. For each shape of the published configuration this times the
three functions (`torch.nn.functional.scaled_dot_product_attention` through transformers' `sdpa` function,
`attention_sparsevit.eager_attention_forward` and `attention_sparsevit.blocked_attention_forward`) on queries, keys
and values laid out as the model lays them out (strided views of one qkv projection), the calls interleaved round
by round, and sums the medians over the blocks that use the shape: what each choice costs the whole model. The
`picked` column is what `attention_sparsevit.prefers_blocked_attention` chooses at inference; `picked ms` sums it.
Eager attention materialises every score matrix, so it is left out above 4096 tokens (5.4 GB at 2048 x 2048).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import DTYPES, machine_description, markdown_table, median, time_call
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from sparsevit_hf import SparseViTConfig
from sparsevit_hf.attention_sparsevit import (
    blocked_attention_forward,
    eager_attention_forward,
    prefers_blocked_attention,
)

EAGER_MAX_TOKENS = 4096


def attention_shapes(config: SparseViTConfig, size: int) -> list[dict]:
    """One entry per (stage, rate): how many blocks use it, and the (groups, heads, tokens, head_dim) they attend in."""
    shapes = []
    strides = [config.pad_size_divisor // config.patch_sizes[-1], config.pad_size_divisor]  # stages 3 and 4
    for stage, (rates, heads, stride) in enumerate(zip(config.sparsity_rates, config.num_attention_heads, strides), 3):
        side = -(-size // stride)
        for rate, blocks in sorted(Counter(rates).items(), reverse=True):
            padded = -(-side // rate) * rate
            shapes.append({
                "stage": stage, "rate": rate, "blocks": blocks, "groups": rate * rate, "heads": heads,
                "tokens": (padded // rate) ** 2, "head_dim": config.attention_head_size,
            })
    return shapes


def time_shape(shape: dict, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function at `shape` (eager only up to `EAGER_MAX_TOKENS` tokens)."""
    groups, heads, tokens, head_dim = shape["groups"], shape["heads"], shape["tokens"], shape["head_dim"]
    qkv = torch.randn(groups, tokens, 3, heads, head_dim, dtype=dtype)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # as the model: strided (groups, heads, N, head_dim)
    module = torch.nn.Module().eval()
    module.is_causal = False
    scaling = head_dim**-0.5
    calls = {
        "sdpa": lambda: sdpa_attention_forward(module, query, key, value, None, scaling=scaling),
        "blocked": lambda: blocked_attention_forward(module, query, key, value, None, scaling=scaling),
    }
    if tokens <= EAGER_MAX_TOKENS:
        calls["eager"] = lambda: eager_attention_forward(module, query, key, value, None, scaling=scaling)
    times = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            time_call(call, warmup=1, repeats=0)
        for _ in range(repeats):  # interleaved, so that a slow moment of the machine hits every function
            for name, call in calls.items():
                times[name] += time_call(call, warmup=0, repeats=1)
        picked = "blocked" if prefers_blocked_attention(query, key) else "sdpa"
    return {**{name: median(values) for name, values in times.items()}, "picked": picked}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512], help="input side in pixels (native mode)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of each implementation per shape")
    args = parser.parse_args(argv)

    config = SparseViTConfig()
    names = ("sdpa", "eager", "blocked")
    for size in args.sizes:
        for dtype_name in args.dtypes:
            rows, totals = [], Counter()
            for shape in attention_shapes(config, size):
                repeats = max(1, round(args.repeats * min(1.0, (1024 / shape["tokens"]) ** 2)))
                medians = time_shape(shape, DTYPES[dtype_name], repeats)
                medians["picked ms"] = medians[medians["picked"]]
                for name in (*names, "picked ms"):
                    totals[name] += medians.get(name, float("nan")) * shape["blocks"]
                rows.append([
                    shape["stage"], shape["rate"], shape["blocks"],
                    f"{shape['groups']} x {shape['heads']} x {shape['tokens']} x {shape['head_dim']}",
                    *(f"{medians[name] * 1e3:.2f}" if name in medians else "-" for name in names),
                    medians["picked"], f"{medians['sdpa'] / medians['blocked']:.2f}",
                ])
            rows.append([
                "all", "", sum(r[2] for r in rows), "summed over the blocks",
                *(f"{totals[name] * 1e3:.1f}" for name in names), f"{totals['picked ms'] * 1e3:.1f} ms",
                f"{totals['sdpa'] / totals['blocked']:.2f}",
            ])
            print(f"\n{size} x {size}, {dtype_name}, batch 1, medians of {args.repeats} interleaved calls "
                  "(fewer above 1024 tokens)\n")
            print(markdown_table(
                ["stage", "rate S", "blocks", "groups x heads x tokens x head_dim", "sdpa ms", "eager ms",
                 "blocked ms", "picked", "sdpa / blocked"],
                rows,
            ))
    machine = machine_description("cpu")
    print(f"\nMachine: {machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
