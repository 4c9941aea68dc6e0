"""SparseViT on one CUDA GPU, every figure of the GPU table in one short run (`benchmarks/gpu.sh` calls this).

    benchmarks/gpu.sh                                  # the published model on cuda:0, under 8 minutes on an H100
    benchmarks/gpu.sh --output results/gpu-h100.json   # also keep every measurement as JSON
    benchmarks/gpu.sh --dry-run                        # the same code paths on the CPU, tiny model and sizes

Sections, in order of priority (a section that would start after `--budget-s` seconds is recorded as skipped, so
the run ends in time whatever the GPU):

1. `parity`: fp32 logits on the GPU against the CPU, same weights and input, at 512 x 512 (TF32 off, then the
   default matmul/cuDNN settings);
2. `inference`: latency, throughput and peak memory at 512 x 512 for batch 1, 8, 32 and 64 in fp32, bf16 and fp16
   (the whole model cast), SDPA and eager attention;
3. `training`: one AdamW step at batch 16, 512 x 512, bf16 autocast, with and without gradient checkpointing;
4. `native`: batch-1 latency and peak memory at 2048 x 2048 and 4096 x 4096 (bf16 and fp32, SDPA);
5. `compiled`: the same inference grid as 2 with `torch.compile` (SDPA), one compilation per dtype with a
   dynamic batch dimension, started only while 75 s of the budget are left; compile time is reported.

The dry run replaces the GPU by the CPU, the published model by a tiny one, 512 by 64, 2048 and 4096 by 128 and
256, the batches by 1 and 2, and compiles bf16 only, with dynamo's `eager` backend (graph capture without code
generation) in place of inductor: every section and table is exercised in about a minute on one CPU thread.
Weights are random (seeded, non-degenerate): speed does not depend on them and nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import (
    build_model,
    cleanup,
    machine_description,
    markdown_table,
    median,
    sync,
    time_call,
)

from sparsevit_hf import SparseViTConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FULL = {"size": 512, "batches": [1, 8, 32, 64], "native": [2048, 4096], "train_batch": 16, "repeats": 10,
        "compiled_dtypes": list(DTYPES), "compile_reserve_s": 75}
DRY = {"size": 64, "batches": [1, 2], "native": [128, 256], "train_batch": 2, "repeats": 1,
       "compiled_dtypes": ["bf16"], "compile_reserve_s": 0}


def dry_run_config() -> SparseViTConfig:
    """A 0.1 M-parameter SparseViT with the published block kinds, sparsity pattern and fusion layout."""
    return SparseViTConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 4, 2], attention_head_size=16,
        sparsity_rates=[[8, 4, 2, 1], [2, 1]], fused_blocks=[[0, 1, 2, 3], [0, 1]], fusion_hidden_size=64,
    )


class Budget:
    """Seconds left before the run must stop starting new measurements."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def exhausted(self, reserve_s: float = 0.0) -> bool:
        """Whether less than `reserve_s` seconds are left (a compilation needs time to finish, not only to start)."""
        return time.monotonic() + reserve_s > self.deadline


class PeakMemory:
    """Peak CUDA memory allocated above the level at `start`, in MiB; None on a CPU."""

    def __init__(self, device: str):
        self.device = device

    def start(self) -> None:
        cleanup()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()

    def stop(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - self.baseline) / 2**20


