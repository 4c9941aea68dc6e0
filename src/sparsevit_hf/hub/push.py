"""Pushing a model folder as a complete Hub model repository, and what such a repository must hold."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from huggingface_hub import HfApi, ModelCard
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from .card import (
    EXAMPLE_IMAGE_STEM,
    RunInfo,
    _as_run_info,
    find_widget_example,
    render_model_card,
    validate_model_card,
    write_widget_output,
)
from .endpoint import ENDPOINT_FILES, write_endpoint_files

# Files a repository needs for `from_pretrained(..., trust_remote_code=True)`, the pipeline and an Endpoint.
CODE_FILES = (
    "configuration_sparsevit.py",
    "modeling_sparsevit.py",
    "attention_sparsevit.py",
    "checks_sparsevit.py",
    "image_processing_sparsevit.py",
    "image_decoding_sparsevit.py",
    "localization_sparsevit.py",
)
REQUIRED_FILES = ("config.json", "preprocessor_config.json", *CODE_FILES, *ENDPOINT_FILES, "README.md")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# Left out of uploads (fnmatch patterns on the path relative to the folder; `*` also matches `/`).
UPLOAD_IGNORE_PATTERNS = [
    "checkpoint-*",  # Trainer / accelerate checkpoints, with their optimizer states
    "*optimizer.*",
    "*scheduler.*",
    "*scaler.*",
    "*rng_state*",
    "*trainer_state.json",
    "*training_args.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.bin.tmp",
    "runs/*",  # TensorBoard
    "logs/*",
    "wandb/*",
    "*events.out.tfevents*",
    "*.log",
    "*__pycache__*",
    "*.pyc",
    ".*",  # hidden files and folders (.git, .cache, editor files, temporary files)
    "*/.*",
    "*.tmp",
]


def files_to_upload(folder: str | os.PathLike, ignore_patterns: list[str] | None = None) -> list[str]:
    """The files (POSIX paths relative to `folder`) that `push_to_hub` uploads, filtered exactly as
    `HfApi.upload_folder` filters them: our ignore patterns plus huggingface_hub's `DEFAULT_IGNORE_PATTERNS`."""
    root = Path(folder)
    relative = sorted(path.relative_to(root).as_posix() for path in root.glob("**/*") if path.is_file())
    patterns = list(UPLOAD_IGNORE_PATTERNS if ignore_patterns is None else ignore_patterns)
    return list(filter_repo_objects(relative, ignore_patterns=patterns + list(DEFAULT_IGNORE_PATTERNS)))


def check_repo_folder(folder: str | os.PathLike) -> list[str]:
    """Check that a folder is a complete SparseViT repository (weights, configs, code, Endpoint files, README.md)
    once filtered; return the files that would be uploaded. Raises `ValueError` naming what is missing."""
    from ..inference.loading import check_model_folder

    check_model_folder(folder)
    uploaded = set(files_to_upload(folder))
    missing = [name for name in REQUIRED_FILES if name not in uploaded]
    if not any(name in uploaded for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if missing:
        hints = ""
        if any(name in CODE_FILES for name in missing):
            hints += " Save the model and processor after `import sparsevit_hf` (save_pretrained then copies the code)."
        if any(name in ENDPOINT_FILES for name in missing):
            hints += " `sparsevit_hf.hub.write_endpoint_files(folder)` writes handler.py and requirements.txt."
        raise ValueError(f"{os.fspath(folder)!r} is not a complete SparseViT repository: missing {missing}.{hints}")
    return sorted(uploaded)


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload SparseViT model",
    example_image: str | os.PathLike | None = None,
    card: ModelCard | RunInfo | dict | None = None,
):
    """Push a `save_pretrained` folder as a complete Hub model repository, in one commit.

    The folder must hold the weights, `config.json`, `preprocessor_config.json` and the code files that
    `save_pretrained` copies (`trust_remote_code`). Before uploading, into the folder itself:

    - `handler.py` and `requirements.txt` are written (`write_endpoint_files`), so that the repository serves as an
      Inference Endpoint;
    - `example_image` (a path), when given, is copied as `example<suffix>` (the widget picture), and the model's
      prediction on it is drawn into `example_output.png` (image | heatmap | outlined region), which the card shows
      as the widget's output (also for an `example.*` already in the folder);
    - `README.md` is written from `card` (a `ModelCard`, or a `RunInfo` / dict given to `render_model_card`, with
      the example and its output filled in); without `card`, an existing README.md is kept and a missing one is
      rendered for `repo_id` with the default recipe.

    The card is validated (`validate_model_card`), the repository is created if needed
    (`HfApi.create_repo(exist_ok=True)` with `private`), and the folder is uploaded with `upload_folder`
    without optimizer checkpoints, logs and hidden files (`UPLOAD_IGNORE_PATTERNS`).

    Returns:
        The `CommitInfo` of the upload.
    """
    from ..inference.loading import check_model_folder

    root = Path(folder)
    check_model_folder(root)
    write_endpoint_files(root)
    if example_image is not None:
        source = Path(example_image)
        if not source.is_file():
            raise FileNotFoundError(f"Example image {os.fspath(source)!r} does not exist.")
        example_name = f"{EXAMPLE_IMAGE_STEM}{source.suffix.lower() or '.jpg'}"
        for stale in root.glob(f"{EXAMPLE_IMAGE_STEM}.*"):
            if stale.name != example_name:
                stale.unlink()
        if source.resolve() != (root / example_name).resolve():
            shutil.copyfile(source, root / example_name)
    example_name = find_widget_example(root)
    example_output = write_widget_output(root, example_name) if example_name else None

    readme = root / "README.md"
    if isinstance(card, ModelCard):
        readme.write_text(str(card), encoding="utf-8")
    elif card is not None or not readme.is_file():
        info = _as_run_info(card if card is not None else {"model_id": repo_id})
        info = dataclasses.replace(info, example_image=example_name, example_output=example_output)
        readme.write_text(str(render_model_card(info)), encoding="utf-8")
    validate_model_card(readme.read_text(encoding="utf-8"))
    check_repo_folder(root)

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=os.fspath(root),
        repo_type="model",
        commit_message=commit_message,
        ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),
    )


__all__ = [
    "CODE_FILES",
    "REQUIRED_FILES",
    "UPLOAD_IGNORE_PATTERNS",
    "WEIGHT_FILES",
    "check_repo_folder",
    "files_to_upload",
    "push_to_hub",
]
