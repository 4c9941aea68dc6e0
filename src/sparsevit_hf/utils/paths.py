"""The one rule that tells a local file or folder from a Hugging Face Hub repository id.

Model names (`load_model`, `--model_name_or_path`) and data set specs (`load_iml_dataset`, `--train_data`) may be
either. A name that exists on disk is local, as in transformers' `from_pretrained`. A name that does not exist is a
Hub id only if it could be one; anything else is a local path that is missing, which callers report as such instead
of asking the Hub (offline, that error would hide the typo).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

# How a string starts when it is written as a path; a Hub id starts with a letter or digit.
_PATH_PREFIXES = ("/", "~", "\\", ".")
# File types that name local data, never a repository (a JSON pair list or combined data set).
_FILE_SUFFIXES = (".json",)


def is_local_path(name: str | os.PathLike) -> bool:
    """Whether `name` means a local file or folder rather than a Hub repository id.

    True when `name` is a `PathLike`, exists on disk (`~` expanded), or cannot be a Hub id: it starts like a path
    (`/`, `./`, `../`, `~`, `\\`, a dot), is absolute, ends in `.json`, or fails `huggingface_hub`'s
    `validate_repo_id` (more than one `/`, spaces, `--` or `..`, ...). So `owner/name` and `name` are Hub ids unless
    a folder of that name exists here, while `data/CASIA/Tp`, `./model` and `pairs.json` are paths.
    """
    if not isinstance(name, str):
        return True
    if not name or Path(name).expanduser().exists():
        return True
    if name.startswith(_PATH_PREFIXES) or os.path.isabs(name) or name.lower().endswith(_FILE_SUFFIXES):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False
