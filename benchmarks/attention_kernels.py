"""SDPA against the eager attention path at the shapes SparseViT runs, one row per (stage, sparsity rate).

    python benchmarks/attention_kernels.py                           # 512 x 512, fp32 and bf16
    python benchmarks/attention_kernels.py --sizes 512 1024 --dtypes bf16

The model picks one attention implementation for all its blocks, while the kernels' relative speed depends on the
sequence length, which the sparsity rate sets: a block with rate S attends within S^2 groups of N = (H / S) *
(W / S) tokens. For each such shape of the published configuration this times the two functions the model calls
(transformers' `sdpa` attention function and `modeling_sparsevit.eager_attention_forward`) on queries, keys and
values laid out as the model lays them out (strided views of one qkv projection), the two calls interleaved
round by round, and sums the medians over the blocks that use the shape: what each choice costs the whole model.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import DTYPES, machine_description, markdown_table, median, time_call
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from sparsevit_hf import SparseViTConfig
from sparsevit_hf.modeling_sparsevit import eager_attention_forward


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
    groups, heads, tokens, head_dim = shape["groups"], shape["heads"], shape["tokens"], shape["head_dim"]
    qkv = torch.randn(groups, tokens, 3, heads, head_dim, dtype=dtype)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # as the model: strided (groups, heads, N, head_dim)
    module = torch.nn.Module().eval()
    module.is_causal = False
    scaling = head_dim**-0.5
    calls = {
        "sdpa": lambda: ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, None, scaling=scaling),
        "eager": lambda: eager_attention_forward(module, query, key, value, None, scaling=scaling),
    }
    times = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            time_call(call, warmup=2, repeats=0)
        for _ in range(repeats):  # interleaved, so that a slow moment of the machine hits both
            for name, call in calls.items():
                times[name] += time_call(call, warmup=0, repeats=1)
    return {name: median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512], help="input side in pixels (native mode)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of each implementation per shape")
    args = parser.parse_args(argv)

    config = SparseViTConfig()
    for size in args.sizes:
        for dtype_name in args.dtypes:
            rows, totals = [], Counter()
            for shape in attention_shapes(config, size):
                medians = time_shape(shape, DTYPES[dtype_name], args.repeats)
                for name, seconds in medians.items():
                    totals[name] += seconds * shape["blocks"]
                rows.append([
                    shape["stage"], shape["rate"], shape["blocks"],
                    f"{shape['groups']} x {shape['heads']} x {shape['tokens']} x {shape['head_dim']}",
                    f"{medians['sdpa'] * 1e3:.2f}", f"{medians['eager'] * 1e3:.2f}",
                    f"{medians['sdpa'] / medians['eager']:.2f}",
                ])
            rows.append(["all", "", sum(r[2] for r in rows), "summed over the blocks",
                         f"{totals['sdpa'] * 1e3:.1f}", f"{totals['eager'] * 1e3:.1f}",
                         f"{totals['sdpa'] / totals['eager']:.2f}"])
            print(f"\n{size} x {size}, {dtype_name}, batch 1, medians of {args.repeats} interleaved calls\n")
            print(markdown_table(
                [
                    "stage", "rate S", "blocks", "groups x heads x tokens x head_dim",
                    "sdpa ms", "eager ms", "sdpa / eager",
                ],
                rows,
            ))
    machine = machine_description("cpu")
    print(f"\nMachine: {machine['cpu']}, {machine['torch_threads']} threads, torch {machine['torch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
