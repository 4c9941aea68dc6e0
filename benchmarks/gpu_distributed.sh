#!/usr/bin/env bash
# run_iml.py under every distributed engine (DDP, FSDP2 sharded and full state dicts, DeepSpeed ZeRO-2 and ZeRO-3):
# a checkpoint, an exact resume, the best-model reload and the final save_pretrained of each, in a table. See
# benchmarks/gpu_distributed.py for what each column means. A few minutes on one GPU.
#
#   benchmarks/gpu_distributed.sh [--engines ddp fsdp2-sharded ...] [--num-processes N] [--output FILE.json]
#   benchmarks/gpu_distributed.sh --dry-run      # the same checks with DDP on 2 CPU processes (no GPU needed)
#
# Uses the project's .venv when there is one (make install), else python3 from PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
if [[ " $* " != *" --dry-run "* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
fi
exec "$python" "$here/gpu_distributed.py" "$@"
