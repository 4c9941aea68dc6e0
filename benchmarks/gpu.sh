#!/usr/bin/env bash
# SparseViT on one CUDA GPU in under 8 minutes: fp32 parity with the CPU, inference latency/throughput/memory at
# 512 x 512 (batch 1-64, fp32/bf16/fp16, SDPA and eager), a bf16-autocast training step with and without gradient
# checkpointing, native 2048 and 4096 latency, and torch.compile. See benchmarks/gpu.py for what each row means.
#
#   benchmarks/gpu.sh [--output results/gpu-NAME.json] [--budget-s 420]
#   benchmarks/gpu.sh --dry-run      # the same code paths on the CPU with a tiny model (under a minute)
#
# Uses the project's .venv when there is one (make install), else python3 from PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
if [[ " $* " != *" --dry-run "* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >&2
fi
exec "$python" "$here/gpu.py" "$@"
