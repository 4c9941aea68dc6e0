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

Entries that are not regular files (symbolic-link loops, broken links, FIFOs, sockets, devices) are skipped and
reported as failures without being opened. Any failure while reading, predicting, drawing or writing one image is
reported and contained to that image.

One run at a time per output folder: a run holds the lock file `.sparsevit-predict.lock` there (through `filelock`)
while it writes, and a second run into the same folder is refused (exit 2) instead of interleaving its records and
pictures with the first one's.

Exit status: 0 when every image was processed, 1 when some failed (unreadable, too small, over the native-mode
limit, not a regular file, ...; each is reported and skipped), 2 for a usage error (including an output folder that
cannot be written, or one that another run is writing into) or a model that cannot be loaded, before any image is
read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from PIL import Image

from ..inference.files import (
    LOCK_NAME,
    Failure,
    Inputs,
    collect_inputs,
    is_inside,
    lock_output_folder,
    output_folder_problem,
    output_names,
    printable,
    write_outputs,
)
from ..inference.predictor import (
    BACKENDS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
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
from .messages import one_line_warnings

OUTPUT_KINDS = ("mask", "heatmap", "overlay")
JSONL_NAME = "predictions.jsonl"


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
    with one_line_warnings("sparsevit-predict"):
        return _main(argv)


def _main(argv: list[str] | None) -> int:

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
    problem = output_folder_problem(output_dir)
    if problem is not None:
        return _error(problem)
    for argument in args.inputs:
        folder = Path(argument).expanduser()
        if folder.is_dir() and is_inside(folder, Path(os.path.realpath(output_dir))):
            return _error(
                f"the input folder {argument} is the --output-dir {output_dir} or inside it: files there are taken "
                "for the outputs of earlier runs and skipped; write the outputs into another folder."
            )
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

    from filelock import Timeout

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_output_folder(output_dir)
    except Timeout:  # before OSError, of which it is a subclass
        return _error(
            f"another sparsevit-predict run is writing into {output_dir} (it holds {output_dir / LOCK_NAME}); wait "
            "for it to finish or choose another --output-dir."
        )
    except OSError as error:
        return _error(f"cannot create --output-dir {output_dir} ({error}).")
    with lock:
        return _predict_all(args, predictor, inputs, output_dir)


def _predict_all(args, predictor: Predictor, inputs: Inputs, output_dir: Path) -> int:
    """Predict every input into `output_dir` (locked by this run), report, and return the exit status."""
    from tqdm import tqdm

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
                        "overlay": overlay_image(image, probability, args.threshold, title=printable(path.name)),
                    },
                    paths,
                )
            except OSError as error:
                fail(path, f"cannot write the outputs ({error})")
                return
            except Exception as error:  # drawing failed: this image's problem, not the run's
                fail(path, f"cannot draw the outputs ({type(error).__name__}: {error})")
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
                except Exception as error:  # anything else about one file stays that file's failure
                    fail(path, f"cannot be read ({type(error).__name__}: {error})")
                    continue
                batch.append((path, image))
            if not batch:
                continue
            try:
                probabilities = predictor.predict([image for _, image in batch])
            except Exception as error:  # e.g. out of memory: retried one image at a time below
                if len(batch) == 1:
                    fail(batch[0][0], f"prediction failed ({error})")
                    continue
                probabilities = []
                for _, image in batch:  # isolate the image that fails
                    try:
                        probabilities.append(predictor.predict([image])[0])
                    except Exception as single_error:
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
