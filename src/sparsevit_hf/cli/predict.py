"""`sparsevit-predict`: where was each photo tampered? Masks, heatmaps and overlays for files, folders and globs.

    sparsevit-predict MODEL INPUT... --output-dir DIR [--mode resize|native|tiled] [--threshold 0.5] ...

MODEL is a folder written by `save_pretrained` (or `sparsevit-convert`) or a Hugging Face Hub model id. Each INPUT is
an image file (tried whatever its extension), a folder (searched recursively for files with an image extension;
hidden files and folders, and anything inside the output folder, are skipped) or a glob pattern (`**` recurses;
quote it so that the shell does not expand it).

For every image, at its original resolution (after applying its EXIF orientation):

- `<name>.mask.png`: binary mask, 255 where the probability is above the threshold;
- `<name>.heatmap.png`: the probability map in colour (dark violet 0 -> pale yellow 1);
- `<name>.overlay.png`: image | heatmap | image with the manipulated region tinted and outlined;

and one line of `predictions.jsonl` (rewritten by each run): `file` (absolute path), `width`, `height`,
`score` (the image-level score: the maximum pixel probability), `manipulated_fraction` (fraction of pixels above
the threshold), `threshold`, `mode`, and `outputs` (the three file names, relative to the output folder).

Output names: `<name>` is the input's path relative to the deepest folder containing all inputs, file extension
included (`a/x.jpg` -> `a/x.jpg.mask.png`), so that inputs with the same stem in different folders, or
`x.jpg` next to `x.png`, never collide. Every file is written under a temporary name in its folder and then
renamed, so the output folder never holds a half-written picture.

Images smaller than 32 x 32 pixels fail in every mode (the processor refuses them before resizing, and an upscaled
thumbnail carries no forensic traces); in native mode, images above `--max-pixels` fail with a hint to use tiled.

Exit status: 0 when every image was processed, 1 when some failed (unreadable, too small, over the native-mode
limit, ...; each is reported and skipped), 2 for a usage error or a model that cannot be loaded (before any image
is processed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..inference.predictor import (
    BACKENDS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    IMAGE_EXTENSIONS,
    MODES,
    ImageLoadError,
    ImageSizeError,
    ModelLoadError,
    Predictor,
    image_score,
    load_image,
    load_model,
    manipulated_fraction,
)
from ..inference.visualization import heatmap_image, mask_image, overlay_image

OUTPUT_KINDS = ("mask", "heatmap", "overlay")
JSONL_NAME = "predictions.jsonl"


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _is_inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _scan_folder(folder: Path, exclude: Path | None) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _is_inside(root_path / d, exclude))
        for name in sorted(files):
            path = root_path / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or _is_inside(path, exclude):
                continue
            found.append(path)
    return found


def collect_inputs(arguments: list[str], exclude: str | os.PathLike | None = None) -> Inputs:
    """Expand files, folders (recursively, image extensions only) and glob patterns into a list of files.

    Files are deduplicated (by their resolved path) and kept in argument order. Missing paths and patterns that
    match nothing are returned as failures. Anything inside `exclude` (the output folder) is skipped.
    """
    exclude_path = Path(exclude).resolve() if exclude is not None else None
    result = Inputs()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            result.files.append(Path(os.path.abspath(path)))

    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            for found in _scan_folder(path, exclude_path):
                add(found)
        elif path.exists():
            add(path)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(os.path.expanduser(argument), recursive=True))
            files = []
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    files.extend(_scan_folder(match_path, exclude_path))
                elif match_path.is_file() and not _is_inside(match_path, exclude_path):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsevit-predict",
        description=(
            "Predict where photos were tampered with a SparseViT model: writes a binary mask, a probability "
            "heatmap and an overlay PNG per image (at its original size) and predictions.jsonl."
        ),
        epilog=(
            "Folders are searched recursively for image files (by extension); files named explicitly are always "
            "tried. Output files are named after the input's path relative to the deepest folder containing all "
            "inputs, extension kept: a/x.jpg -> DIR/a/x.jpg.mask.png. Exit status: 0 all processed, 1 some images "
            "failed, 2 usage or model error."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="save_pretrained folder or Hugging Face Hub model id")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the pictures and predictions.jsonl")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="resize",
        help="resize: official 512x512 protocol (default); native: full resolution (bounded by --max-pixels); "
        "tiled: overlapping tiles at full resolution, for any size",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="probability above which a pixel is manipulated (default 0.5)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="images (resize/native) or tiles (tiled) per forward pass (default 1)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="inference precision (default fp32)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="pytorch",
        help="pytorch (default) or onnxruntime: MODEL is then a folder written by sparsevit-export, run in resize "
        "or tiled mode (tiles of its exported size) in its exported precision",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=DEFAULT_TILE_SIZE,
        help=f"tiled mode: tile side, a multiple of 32 (default {DEFAULT_TILE_SIZE})",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help=f"tiled mode: minimum overlap of neighbouring tiles (default {DEFAULT_TILE_OVERLAP})",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"native mode: refuse larger images, suggesting tiled mode (default {DEFAULT_MAX_PIXELS} = 4096*4096; "
        "0: no limit)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="passed to from_pretrained, as in transformers; this package's own classes serve SparseViT models "
        "either way, so the code files of MODEL are never run by this command",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _error(message: str) -> int:
    print(f"sparsevit-predict: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        return _error(f"--threshold must be in [0, 1], got {args.threshold}.")
    if args.batch_size < 1:
        return _error(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.max_pixels < 0:
        return _error(f"--max-pixels must be positive (0: no limit), got {args.max_pixels}.")
    if args.mode == "tiled" and (args.tile_size < 32 or args.tile_size % 32):
        return _error(f"--tile-size must be a multiple of 32, got {args.tile_size}.")
    if args.mode == "tiled" and not 0 <= args.tile_overlap < args.tile_size:
        return _error(f"--tile-overlap must be in [0, --tile-size), got {args.tile_overlap}.")

    output_dir = Path(args.output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        return _error(f"--output-dir {output_dir} exists and is not a folder.")
    inputs = collect_inputs(args.inputs, exclude=output_dir)
    if not inputs.files and not inputs.failures:
        return _error("no image files found in the inputs.")

    try:
        model, processor = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            backend=args.backend,
        )
        predictor = Predictor(
            model,
            processor,
            args.mode,
            tile_size=args.tile_size,
            tile_overlap=args.tile_overlap,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
        )
    except Exception as error:
        return _error(
            str(error) if isinstance(error, (ModelLoadError, ValueError)) else f"{type(error).__name__}: {error}"
        )

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return _error(f"cannot create --output-dir {output_dir} ({error}).")
    names = output_names(inputs.files)
    failures = list(inputs.failures)
    for failure in failures:
        print(f"sparsevit-predict: skipped {failure.path}: {failure.reason}", file=sys.stderr)
    processed = 0
    start_time = time.perf_counter()
    # Several images per forward pass only where it helps: resize mode (and native mode for same-size images).
    images_per_step = args.batch_size if args.mode in ("resize", "native") else 1

    with (
        open(output_dir / JSONL_NAME, "w", encoding="utf-8") as jsonl,
        tqdm(
            total=len(inputs.files), unit="image", disable=args.quiet, file=sys.stderr, dynamic_ncols=True
        ) as progress,
    ):

        def fail(path: Path, reason: str) -> None:
            reason = reason.removeprefix(f"{os.fspath(path)}: ")  # loader messages name the file already
            failures.append(Failure(os.fspath(path), reason))
            progress.write(f"sparsevit-predict: failed {path}: {reason}", file=sys.stderr)
            progress.update(1)

        def finish(path: Path, image: Image.Image, probability) -> None:
            nonlocal processed
            name = names[path]
            paths = {kind: output_dir / f"{name}.{kind}.png" for kind in OUTPUT_KINDS}
            try:
                write_outputs(
                    {
                        "mask": mask_image(probability, args.threshold),
                        "heatmap": heatmap_image(probability),
                        "overlay": overlay_image(image, probability, args.threshold, title=path.name),
                    },
                    paths,
                )
            except OSError as error:
                fail(path, f"cannot write the outputs ({error})")
                return
            record = {
                "file": os.fspath(path),
                "width": image.width,
                "height": image.height,
                "score": round(image_score(probability), 6),
                "manipulated_fraction": round(manipulated_fraction(probability, args.threshold), 6),
                "threshold": args.threshold,
                "mode": args.mode,
                "outputs": {kind: paths[kind].relative_to(output_dir).as_posix() for kind in OUTPUT_KINDS},
            }
            if args.mode == "tiled":
                record["tile_size"], record["tile_overlap"] = args.tile_size, args.tile_overlap
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()
            processed += 1
            progress.update(1)

        for step in range(0, len(inputs.files), images_per_step):
            batch = []
            for path in inputs.files[step : step + images_per_step]:
                try:
                    image = load_image(path)
                    predictor.check(image, os.fspath(path))
                except (ImageLoadError, ImageSizeError) as error:
                    fail(path, str(error))
                    continue
                batch.append((path, image))
            if not batch:
                continue
            try:
                probabilities = predictor.predict([image for _, image in batch])
            except (RuntimeError, ValueError, MemoryError) as error:
                if len(batch) == 1:
                    fail(batch[0][0], f"prediction failed ({error})")
                    continue
                probabilities = []
                for _, image in batch:  # isolate the image that fails
                    try:
                        probabilities.append(predictor.predict([image])[0])
                    except (RuntimeError, ValueError, MemoryError) as single_error:
                        probabilities.append(single_error)
            for (path, image), probability in zip(batch, probabilities, strict=True):
                if isinstance(probability, BaseException):
                    fail(path, f"prediction failed ({probability})")
                else:
                    finish(path, image, probability)

    elapsed = time.perf_counter() - start_time
    total = processed + len(failures)
    per_image = f", {elapsed / processed:.2f} s per image" if processed else ""
    print(
        f"sparsevit-predict: {processed} processed, {len(failures)} failed, {total} total in {elapsed:.1f} s"
        f"{per_image}; outputs in {output_dir}",
        file=sys.stderr,
    )
    if failures:
        print("sparsevit-predict: failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure.path}: {failure.reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
