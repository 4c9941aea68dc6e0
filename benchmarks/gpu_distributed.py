"""Every distributed engine of `examples/run_iml.py` through a checkpoint, an exact resume, the best-model reload and
the final `save_pretrained`, one short run each, and a table of what held (`benchmarks/gpu_distributed.sh`).

    benchmarks/gpu_distributed.sh                        # DDP, FSDP2 (sharded, full), ZeRO-2, ZeRO-3 on the GPUs
    benchmarks/gpu_distributed.sh --engines fsdp2-sharded zero3 --num-processes 1
    benchmarks/gpu_distributed.sh --dry-run              # the same checks with DDP on 2 CPU processes

For each engine (`examples/accelerate_configs/<config>`), in full precision so that runs can be compared:

1. `straight`: 4 optimisation steps of the tiny model on synthetic data, an evaluation and a checkpoint every 2
   steps, `--load_best_model_at_end` with a metric that never improves after the first evaluation (pixel F1 at
   threshold 1.0 is 0), so that the end of the run really reloads the step-2 best model over the step-4 weights;
2. `resumed`: a new output folder holding only what the straight run had written at step 2 (`checkpoint-2`,
   `best_model`), resumed with `--resume_from_checkpoint latest` to step 4.

Checked afterwards, on the CPU of the calling process: the distributed type each run got (from its log); the
checkpoint's model weights, read whatever the engine's format (`training.checkpoint_weights`), against the best
model saved at the same step; the final model folder (`from_pretrained`) against the best model, and the best
model against the step-4 checkpoint (the reload must have replaced those weights); the resumed run's step-4
checkpoint and log against the straight run's (max |difference|; GPU kernels need not be bitwise deterministic,
so up to `--tolerance` passes). An engine that cannot run here (no CUDA, no `deepspeed`) is
listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import markdown_table

from sparsevit_hf import SparseViTForManipulationLocalization
from sparsevit_hf.training.checkpoint_weights import checkpoint_state_dict

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "accelerate_configs"
SCRIPT = REPO / "examples" / "run_iml.py"
ENGINES = {  # name: (config, what it needs)
    "ddp": ("ddp_multi_gpu.yaml", "cuda"),
    "fsdp2-sharded": ("fsdp2_sharded.yaml", "cuda"),
    "fsdp2-full": ("fsdp2_full.yaml", "cuda"),
    "zero2": ("deepspeed_zero2.yaml", "deepspeed"),
    "zero3": ("deepspeed_zero3.yaml", "deepspeed"),
}
DRY_ENGINE = {"ddp-cpu": ("ddp_cpu_2proc.yaml", "cpu")}
RUN_ARGS = [
    "--model_preset", "tiny", "--image_size", "64",
    "--train_data", "synthetic:train:num_images=16,size=64", "--eval_data", "syn=synthetic:test:num_images=4,size=64",
    "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--dataloader_num_workers", "0",
    "--max_train_steps", "4", "--eval_steps", "2", "--eval_every_epochs", "0", "--checkpointing_steps", "2",
    "--logging_steps", "1", "--learning_rate", "1e-3", "--warmup_steps", "1",
    "--load_best_model_at_end", "--threshold", "1.0",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(needs: str) -> str | None:
    """Why an engine cannot run on this machine, or None."""
    if needs == "cpu":
        return None
    if not torch.cuda.is_available():
        return "needs CUDA"
    if needs == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            return "deepspeed is not installed"
    return None


def launch(config: str, processes: int, output: Path, extra: list[str], timeout: float) -> tuple[float, str]:
    """One `accelerate launch` of run_iml.py; returns (seconds, its stderr); a failure raises with the log tail."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
        "--num_processes", str(processes), "--main_process_port", str(_free_port()), "--mixed_precision", "no",
        str(SCRIPT), *RUN_ARGS, "--output_dir", str(output), *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    (output.parent / f"{output.name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"run_iml.py exited with {result.returncode}: {result.stderr[-1500:]}")
    return time.perf_counter() - start, result.stderr


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise ValueError(f"different tensors: {sorted(a.keys() ^ b.keys())[:5]}")
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def folder_state(folder: Path) -> dict[str, torch.Tensor]:
    return SparseViTForManipulationLocalization.from_pretrained(folder).state_dict()


def check_engine(name: str, config: str, processes: int, work: Path, extra: list[str], tolerance: float,
                 timeout: float) -> dict:
    """Run the straight and the resumed run of one engine and compare what they wrote."""
    straight, resumed = work / name / "straight", work / name / "resumed"
    shutil.rmtree(work / name, ignore_errors=True)
    (work / name).mkdir(parents=True)
    seconds, log = launch(config, processes, straight, extra, timeout)
    got = re.search(r"distributed type DistributedType\.(\w+)", log)
    row = {"engine": name, "config": config, "processes": processes, "train_s": round(seconds, 1),
           "distributed_type": got.group(1) if got else "?", "engine_warning": "but this run got" in log}
    checkpoint = straight / "checkpoint-2"
    row["checkpoint_files"] = sorted(p.name for p in checkpoint.iterdir() if p.name.startswith(("model", "pytorch")))
    best = folder_state(straight / "best_model")
    row["checkpoint_vs_best"] = max_difference(checkpoint_state_dict(checkpoint), best)
    results = json.loads((straight / "all_results.json").read_text())
    row["best_reloaded"] = results["weights"] == "best" and results["best_step"] == 2
    row["final_vs_best"] = max_difference(folder_state(straight), best)
    last = checkpoint_state_dict(straight / "checkpoint-4")
    row["best_vs_last"] = max_difference(last, best)  # > 0: the reload really replaced the step-4 weights

    resumed.mkdir()
    for part in ("checkpoint-2", "best_model"):
        shutil.copytree(straight / part, resumed / part)
    launch(config, processes, resumed, [*extra, "--resume_from_checkpoint", "latest"], timeout)
    # The final folders hold the step-2 best model; the step-4 checkpoints hold what training computed.
    row["resume_vs_straight"] = max_difference(checkpoint_state_dict(resumed / "checkpoint-4"), last)
    logs = [[json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] for run in (straight, resumed)]
    row["resume_log_equal"] = logs[0] == logs[1]
    row["ok"] = (
        row["best_reloaded"] and row["final_vs_best"] == 0.0 and row["best_vs_last"] > 0.0
        and row["checkpoint_vs_best"] <= tolerance
        and row["resume_vs_straight"] <= tolerance and not row["engine_warning"]
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--num-processes", type=int, default=None, help="default: every visible GPU")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest weight difference that passes")
    parser.add_argument("--timeout-s", type=float, default=600, help="limit of one training run")
    parser.add_argument("--work-dir", default=None, help="where the runs are written (default: a temporary folder)")
    parser.add_argument("--output", default=None, help="also write the rows as JSON")
    parser.add_argument("--dry-run", action="store_true", help="DDP on 2 CPU processes instead of the GPU engines")
    args = parser.parse_args(argv)

    engines = DRY_ENGINE if args.dry_run else {name: ENGINES[name] for name in args.engines}
    if not args.dry_run and not torch.cuda.is_available():
        print("No CUDA device: run this on a GPU machine, or check the plumbing with --dry-run.", file=sys.stderr)
        return 2
    processes = 2 if args.dry_run else args.num_processes or torch.cuda.device_count()
    extra = ["--cpu"] if args.dry_run else []
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sparsevit-distributed-"))
    rows = []
    for name, (config, needs) in engines.items():
        reason = unavailable(needs)
        if reason is not None:
            rows.append({"engine": name, "config": config, "skipped": reason})
            continue
        try:
            rows.append(check_engine(name, config, processes, work, extra, args.tolerance, args.timeout_s))
        except Exception as error:  # one engine failing must not hide the others' results
            rows.append({"engine": name, "config": config, "failed": f"{type(error).__name__}: {error}"[-600:]})
        print(f"{name}: {rows[-1]}", file=sys.stderr)

    headers = ["engine", "type got", "processes", "train s", "checkpoint files", "checkpoint vs best",
               "best reloaded, final == best, best vs step 4", "resume vs straight (step-4 weights, log)", "result"]
    table = []
    for row in rows:
        if "skipped" in row or "failed" in row:
            status = f"skipped: {row['skipped']}" if "skipped" in row else f"FAILED: {row['failed'][:200]}"
            table.append([row["engine"], "", "", "", "", "", "", "", status])
            continue
        table.append([
            row["engine"], row["distributed_type"], row["processes"], row["train_s"],
            ", ".join(row["checkpoint_files"]), f"{row['checkpoint_vs_best']:.1e}",
            f"{row['best_reloaded']}, {row['final_vs_best'] == 0.0}, {row['best_vs_last']:.1e}",
            f"{row['resume_vs_straight']:.1e}, log {'equal' if row['resume_log_equal'] else 'DIFFERS'}",
            "ok" if row["ok"] else "FAILED",
        ])
    print(markdown_table(headers, table))
    print(f"\nruns and their logs: {work}")
    if args.output:
        Path(args.output).write_text(json.dumps({"dry_run": args.dry_run, "rows": rows}, indent=2) + "\n")
    return 0 if all(row.get("ok") or "skipped" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
