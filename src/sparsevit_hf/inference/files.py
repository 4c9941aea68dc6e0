"""Input and output files of batch prediction (`sparsevit-predict`): expanding files, folders and globs into the
image files to read (skipping, and reporting, what is not a regular file), naming the outputs, writing them
atomically, and checking and locking the output folder."""

from __future__ import annotations

import errno
import glob
import os
import stat
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..image_decoding_sparsevit import IMAGE_EXTENSIONS

# Held in the output folder while a run writes into it (hidden, so that folder scans skip it).
LOCK_NAME = ".sparsevit-predict.lock"


@dataclass
class Failure:
    """An input that was not predicted, and why."""

    path: str
    reason: str


@dataclass
class Inputs:
    """The image files to predict, and the inputs already known to fail."""

    files: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def is_inside(path: Path, folder: Path | None) -> bool:
    """Whether `path`, with its links resolved, is `folder` (a resolved path) or inside it."""
    if folder is None:
        return False
    # os.path.realpath, unlike Path.resolve, does not raise on a symbolic-link loop (reported by `entry_problem`).
    return Path(os.path.realpath(path)).is_relative_to(folder)


def entry_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an image file, without opening it (opening a FIFO blocks), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return "a broken symbolic link"
        return f"cannot be read ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    else:
        kind = "a folder" if stat.S_ISDIR(mode) else "a special file"
    return f"{kind}, not a regular file"


def printable(text: str) -> str:
    """`text` with control characters (a newline in a file name, ...) shown as `?`, for titles drawn in pictures."""
    return "".join(character if character.isprintable() else "?" for character in text)


def _scan_folder(folder: Path, exclude: Path | None) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not is_inside(root_path / d, exclude))
        for name in sorted(files):
            path = root_path / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or is_inside(path, exclude):
                continue
            found.append(path)
    return found


def collect_inputs(arguments: list[str], exclude: str | os.PathLike | None = None) -> Inputs:
    """Expand files, folders (recursively, image extensions only) and glob patterns into a list of files.

    Files are deduplicated (by their resolved path) and kept in argument order. Missing paths, patterns that match
    nothing and entries that are not regular files (`entry_problem`) are returned as failures. Anything inside
    `exclude` (the output folder) is skipped.
    """
    exclude_path = Path(os.path.realpath(exclude)) if exclude is not None else None
    result = Inputs()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        problem = entry_problem(path)
        if problem is not None:
            result.failures.append(Failure(os.fspath(path), problem))
            return
        key = Path(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            result.files.append(Path(os.path.abspath(path)))

    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            for found in _scan_folder(path, exclude_path):
                add(found)
        elif path.exists() or path.is_symlink():  # a link loop or a broken link is reported as such by `add`
            add(path)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(os.path.expanduser(argument), recursive=True))
            files = []
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    files.extend(_scan_folder(match_path, exclude_path))
                elif not is_inside(match_path, exclude_path):
                    files.append(match_path)
            if not files:
                result.failures.append(Failure(argument, "the pattern matches no image file"))
            for found in files:
                add(found)
        else:
            result.failures.append(Failure(argument, "no such file or folder"))
    return result


def output_names(files: list[Path]) -> dict[Path, str]:
    """Relative output base name (POSIX style, extension kept) of every file: its path relative to the deepest
    folder that contains all the files. Distinct files always get distinct names."""
    if not files:
        return {}
    try:
        common = Path(os.path.commonpath([os.fspath(path.parent) for path in files]))
        return {path: path.relative_to(common).as_posix() for path in files}
    except ValueError:  # e.g. different drives on Windows: fall back to the absolute path without its anchor
        return {path: Path(*path.parts[1:]).as_posix() for path in files}


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def write_outputs(pictures: dict[str, Image.Image], paths: dict[str, Path]) -> None:
    """Save each picture as PNG under a temporary name in its target folder, then rename them all into place."""
    temporary: dict[str, Path] = {}
    try:
        for kind, picture in pictures.items():
            target = paths[kind]
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary[kind] = _temporary_name(target)
            picture.save(temporary[kind], format="PNG", compress_level=3)
        for kind, source in temporary.items():
            os.replace(source, paths[kind])
    finally:
        for source in temporary.values():
            if source.exists():
                source.unlink()


def output_folder_problem(output_dir: Path) -> str | None:
    """Why the outputs cannot be written into `output_dir`, found before any image is read, or None.

    The folder need not exist yet: then the deepest existing folder above it must be writable. Writability is
    tried by creating a temporary file, since permission bits do not tell about read-only mounts (or root)."""
    existing = next(path for path in (output_dir, *output_dir.absolute().parents) if path.exists())
    if not existing.is_dir():
        return f"--output-dir {output_dir}: {existing} exists and is not a folder."
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"--output-dir {output_dir}: cannot write into {existing} ({error.strerror or error})."
    return None


def lock_output_folder(output_dir: Path):
    """Take the output folder's lock (`LOCK_NAME`) for this run; raises `filelock.Timeout` at once if another run
    holds it. Returns the held `FileLock` (release it, or use it as a context manager)."""
    from filelock import FileLock

    lock = FileLock(output_dir / LOCK_NAME, timeout=0)
    lock.acquire()
    return lock
