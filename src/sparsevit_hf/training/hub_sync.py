"""Pushes of a training run's output folder to a Hub model repository, in the background.

The uploads run on `huggingface_hub`'s own background executor (`HfApi.run_as_future`: one job at a time, in
order). What stays ours is what a training run needs around it: each push uploads a snapshot (training rewrites
the weights while an upload reads them), a push still queued is replaced by a newer one, a failed background push
is a warning (the next one uploads everything again), and the final push runs in the foreground and reports its
error so that the run can exit non-zero.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path

logger = logging.getLogger(__name__)

# Uploaded by the second commit of `push_checkpoints` runs: resumable checkpoints, the log and TensorBoard runs.
CHECKPOINT_PATTERNS = ["checkpoint-*", "log.jsonl", "all_results.json", "runs/*"]
# Never copied into a snapshot: the best-model copy, swap leftovers and the log (the model commit leaves them out).
_RUN_ONLY_PATTERNS = ["best_model*", "*.old", "log.jsonl"]
# What `push_checkpoints` needs back from `UPLOAD_IGNORE_PATTERNS`: the checkpoints and what they hold.
_CHECKPOINT_CONTENT = ["checkpoint-*", "runs/*", "log.jsonl", "*optimizer.*", "*scheduler.*", "*scaler.*"]
_CHECKPOINT_CONTENT += ["*rng_state*", "*.pt", "*.pth", "*.ckpt"]


class HubSync:
    """Keeps the Hub model repository `repo_id` in step with a run's output folder.

    `push(folder, message)` snapshots the folder now and uploads the snapshot in the background through
    `sparsevit_hf.hub.push_to_hub` (the model files, card and code only); with `push_checkpoints` a second commit
    adds the checkpoints and logs. `finish(folder, message)` waits for the background pushes, then pushes in the
    foreground and returns its error (None on success). `failures` and `successes` count the pushes.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool = False,
        push_checkpoints: bool = False,
        staging_dir: str | os.PathLike | None = None,
    ):
        from huggingface_hub import HfApi

        from ..hub import UPLOAD_IGNORE_PATTERNS

        self.api = HfApi(token=token)
        self.repo_id = repo_id
        self.token = token
        self.private = private
        self.push_checkpoints = push_checkpoints
        self.staging_dir = staging_dir
        ignore = list(UPLOAD_IGNORE_PATTERNS) + _RUN_ONLY_PATTERNS
        self.snapshot_ignore = [p for p in ignore if not (push_checkpoints and p in _CHECKPOINT_CONTENT)]
        self.failures: list[str] = []
        self.successes = 0
        self._queued: tuple[Future, str] | None = None
        self._futures: list[Future] = []

    @classmethod
    def create(
        cls, repo_id: str, *, token: str | None = None, private: bool = False, push_checkpoints: bool = False
    ) -> HubSync:
        """Create the repository now (a bad token or id fails before training, not after it) and return the
        `HubSync` of its full id (`me/name` for `name`)."""
        sync = cls(repo_id, token=token, private=private, push_checkpoints=push_checkpoints)
        sync.repo_id = sync.api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        return sync

    @classmethod
    def create_on_main_process(cls, accelerator, repo_id: str, **kwargs) -> tuple[str, HubSync | None]:
        """`create` on the main process only; every process gets the full repository id, the main process the
        `HubSync` (the others None). A failure raises `RuntimeError` on every process, so that all stop."""
        from accelerate.utils import broadcast_object_list

        status, sync = [None, repo_id], None
        if accelerator.is_main_process:
            try:
                sync = cls.create(repo_id, **kwargs)
                status[1] = sync.repo_id
            except Exception as error:
                status[0] = f"{type(error).__name__}: {error}"
        status = broadcast_object_list(status)
        if status[0] is not None:
            raise RuntimeError(f"cannot create the Hub repository {repo_id}: {status[0]}")
        return status[1], sync

    def _snapshot(self, folder: str | os.PathLike) -> str:
        folder = Path(folder)
        snapshot = Path(tempfile.mkdtemp(prefix="sparsevit-push-", dir=self.staging_dir))
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(relative, p) for p in self.snapshot_ignore):
                target = snapshot / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        return str(snapshot)

    def _upload(self, snapshot: str, message: str) -> None:
        from ..hub import push_to_hub

        try:
            push_to_hub(snapshot, self.repo_id, token=self.token, private=self.private, commit_message=message)
            if self.push_checkpoints:
                self.api.upload_folder(
                    repo_id=self.repo_id, folder_path=snapshot, repo_type="model",
                    commit_message=f"{message} (checkpoints, logs)", allow_patterns=CHECKPOINT_PATTERNS,
                    ignore_patterns=["*.tmp", ".*", "*/.*"],
                )
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    def _done(self, future: Future, message: str) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.successes += 1
        else:
            self.failures.append(f"{message}: {error}")
            logger.warning("Push to the Hub failed (%s: %s); training goes on, the next push retries.", message, error)

    def push(self, folder: str | os.PathLike, commit_message: str) -> Future:
        """Snapshot `folder` now and upload it in the background; a push still waiting for its turn is dropped
        (this one uploads everything it would have)."""
        if self._queued is not None and self._queued[0].cancel():
            shutil.rmtree(self._queued[1], ignore_errors=True)
        snapshot = self._snapshot(folder)
        future = self.api.run_as_future(self._upload, snapshot, commit_message)
        future.add_done_callback(lambda done: self._done(done, commit_message))
        self._queued = (future, snapshot)
        self._futures.append(future)
        return future

    def wait(self) -> None:
        """Wait for the background pushes (their failures are already counted and logged)."""
        for future in self._futures:
            if not future.cancelled():
                future.exception()
        self._futures.clear()
        self._queued = None

    def finish(self, folder: str | os.PathLike, commit_message: str) -> Exception | None:
        """Wait for the background pushes, then push `folder` in the foreground; returns the error, if any."""
        self.wait()
        try:
            self._upload(self._snapshot(folder), commit_message)
        except Exception as error:
            self.failures.append(f"{commit_message}: {error}")
            return error
        self.successes += 1
        return None
