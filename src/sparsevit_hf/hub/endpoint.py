"""The Inference Endpoints files of a model folder: `handler.py` (a copy of `endpoint_handler.py`) and
`requirements.txt` (which Inference Endpoints installs before it starts the handler, over its toolkit's own
transformers and torch)."""

from __future__ import annotations

import logging
import os
import shutil
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

HANDLER_FILE = "handler.py"
REQUIREMENTS_FILE = "requirements.txt"
ENDPOINT_FILES = (HANDLER_FILE, REQUIREMENTS_FILE)
HANDLER_SOURCE = Path(__file__).with_name("endpoint_handler.py")
DISTRIBUTION = "sparsevit-hf"
# What the handler and the model's code files import; their versions are those the package requires.
RUNTIME_PACKAGES = ("torch", "transformers", "safetensors", "numpy", "pillow")


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_requirements() -> list[str]:
    """Requirement lines for the packages of `RUNTIME_PACKAGES`, with the version bounds of this package's
    `install_requires` (read from its installed metadata, so that they never drift from `setup.cfg`)."""
    from packaging.requirements import Requirement

    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        logger.warning("%s is not installed; requirements.txt lists the packages without versions.", DISTRIBUTION)
        return list(RUNTIME_PACKAGES)
    bounds = {}
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is None and _canonical(requirement.name) in RUNTIME_PACKAGES:
            bounds[_canonical(requirement.name)] = f"{requirement.name}{requirement.specifier}"
    return [bounds.get(name, name) for name in RUNTIME_PACKAGES]


def requirements_text() -> str:
    try:
        version = f" {metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        version = ""
    header = (
        "# Installed by Inference Endpoints before handler.py starts: the versions SparseViT's code needs, above the\n"
        f"# endpoint toolkit's defaults (written by {DISTRIBUTION}{version}).\n"
    )
    return header + "".join(f"{line}\n" for line in runtime_requirements())


def write_endpoint_files(folder: str | os.PathLike) -> list[str]:
    """Write `handler.py` and `requirements.txt` at the root of the model folder `folder` (each atomically, so a
    reader never sees half a file); return their names. Every model folder the project writes gets them: the
    output of `sparsevit-convert`, of a training run, and every `push_to_hub`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Model folder {os.fspath(folder)!r} does not exist.")
    handler_tmp = folder / f".{HANDLER_FILE}.tmp"
    shutil.copyfile(HANDLER_SOURCE, handler_tmp)
    os.replace(handler_tmp, folder / HANDLER_FILE)
    requirements_tmp = folder / f".{REQUIREMENTS_FILE}.tmp"
    requirements_tmp.write_text(requirements_text(), encoding="utf-8")
    os.replace(requirements_tmp, folder / REQUIREMENTS_FILE)
    return list(ENDPOINT_FILES)


__all__ = [
    "ENDPOINT_FILES",
    "HANDLER_SOURCE",
    "RUNTIME_PACKAGES",
    "requirements_text",
    "runtime_requirements",
    "write_endpoint_files",
]
