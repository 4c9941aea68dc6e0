"""Inference and training speed and peak memory of SparseViT, side by side with the official code and the machine's
matrix-product ceiling, in one run.

    python benchmarks/speed.py                                    # the default grid (~10 min on a 2-core CPU)
    python benchmarks/speed.py --official-path /tmp/official      # + the official model on the same weights
    python benchmarks/speed.py --sizes 512 --dtypes fp32 --no-compile --no-train
    python benchmarks/speed.py --device cuda --output speed.json

Every configuration runs in a fresh subprocess, so its peak memory is its own: on CPU the peak resident set size
(VmHWM, reset through /proc/self/clear_refs just before the measured calls) minus the resident set size after the
model and inputs were built; on CUDA `torch.cuda.max_memory_allocated` minus the memory allocated before the calls.
Times are medians of `--repeats` calls after `--warmup` calls (fewer at large sizes, see `--min-repeats`).

Data types: `fp32`; `bf16` = the whole model and input in bfloat16 (`model.to(torch.bfloat16)`); `amp` = fp32
weights under `torch.autocast(dtype=torch.bfloat16)`. The bf16 rows report the agreement of the binary mask
(sigmoid(logits) > 0.5, logits upsampled bilinearly to the input size, as the official output) with the fp32 mask
of the same weights on the same input.

Models have random (seeded, non-degenerate) weights: speed does not depend on the values, and nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import (
    build_model,
    cleanup,
    load_official,
    machine_description,
    markdown_table,
    median,
    official_logits,
    sync,
    time_call,
)
from torch.nn import functional as F

DTYPE_NAMES = {"fp32": "fp32", "bf16": "bf16 weights", "amp": "bf16 autocast"}


# ----------------------------------------------------------------------------------------------------------------
# Measurements inside the child process
# ----------------------------------------------------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so that the resident set size counts live memory only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory above the current level between `start()` and `stop()`, in MiB.

    On CPU the freed memory the allocator still holds (e.g. from a first call) is released first, so the peak counts
    what the measured calls need, not what earlier calls left behind."""

    def __init__(self, device: str):
        self.device = device
        self.method = None

    def start(self):
        cleanup()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.method = "cuda max_memory_allocated"
            return
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # resets VmHWM (and ru_maxrss) to the current RSS
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "ru_maxrss (includes model construction)"
        self.baseline = _rss_kib("VmRSS")

    def stop(self) -> float:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.baseline) / 2**20
        import resource

        if self.method.startswith("VmHWM"):
            peak = _rss_kib("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak - self.baseline) / 1024


def _inputs(batch: int, size: int, device: str, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)


def _prepare(model, dtype: str, device: str):
    """(model, input cast, context factory) for a data type."""
    model = model.to(device)
    if dtype == "bf16":
        return model.to(torch.bfloat16), torch.bfloat16, torch.autocast(device.split(":")[0], enabled=False)
    if dtype == "amp":
        return model, torch.float32, torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return model, torch.float32, torch.autocast(device.split(":")[0], enabled=False)


def mask_agreement(logits: torch.Tensor, reference: torch.Tensor, size: int) -> dict:
    """Pixel agreement of sigmoid(upsampled logits) > 0.5 with the reference's mask."""
    up = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
    ref = F.interpolate(reference.float(), size=(size, size), mode="bilinear", align_corners=False)
    agree = ((up > 0) == (ref > 0)).float().mean().item()
    return {
        "mask_agreement": agree,
        "max_abs_logit_diff": (up - ref).abs().max().item(),
        "reference_logit_std": ref.std().item(),
    }


def count_flops(sizes: list[int]) -> dict[str, float]:
    """FLOPs (FlopCounterMode, = 2 x MACs) of one image per size, counted on the meta device (shapes only)."""
    from cost import count

    model = build_model("sdpa").to("meta")
    return {
        str(size): float(count(lambda x: model(x).logits, torch.empty(1, 3, size, size, device="meta"))["flops"])
        for size in sizes
    }


def child_ceiling(spec: dict) -> dict:
    device, n = spec["device"], spec["matmul_size"]
    out = {"matmul_size": n}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        times = time_call(lambda a=a, b=b: torch.mm(a, b), warmup=2, repeats=spec["repeats"], device=device)
        out[f"matmul_{name}_gflops"] = 2 * n**3 / median(times) / 1e9
    if spec.get("sizes"):
        out["flops"] = count_flops(spec["sizes"])
    return out


def _maybe_compile(model, spec):
    if not spec["compile"]:
        return model
    if spec.get("freezing"):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    return torch.compile(model, dynamic=False)


def child_infer(spec: dict) -> dict:
    device, size, dtype = spec["device"], spec["size"], spec["dtype"]
    base = build_model(spec["attn"]).to(device)
    out = {}
    reference = None
    if dtype != "fp32" and spec["agreement"]:
        with torch.no_grad():
            reference = base(_inputs(1, size, device)).logits.float()
    model, input_dtype, autocast = _prepare(base, dtype, device)
    forward = _maybe_compile(model, spec)
    x1 = _inputs(1, size, device).to(input_dtype)

    memory = PeakMemory(device)
    with torch.no_grad(), autocast:
        start = time.perf_counter()
        logits = forward(x1).logits  # compiles, for a compiled model: outside the memory window (see PeakMemory)
        sync(device)
        out["first_call_s"] = time.perf_counter() - start
        memory.start()
        cpu = []
        times = time_call(lambda: forward(x1), spec["warmup"], spec["repeats"], device, cpu)
        out["latency_peak_mib"] = memory.stop()
        out["latency_s"], out["latency_cpu_s"] = times, cpu
        if spec["compile"]:
            # The same calls of the model uncompiled, interleaved with compiled ones: a ratio free of load drift.
            pairs = {"compiled": [], "eager": []}
            for _ in range(spec["repeats"]):
                pairs["compiled"] += time_call(lambda: forward(x1), 0, 1, device)
                pairs["eager"] += time_call(lambda: model(x1), 0, 1, device)
            out["interleaved_compiled_s"], out["interleaved_eager_s"] = pairs["compiled"], pairs["eager"]
        if reference is not None:
            out.update(mask_agreement(logits, reference, size))
        del logits
        batch = spec["throughput_batch"]
        if batch:
            xb = _inputs(batch, size, device, seed=2).to(input_dtype)
            start = time.perf_counter()
            forward(xb)
            sync(device)
            out["throughput_first_call_s"] = time.perf_counter() - start
            memory.start()
            times = time_call(lambda: forward(xb), max(0, spec["warmup"] - 1), spec["throughput_repeats"], device)
            out["throughput_peak_mib"] = memory.stop()
            out["throughput_s"] = times
            out["throughput_img_s"] = batch / median(times)
    out["memory_method"] = memory.method
    return out


def child_train(spec: dict) -> dict:
    device, size, batch = spec["device"], spec["size"], spec["batch"]
    model = build_model(spec["attn"]).to(device).train()
    if spec["checkpointing"]:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = _inputs(batch, size, device)
    labels = (torch.rand(batch, size, size, generator=torch.Generator().manual_seed(3)) > 0.5).float().to(device)

    def step():
        loss = model(x, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # allocates the optimizer state, which then stays: not part of the measured peak
    memory = PeakMemory(device)
    memory.start()
    cpu = []
    times = time_call(step, spec["warmup"], spec["repeats"], device, cpu)
    return {"step_s": times, "step_cpu_s": cpu, "peak_mib": memory.stop(), "memory_method": memory.method}


def child_compare(spec: dict) -> dict:
    """Ours (fp32, bf16) and the official model on the same weights, calls interleaved round by round so that a
    change of machine load affects every column alike."""
    device, size = spec["device"], spec["size"]
    ours = build_model("sdpa").to(device)
    official = load_official(spec["official_path"], ours, img_size=size).to(device)
    ours_bf16 = build_model("sdpa").to(device).to(torch.bfloat16)
    ours_bf16_eager = build_model("eager").to(device).to(torch.bfloat16)
    x = _inputs(1, size, device)
    xb = x.to(torch.bfloat16)
    calls = {
        "official_fp32": lambda: official_logits(official, x),
        "ours_fp32": lambda: ours(x).logits,
        "ours_bf16": lambda: ours_bf16(xb).logits,
        "ours_bf16_eager": lambda: ours_bf16_eager(xb).logits,
    }
    times = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    with torch.no_grad():
        reference = calls["official_fp32"]().float()
        out = {
            "fp32_max_abs_logit_diff": (calls["ours_fp32"]() - reference).abs().max().item(),
            **{f"bf16_{k}": v for k, v in mask_agreement(calls["ours_bf16"](), reference, size).items()},
            **{f"bf16_eager_{k}": v for k, v in mask_agreement(calls["ours_bf16_eager"](), reference, size).items()},
        }
        for _ in range(spec["warmup"]):
            for fn in calls.values():
                fn()
        names = list(calls)
        for round_ in range(spec["repeats"]):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotate the order
                times[name] += time_call(calls[name], 0, 1, device, cpu[name])
    out.update({f"{name}_s": t for name, t in times.items()})
    out.update({f"{name}_cpu_s": t for name, t in cpu.items()})
    return out


CHILDREN = {"ceiling": child_ceiling, "infer": child_infer, "train": child_train, "compare": child_compare}


def run_child(spec: dict, timeout: float, env: dict | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


# ----------------------------------------------------------------------------------------------------------------
# The parent: plan, run, tabulate
# ----------------------------------------------------------------------------------------------------------------


def plan(args) -> list[dict]:
    common = {"device": args.device, "threads": args.threads}
    specs = [{"kind": "ceiling", "matmul_size": args.matmul_size, "repeats": 5, "sizes": args.sizes, **common}]
    if args.official_path:
        specs.append(
            {
                "kind": "compare",
                "size": 512,
                "official_path": str(Path(args.official_path).resolve()),
                "warmup": args.warmup,
                "repeats": max(2 * args.repeats, 5),  # cheap at 512, and the ratios are the point
                **common,
            }
        )
    compile_modes = [False] + ([True] if args.compile else [])
    for size in args.sizes:
        scale = (size / 512) ** 2
        repeats = max(args.min_repeats, round(args.repeats / scale))
        full = args.full_grid or size <= 512
        for dtype in args.dtypes:
            for attn in args.attn:
                if not full and attn != args.attn[0]:
                    continue
                if attn == "eager" and size >= 2048 and not args.full_grid:
                    continue  # an eager S = 1 block at 2048 materialises 5 x 16384^2 attention weights (5.4 GB)
                for compiled in compile_modes:
                    if compiled and (not full or attn != "sdpa"):
                        continue
                    batch = args.throughput_batch if size in args.throughput_sizes else 0
                    if compiled and not args.compile_throughput:
                        batch = 0  # a second compilation for the batch shape
                    if batch and size > 512:
                        batch = max(2, round(args.throughput_batch / scale))
                    specs.append(
                        {
                            "kind": "infer",
                            "size": size,
                            "dtype": dtype,
                            "attn": attn,
                            "compile": compiled,
                            "freezing": args.freezing,
                            # at 2048 one call takes tens of seconds on a CPU and its first call is no slower
                            "warmup": args.warmup if size <= 1024 or args.device != "cpu" else 0,
                            "repeats": repeats,
                            "throughput_batch": batch,
                            "throughput_repeats": max(args.min_repeats, round(repeats / max(1, batch) * 2)),
                            "agreement": dtype != "fp32",
                            **common,
                        }
                    )
    if args.train:
        for checkpointing in (False, True):
            specs.append(
                {
                    "kind": "train",
                    "size": 512,
                    "batch": args.train_batch,
                    "attn": "sdpa",
                    "checkpointing": checkpointing,
                    "warmup": 1,
                    "repeats": args.train_repeats,
                    **common,
                }
            )
    # Again at the end: did the machine change during the run?
    specs.append({"kind": "ceiling", "matmul_size": args.matmul_size, "repeats": 5, **common})
    return specs


def describe(spec: dict) -> str:
    if spec["kind"] == "infer":
        return (
            f"infer {spec['size']} {spec['dtype']} {spec['attn']}{' compiled' if spec['compile'] else ''}"
            + (f" (+batch {spec['throughput_batch']})" if spec["throughput_batch"] else "")
        )
    if spec["kind"] == "train":
        return f"train batch {spec['batch']} at {spec['size']}{' checkpointing' if spec['checkpointing'] else ''}"
    return spec["kind"]


def fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def compile_cell(result: dict) -> str:
    """Compilation plus first call, and the compiled latency relative to eager measured interleaved with it."""
    if not (result["compile"] and result.get("interleaved_eager_s")):
        return "-"
    ratio = median(result["interleaved_compiled_s"]) / median(result["interleaved_eager_s"])
    return f"{result['first_call_s']:.0f} (x{ratio:.2f} of eager)"


def tables(results: list[dict], machine: dict) -> str:
    ceilings = [r for r in results if r["kind"] == "ceiling" and "error" not in r]
    ceiling = ceilings[0] if ceilings else {}
    end_ceiling = ceilings[-1] if len(ceilings) > 1 else {}
    parts = []
    if ceiling:
        parts.append(
            f"Matrix-product ceiling ({ceiling.get('matmul_size', 2048)}^3 torch.mm): "
            f"fp32 {ceiling['matmul_fp32_gflops']:.0f} GFLOP/s, "
            f"bf16 {ceiling['matmul_bf16_gflops']:.0f} GFLOP/s at the "
            "start of the run"
            + (f" ({end_ceiling['matmul_fp32_gflops']:.0f} and {end_ceiling['matmul_bf16_gflops']:.0f} at the end)"
               if end_ceiling else "")
            + "; model: "
            + ", ".join(f"{float(f) / 1e9:.0f} GFLOP per {s} x {s} image" for s, f in ceiling["flops"].items())
            + " (FlopCounterMode)."
        )
    compare = next((r for r in results if r["kind"] == "compare"), None)
    if compare:
        if "error" in compare:
            parts.append(f"Official comparison failed: {compare['error']}")
        else:
            rows = []
            labels = {
                "official_fp32": ("official code, fp32", "reference"),
                "ours_fp32": ("ours, fp32, SDPA", f"max abs logit diff {compare['fp32_max_abs_logit_diff']:.1e}"),
                "ours_bf16": ("ours, bf16 weights, SDPA", f"mask agreement {compare['bf16_mask_agreement']:.2%}"),
                "ours_bf16_eager": (
                    "ours, bf16 weights, eager attention",
                    f"mask agreement {compare['bf16_eager_mask_agreement']:.2%}",
                ),
            }
            off, off_cpu = median(compare["official_fp32_s"]), median(compare["official_fp32_cpu_s"])
            for name, (label, fidelity) in labels.items():
                wall, cpu = median(compare[f"{name}_s"]), median(compare[f"{name}_cpu_s"])
                rows.append([label, fmt(wall), fmt(wall / off, 2), fmt(cpu), fmt(cpu / off_cpu, 2), fidelity])
            parts.append(
                markdown_table(
                    ["512 x 512, batch 1, calls interleaved", "median wall s", "wall / official fp32",
                     "median CPU s", "CPU / official fp32", "fidelity (bf16: vs official fp32 mask)"],
                    rows,
                )
            )
    infer_rows = []
    flops = ceiling.get("flops", {})
    for r in results:
        if r["kind"] != "infer":
            continue
        label = [f"{r['size']}", DTYPE_NAMES[r["dtype"]], r["attn"], "yes" if r["compile"] else "no"]
        if "error" in r:
            infer_rows.append(label + [r["error"]] + ["-"] * 7)
            continue
        latency = median(r["latency_s"])
        gflops = "-"
        if str(r["size"]) in flops:
            achieved = flops[str(r["size"])] / latency / 1e9
            key = "matmul_fp32_gflops" if r["dtype"] == "fp32" else "matmul_bf16_gflops"
            peak = max(c[key] for c in ceilings)  # the best the machine showed in this run
            gflops = f"{achieved:.0f} ({achieved / peak:.0%})"
        infer_rows.append(
            label
            + [
                fmt(latency),
                fmt(median(r["latency_cpu_s"])) if r.get("latency_cpu_s") else "-",
                gflops,
                f"{r['throughput_img_s']:.3g} @ {r['throughput_batch']}" if r.get("throughput_s") else "-",
                f"{r['latency_peak_mib']:.0f}",
                f"{r['throughput_peak_mib']:.0f}" if r.get("throughput_s") else "-",
                compile_cell(r),
                f"{r['mask_agreement']:.2%}" if "mask_agreement" in r else "-",
            ]
        )
    if infer_rows:
        parts.append(
            markdown_table(
                ["size", "dtype", "attention", "compiled", "latency b1 (s)", "CPU s b1", "GFLOP/s (of matmul ceiling)",
                 "throughput (img/s @ batch)", "peak MiB b1", "peak MiB batch",
                 "compile + 1st call s (latency vs uncompiled, interleaved)",
                 "mask agreement vs fp32"],
                infer_rows,
            )
        )
    train_rows = []
    for r in results:
        if r["kind"] != "train":
            continue
        label = [f"{r['batch']} x {r['size']}", "yes" if r["checkpointing"] else "no"]
        if "error" in r:
            train_rows.append(label + [r["error"], "-", "-"])
        else:
            cpu = fmt(median(r["step_cpu_s"])) if r.get("step_cpu_s") else "-"
            train_rows.append(label + [fmt(median(r["step_s"])), cpu, f"{r['peak_mib']:.0f}"])
    if train_rows:
        parts.append(
            markdown_table(
                ["training step (fwd+bwd+AdamW), fp32", "activation checkpointing", "median s", "CPU s", "peak MiB"],
                train_rows,
            )
        )
    method = next((r.get("memory_method") for r in results if r.get("memory_method")), None)
    parts.append(
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} ({machine['torch_threads']}"
        f" threads, {machine['cpu_capability']}), transformers {machine['transformers']}"
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")
        + (f"; peak memory: {method}" if method else "")
        + f"; OMP_WAIT_POLICY {machine.get('omp_wait_policy', 'default')}"
        + (f"; load average {machine['load_average_at_start'][0]:.1f} at start, "
           f"{machine['load_average_at_end'][0]:.1f} at end" if "load_average_at_end" in machine else "")
    )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPE_NAMES))
    parser.add_argument("--attn", nargs="+", default=["sdpa", "eager"], choices=["sdpa", "eager"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also run torch.compile (at 512 with SDPA unless --full-grid)")
    parser.add_argument("--compile-throughput", action="store_true",
                        help="also measure the compiled model at the throughput batch (compiles a second graph)")
    parser.add_argument("--freezing", action=argparse.BooleanOptionalAction, default=True,
                        help="inductor freezing (weights as constants) for compiled inference")
    parser.add_argument("--full-grid", action="store_true",
                        help="every dtype x attention x compile at every size (default: full grid at 512 only)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls at 512 (scaled down by pixel count)")
    parser.add_argument("--min-repeats", type=int, default=2)
    parser.add_argument("--throughput-batch", type=int, default=4, help="batch at 512 (halved per doubled side)")
    parser.add_argument("--throughput-sizes", type=int, nargs="*", default=None,
                        help="sizes measured at a larger batch too (default: every size on a GPU; up to 1024 on a CPU, "
                        "where a batch at 2048 takes minutes and was slower per image than batch 1)")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--official-path", help="folder holding the official SparseViT_Mul.py (optional)")
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="side of the square matrix product that measures the ceiling (default 2048)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--omp-wait-policy", choices=["active", "passive"],
                        help="OMP_WAIT_POLICY of the measuring processes (default: inherited). On a CPU shared with "
                        "other busy processes, passive avoids spinning threads waiting for a descheduled peer")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per configuration")
    parser.add_argument("--output", help="write every measurement as JSON to this file (updated as the run goes)")
    parser.add_argument("--tables-from", help="print the tables of a JSON file written by --output, and exit")
    args = parser.parse_args(argv)

    if args.throughput_sizes is None:
        args.throughput_sizes = [s for s in args.sizes if args.device != "cpu" or s <= 1024]
    if args.tables_from:
        saved = json.loads(Path(args.tables_from).read_text())
        print(tables(saved["results"], saved["machine"]))
        return 0

    if args.child:
        spec = json.loads(args.child)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        result = CHILDREN[spec["kind"]](spec)
        print("RESULT " + json.dumps({**spec, **result}), flush=True)
        return 0

    env = dict(os.environ)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    machine = machine_description(args.device)
    machine["omp_wait_policy"] = env.get("OMP_WAIT_POLICY", "default")
    machine["load_average_at_start"] = os.getloadavg()
    specs = plan(args)
    results = []
    started = time.perf_counter()
    for index, spec in enumerate(specs, 1):
        print(f"[{index}/{len(specs)}] {describe(spec)} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = {**spec, **run_child(spec, args.timeout, env)}
        results.append(result)
        summary = result.get("error") or ""
        if "matmul_fp32_gflops" in result:
            summary = (
                f"matmul fp32 {result['matmul_fp32_gflops']:.0f} GFLOP/s, "
                f"bf16 {result['matmul_bf16_gflops']:.0f} GFLOP/s"
            )
        if "latency_s" in result:
            summary = f"latency {median(result['latency_s']):.3f} s"
        elif "step_s" in result:
            summary = f"step {median(result['step_s']):.3f} s"
        elif "official_fp32_s" in result:
            summary = (f"official {median(result['official_fp32_s']):.3f} s, ours fp32 "
                       f"{median(result['ours_fp32_s']):.3f} s, ours bf16 {median(result['ours_bf16_s']):.3f} s, "
                       f"ours bf16 eager {median(result['ours_bf16_eager_s']):.3f} s")
        print(f"    {summary} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if args.output:  # after every configuration, so that an interrupted run keeps what it measured
            record = {"machine": machine, "args": vars(args), "results": results}
            Path(args.output).write_text(json.dumps(record, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    machine["load_average_at_end"] = os.getloadavg()
    print(tables(results, machine))
    if args.output:
        Path(args.output).write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
