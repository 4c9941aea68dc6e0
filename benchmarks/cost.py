"""Arithmetic cost and parameters of SparseViT, of the same network with dense attention, and of SegFormer MiT-B2/B5.

    python benchmarks/cost.py                          # 512 x 512, Markdown table
    python benchmarks/cost.py --sizes 512 1024 2048 --output cost.json
    python benchmarks/cost.py --official-path /tmp/official   # also count the official code (user-supplied path)

Costs are counted by `torch.utils.flop_counter.FlopCounterMode` on one forward pass of a randomly initialised model
(batch 1, no downloads). By default the pass runs on the `meta` device: shapes only, no arithmetic, so every size
is counted in a second (SparseViT's input check, which reads the pixel values, is skipped there); `--device cpu`
counts a real pass and gives the same numbers. FlopCounterMode counts matrix products, convolutions and attention; it
reports FLOPs = 2 x multiply-accumulates (MACs). Biases, normalisations, activations, softmax, residual additions and
interpolations are not counted. The CPU fused attention kernel (`_scaled_dot_product_flash_attention_for_cpu`) is not
in its registry, so this script registers the same formula as for the GPU kernels (2 MACs-per-pair products QK^T and
AV).

The paper's 46.2 G "FLOPs" were counted with fvcore, which (a) counts one unit per multiply-accumulate for matrix
products and convolutions, i.e. reports MACs, and (b) also counts normalisations (5 per element for an affine
LayerNorm, 2 per element for an eval-mode affine BatchNorm) and bilinear upsampling (4 per output element). The
`fvcore-style` column adds those, with the rules re-implemented here, so the two counts can be compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import build_model, load_official, machine_description, markdown_table, official_logits
from torch.utils.flop_counter import FlopCounterMode

from sparsevit_hf import SparseViTConfig

ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product", "flash_attention", "efficient_attention")


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (head_dim + value_dim)


# fvcore's conventions for what FlopCounterMode leaves out (counted in fvcore units, i.e. not doubled).
def _layer_norm_fvcore(input_shape, normalized_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return _numel(input_shape) * (5 if weight_shape is not None else 4)


def _batch_norm_eval_fvcore(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return _numel(input_shape) * (2 if weight_shape is not None else 1)


def _upsample_bilinear_fvcore(*args, out_shape=None, **kwargs) -> int:
    return 4 * _numel(out_shape)


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _custom_mapping() -> dict:
    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    fvcore = {
        aten.native_layer_norm: _layer_norm_fvcore,
        aten._native_batch_norm_legit_no_training: _batch_norm_eval_fvcore,
        aten.upsample_bilinear2d: _upsample_bilinear_fvcore,
    }
    for packet, formula in fvcore.items():
        mapping[packet] = formula
        for overload in packet.overloads():
            mapping[getattr(packet, overload)] = formula
    return mapping


FVCORE_ONLY = ("native_layer_norm", "_native_batch_norm_legit_no_training", "upsample_bilinear2d")


def count(forward, pixel_values: torch.Tensor) -> dict:
    """Run `forward(pixel_values)` under FlopCounterMode; split the count into attention / other products and the
    fvcore-only terms."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter:
        forward(pixel_values)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    fvcore_extra = sum(n for op, n in per_op.items() if any(name in op for name in FVCORE_ONLY))
    flops = sum(n for op, n in per_op.items() if not any(name in op for name in FVCORE_ONLY))
    attention = sum(n for op, n in per_op.items() if any(name in op for name in ATTENTION_OPS))
    return {
        "flops": flops,
        "macs": flops // 2,
        "attention_macs": attention // 2,
        "fvcore_style": flops // 2 + fvcore_extra,
        "per_op": per_op,
    }


def segformer(variant: str):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    depths = {"b2": [3, 4, 6, 3], "b5": [3, 6, 40, 3]}[variant]
    config = SegformerConfig(
        depths=depths,
        hidden_sizes=[64, 128, 320, 512],
        num_attention_heads=[1, 2, 5, 8],
        sr_ratios=[8, 4, 2, 1],
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        mlp_ratios=[4, 4, 4, 4],
        decoder_hidden_size=768,
        num_labels=1,  # one logit map, as SparseViT's binary localization head
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    return model, lambda x: model(pixel_values=x).logits


def models(args) -> list[tuple[str, object, object]]:
    """(name, module for the parameter count, forward) for each model of the table."""
    entries = []
    published = build_model("sdpa")
    dense = build_model("sdpa", SparseViTConfig(sparsity_rates=[[1] * 20, [1] * 7]))
    official = load_official(args.official_path, published, img_size=args.sizes[0]) if args.official_path else None
    published, dense = published.to(args.device), dense.to(args.device)
    entries.append(("SparseViT (published sparsity)", published, lambda x: published(x).logits))
    entries.append(("SparseViT, dense attention (all S = 1)", dense, lambda x: dense(x).logits))
    if official is not None:
        official = official.to(args.device)
        entries.append(("official SparseViT code (same weights)", official, lambda x: official_logits(official, x)))
    if not args.no_segformer:
        for variant in ("b2", "b5"):
            model, forward = segformer(variant)
            model.to(args.device)
            entries.append((f"SegFormer MiT-{variant.upper()} (decoder 768, 1 label)", model, forward))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512], help="square input sides (default 512)")
    parser.add_argument("--official-path", help="folder holding the official SparseViT_Mul.py (optional column)")
    parser.add_argument("--no-segformer", action="store_true", help="skip the SegFormer rows")
    parser.add_argument("--device", default="meta", help="meta (default: shapes only, instant), cpu or cuda")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.official_path and len(args.sizes) > 1:
        parser.error("the official code builds for one input size: give a single --sizes with --official-path")

    results = []
    for name, module, forward in models(args):
        parameters = sum(p.numel() for p in module.parameters())
        for size in args.sizes:
            pixel_values = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(args.device)
            counted = count(forward, pixel_values)
            results.append({"model": name, "size": size, "parameters": parameters, **counted})
            print(f"counted {name} at {size}", file=sys.stderr)

    rows = []
    for r in results:
        rows.append(
            [
                r["model"],
                f"{r['size']} x {r['size']}",
                f"{r['parameters'] / 1e6:.2f}",
                f"{r['macs'] / 1e9:.2f}",
                f"{r['flops'] / 1e9:.2f}",
                f"{r['attention_macs'] / 1e9:.2f}",
                f"{r['fvcore_style'] / 1e9:.2f}",
            ]
        )
    headers = ["model", "input", "params (M)", "MACs (G)", "FLOPs (G)", "of which attention MACs (G)",
               "fvcore-style count (G)"]
    print(markdown_table(headers, rows))
    by_size = {}
    for r in results:
        by_size.setdefault(r["size"], {})[r["model"]] = r
    for size, entries in by_size.items():
        sparse = entries.get("SparseViT (published sparsity)")
        dense = entries.get("SparseViT, dense attention (all S = 1)")
        if sparse and dense:
            saved = dense["macs"] - sparse["macs"]
            print(
                f"\nAt {size} x {size} sparsity saves {saved / 1e9:.2f} G MACs "
                f"({saved / dense['macs']:.1%} of the dense "
                f"network, {1 - sparse['attention_macs'] / dense['attention_macs']:.1%} of its attention products)."
            )
    if args.output:
        Path(args.output).write_text(json.dumps({"machine": machine_description(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
