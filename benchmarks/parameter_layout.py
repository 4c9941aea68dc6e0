"""What storing the convolution weights channels-last (`use_channels_last_parameters`, applied to DDP runs) costs or
saves on the CPU: a training step (fp32 forward + backward) and a bf16 forward, with the contiguous and the
channels-last copy of the same weights timed in alternating rounds of one process.

    python benchmarks/parameter_layout.py --preset small --size 256 --batch 2 --repeats 10

It also counts the parameters whose gradient strides differ from their own after one backward (what DDP copies into
its buckets every step, and warns about), and checks that both copies compute bitwise the same logits and gradients.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import build_model, machine_description, markdown_table, median, time_call

from sparsevit_hf import SparseViTConfig
from sparsevit_hf.training.distributed import use_channels_last_parameters


def mismatched_gradients(model, pixel_values, labels) -> int:
    model.zero_grad(set_to_none=True)
    model(pixel_values=pixel_values, labels=labels).loss.backward()
    return sum(p.grad is not None and p.grad.stride() != p.stride() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="SparseViTConfig preset")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="images per step")
    parser.add_argument("--repeats", type=int, default=10, help="alternating rounds")
    args = parser.parse_args(argv)

    contiguous = build_model(config=SparseViTConfig.from_preset(args.preset, drop_path_rate=0.0)).train()
    models = {"contiguous": contiguous, "channels-last": use_channels_last_parameters(copy.deepcopy(contiguous))}
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    labels = (torch.rand(args.batch, 1, args.size, args.size, generator=generator) > 0.5).float()

    def train_step(model):
        model.zero_grad(set_to_none=True)
        model(pixel_values=pixel_values, labels=labels).loss.backward()

    def bf16_forward(model):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(pixel_values=pixel_values).logits

    tasks = {"train step fp32": train_step, "forward bf16 autocast": bf16_forward}
    times = {(task, name): [] for task in tasks for name in models}
    for fn in tasks.values():  # warm-up (oneDNN primitive caches)
        for model in models.values():
            fn(model)
    for round_index in range(args.repeats):
        order = list(models.items())
        if round_index % 2:
            order.reverse()
        for task, fn in tasks.items():
            for name, model in order:
                times[task, name] += time_call(lambda fn=fn, model=model: fn(model), warmup=0, repeats=1)

    print(machine_description())
    mismatches = {name: mismatched_gradients(model, pixel_values, labels) for name, model in models.items()}
    # Bitwise-equal logits and gradients: the same kernels ran on the same values (timings on a busy machine vary).
    identical = torch.equal(*(bf16_forward(model) for model in models.values())) and all(
        torch.equal(a.grad, b.grad) for a, b in zip(*(model.parameters() for model in models.values()))
    )
    rows = []
    for task in tasks:
        base = median(times[task, "contiguous"])
        for name in models:
            value = median(times[task, name])
            rows.append([task, name, f"{value * 1e3:.1f}", f"{value / base:.3f}", mismatches[name]])
    headers = ["task", "weights", "median ms", "vs contiguous", "grads with other strides"]
    print(f"\n{args.preset} preset, {args.size} px, batch {args.batch}, {args.repeats} alternating rounds, "
          f"{torch.get_num_threads()} threads\n")
    print(markdown_table(headers, rows))
    print(f"\nbf16 logits and fp32 gradients bitwise identical: {identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
