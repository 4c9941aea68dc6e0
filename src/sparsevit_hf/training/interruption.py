"""What a training run says when Ctrl-C stops it: the last complete checkpoint and the command that resumes it."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from .checkpoints import latest_checkpoint

# 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


def resume_command(script: str, arguments: Sequence[str], num_processes: int) -> str:
    """The command line that reruns `script arguments` from its latest checkpoint, with the launcher it ran under.

    A `--resume_from_checkpoint` already among the arguments (`--resume_from_checkpoint X` or `=X`) is replaced by
    `--resume_from_checkpoint latest`.
    """
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--resume_from_checkpoint":
            skip = True
        elif not argument.startswith("--resume_from_checkpoint="):
            kept.append(argument)
    launcher = ["python"]
    if "LOCAL_RANK" in os.environ:  # started by `accelerate launch` (or torchrun)
        launcher = ["accelerate", "launch"]
        if num_processes > 1:
            launcher += ["--multi_gpu", "--num_processes", str(num_processes)]
    return shlex.join([*launcher, script, *kept, "--resume_from_checkpoint", "latest"])


def interrupted_message(output_dir: str | os.PathLike, command: str) -> str:
    """One line for Ctrl-C: where the last complete checkpoint of `output_dir` is, and `command` to resume."""
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is None:
        return (
            f"run_iml: interrupted; no complete checkpoint in {output_dir} yet (save them with "
            f"--checkpointing_steps), so the run starts afresh with: {command}"
        )
    return f"run_iml: interrupted; the last complete checkpoint is {checkpoint}; resume with: {command}"