def inputs(batch: int, size: int, device: str, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(device, dtype)


def measure(row: dict, budget: Budget, action, reserve_s: float = 0.0) -> dict:
    """Run `action()` (which returns a dict of figures) unless the budget is spent; an error or out-of-memory
    condition is recorded in the row instead of ending the run."""
    if budget.exhausted(reserve_s):
        return {**row, "skipped": "time budget"}
    try:
        return {**row, **action()}
    except torch.OutOfMemoryError:
        return {**row, "error": "out of memory"}
    except Exception as error:  # a failed configuration is a result: report it and go on
        return {**row, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    finally:
        cleanup()


def timed_forward(model, x, device: str, repeats: int) -> dict:
    memory = PeakMemory(device)
    with torch.inference_mode():
        forward = lambda: model(x).logits  # noqa: E731
        time_call(forward, warmup=2, repeats=0, device=device)
        memory.start()
        times = time_call(forward, warmup=0, repeats=repeats, device=device)
        peak = memory.stop()
    latency = median(times)
    return {"latency_s": latency, "images_per_s": x.shape[0] / latency, "peak_mib": peak, "times_s": times}


def section_parity(spec: dict, device: str, config, budget: Budget) -> list[dict]:
    def run(tf32: bool):
        model = build_model("sdpa", config)
        x = inputs(2, spec["size"], "cpu")
        with torch.inference_mode():
            reference = model(x).logits
        if device.startswith("cuda"):
            previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            with torch.inference_mode():
                logits = model.to(device)(x.to(device)).logits.cpu()
        finally:
            if device.startswith("cuda"):
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
        return {"max_abs_logit_diff": (logits - reference).abs().max().item(),
                "reference_logit_std": reference.std().item()}

    rows = [measure({"settings": "TF32 off"}, budget, lambda: run(False))]
    if device.startswith("cuda"):
        rows.append(measure({"settings": "torch defaults (cuDNN TF32 on)"}, budget, lambda: run(True)))
    return rows


def section_inference(spec: dict, device: str, config, budget: Budget) -> list[dict]:
    rows = []
    for dtype, torch_dtype in DTYPES.items():
        for attn in ("sdpa", "eager"):
            model = build_model(attn, config).to(device, torch_dtype)
            for batch in spec["batches"]:
                x = inputs(batch, spec["size"], device, torch_dtype)
                row = {"dtype": dtype, "attention": attn, "batch": batch, "size": spec["size"]}
                rows.append(measure(row, budget, lambda model=model, x=x: timed_forward(model, x, device,
                                                                                        spec["repeats"])))
            del model
    return rows


def section_training(spec: dict, device: str, config, budget: Budget) -> list[dict]:
    def run(checkpointing: bool):
        model = build_model("sdpa", config).to(device).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch, size = spec["train_batch"], spec["size"]
        x = inputs(batch, size, device)
        labels = (torch.rand(batch, size, size, generator=torch.Generator().manual_seed(3)) > 0.5).float().to(device)
        autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16)

        def step():
            with autocast:
                loss = model(x, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # allocates the optimizer state, which then stays
        memory = PeakMemory(device)
        memory.start()
        times = time_call(step, warmup=1, repeats=max(2, spec["repeats"] // 2), device=device)
        return {"step_s": median(times), "images_per_s": batch / median(times), "peak_mib": memory.stop(),
                "times_s": times}

    return [
        measure({"batch": spec["train_batch"], "checkpointing": checkpointing}, budget,
                lambda checkpointing=checkpointing: run(checkpointing))
        for checkpointing in (False, True)
    ]


def section_native(spec: dict, device: str, config, budget: Budget) -> list[dict]:
    rows = []
    for dtype in ("bf16", "fp32"):
        model = build_model("sdpa", config).to(device, DTYPES[dtype])
        for size in spec["native"]:
            rows.append(measure(
                {"dtype": dtype, "size": size}, budget,
                lambda model=model, size=size, dtype=dtype: timed_forward(
                    model, inputs(1, size, device, DTYPES[dtype]), device, max(2, spec["repeats"] // 3)
                ),
            ))
        del model
    return rows


def first_call_s(compiled, x, device: str) -> float:
    """Seconds of the first call of a compiled model, which compiles it."""
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    sync(device)
    return time.perf_counter() - start


def section_compiled(spec: dict, device: str, config, budget: Budget, backend: str) -> list[dict]:
    rows = []
    for dtype in spec["compiled_dtypes"]:
        compiled = torch.compile(build_model("sdpa", config).to(device, DTYPES[dtype]), backend=backend, dynamic=False)
        compile_s = []  # filled by the first batch size measured
        for batch in spec["batches"]:
            x = inputs(batch, spec["size"], device, DTYPES[dtype])
            torch._dynamo.mark_dynamic(x, 0)  # one graph for every batch size

            def run(compiled=compiled, x=x, compile_s=compile_s):
                if not compile_s:
                    compile_s.append(first_call_s(compiled, x, device))
                return {**timed_forward(compiled, x, device, spec["repeats"]), "compile_s": compile_s[0]}

            row = {"dtype": dtype, "batch": batch, "size": spec["size"], "backend": backend}
            rows.append(measure(row, budget, run, 0.0 if compile_s else spec["compile_reserve_s"]))
        del compiled
        torch._dynamo.reset()
    return rows


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def status(row: dict) -> str | None:
    return row.get("error") or (f"skipped ({row['skipped']})" if "skipped" in row else None)


def tables(results: dict) -> str:
    parts = []
    parts.append(markdown_table(
        ["fp32 parity, GPU vs CPU (batch 2)", "max abs logit diff", "logit std"],
        [[r["settings"], status(r) or f"{r['max_abs_logit_diff']:.1e}", status(r) or f"{r['reference_logit_std']:.2f}"]
         for r in results["parity"]],
    ))
    for name, extra in (("inference", ["attention"]), ("compiled", ["backend"])):
        rows = []
        for r in results[name]:
            label = [r["size"], r["dtype"], *(r[key] for key in extra), r["batch"]]
            done = status(r)
            rows.append(label + ([done, "-", "-"] if done else [
                fmt(r["latency_s"] * 1e3, ".2f"), fmt(r["images_per_s"], ".1f"), fmt(r["peak_mib"], ".0f")
            ]) + ([fmt(r.get("compile_s"), ".0f")] if name == "compiled" else []))
        parts.append(markdown_table(
            ["size", "dtype", *extra, "batch", "latency ms", "images/s", "peak MiB"]
            + (["compile s (first call)"] if name == "compiled" else []),
            rows,
        ))
    parts.append(markdown_table(
        ["training step, bf16 autocast, AdamW", "checkpointing", "step s", "images/s", "peak MiB"],
        [[f"{r['batch']} x {results['spec']['size']}", "yes" if r["checkpointing"] else "no"]
         + ([status(r), "-", "-"] if status(r) else
            [fmt(r["step_s"]), fmt(r["images_per_s"], ".1f"), fmt(r["peak_mib"], ".0f")])
         for r in results["training"]],
    ))
    parts.append(markdown_table(
        ["native size, batch 1, SDPA", "dtype", "latency s", "peak MiB"],
        [[f"{r['size']} x {r['size']}", r["dtype"]]
         + ([status(r), "-"] if status(r) else [fmt(r["latency_s"]), fmt(r["peak_mib"], ".0f")])
         for r in results["native"]],
    ))
    machine = results["machine"]
    parts.append(f"Device: {machine.get('gpu', 'CPU (dry run)')}; torch {machine['torch']}, transformers "
                 f"{machine['transformers']}; total {results['total_s']:.0f} s"
                 + (" (dry run: tiny model, CPU)" if results["dry_run"] else ""))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model and sizes on the CPU (tests the script)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    parser.add_argument("--budget-s", type=float, default=420, help="start no measurement after this many seconds")
    parser.add_argument("--output", help="write every measurement as JSON to this file")
    args = parser.parse_args(argv)

    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA device: run on a GPU machine, or use --dry-run to check the script on the CPU.",
              file=sys.stderr)
        return 2
    spec = DRY if args.dry_run else FULL
    if args.dry_run:
        torch.set_num_threads(1)  # a tiny model runs fastest on one thread, and never stalls on a busy machine
    config = dry_run_config() if args.dry_run else SparseViTConfig()
    backend = "eager" if args.dry_run else "inductor"
    budget = Budget(args.budget_s)
    started = time.perf_counter()
    results = {"dry_run": args.dry_run, "spec": spec, "machine": machine_description(device)}
    sections = {
        "parity": lambda: section_parity(spec, device, config, budget),
        "inference": lambda: section_inference(spec, device, config, budget),
        "training": lambda: section_training(spec, device, config, budget),
        "native": lambda: section_native(spec, device, config, budget),
        "compiled": lambda: section_compiled(spec, device, config, budget, backend),
    }
    for name, section in sections.items():
        print(f"[{time.perf_counter() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
        results[name] = section()
        results["total_s"] = time.perf_counter() - started
        if args.output:  # after every section, so that an interrupted run keeps what it measured
            Path(args.output).write_text(json.dumps(results, indent=2))
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
