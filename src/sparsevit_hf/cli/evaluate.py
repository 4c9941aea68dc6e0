"""`sparsevit-evaluate`: a model on named test sets, clean and degraded, with the field's metrics, the baselines that
ignore the image, tables, curves and pictures.

    sparsevit-evaluate MODEL --data casia=/data/CASIAv1 columbia=/data/Columbia --output-dir eval/ \\
        [--mode resize|native|tiled] [--threshold 0.5] [--protocol exact|imdlbenco] [--include-authentic] \\
        [--robustness jpeg:50,70,90 blur:3,7 noise:5,15] [--baseline-data SPEC] [--update-card MODEL_DIR]
    accelerate launch --num_processes 2 -m sparsevit_hf.cli.evaluate MODEL ...   # each image counted once

MODEL is a folder written by `save_pretrained` (or `examples/run_iml.py`, `sparsevit-convert`) or a Hub id. Each
SPEC is any data set spec the loaders take (a `Tp/` + `Gt/` folder, a JSON pair list, a `datasets` folder or Hub
id, `synthetic:test:...`). It writes into DIR:

- `results.json`: per set and per degradation every metric of `iml_metrics`, the trivial and content-free baselines,
  the shuffled pairing, the content gap (per manipulation kind where the set has kinds), the pixel F1 against the
  threshold, counts, the settings, the package version and the model's revision;
- `results.md`: the same as tables a paper could print;
- `threshold_curves.png`, `robustness.png` (with `--robustness`), `examples_<set>.png` (worst and best images).

The content-free predictor is the one `examples/run_iml.py` saved with the model (`content_free_baseline.json`), or
refitted on the training masks of `--baseline-data SPEC`. Bad input exits with status 2 and a message naming the
spec or file: a missing or empty data set (before any model is loaded), an unreadable image (unless
`--skip-corrupt`, which counts and skips them), an output folder that is a file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .messages import one_line_warnings

PROGRAM = "sparsevit-evaluate"
logger = logging.getLogger(PROGRAM)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("model", metavar="MODEL", help="save_pretrained folder or Hub model id")
    add("--data", nargs="+", action="extend", required=True, metavar="NAME=SPEC", help="named test sets")
    add("--output-dir", required=True, help="folder for results.json, results.md and the pictures")
    add("--mode", choices=("resize", "native", "tiled"), default="resize",
        help="resize: the processor's size (the official protocol, default); native: each image at its own size; "
        "tiled: overlapping tiles at full resolution")
    add("--tile-size", type=int, default=512, help="tiled mode: tile side, a multiple of 32 (default 512)")
    add("--tile-overlap", type=int, default=128, help="tiled mode: minimum overlap of tiles (default 128)")
    add("--threshold", type=float, default=0.5, help="probability threshold of the pixel and image metrics")
    add("--protocol", choices=("exact", "imdlbenco"), default="exact",
        help="metric definitions: exact (default) or IMDLBenCo's (authentic images count 0, ungrouped pixel AUC)")
    add("--include-authentic", action="store_true", default=None,
        help="count authentic images in the pixel metrics (F1 0 each); default: the protocol's rule")
    add("--robustness", nargs="+", action="extend", default=None, metavar="KIND:VALUES",
        help="also evaluate every set degraded: jpeg:Q1,Q2 (quality), blur:K1,K2 (odd kernel), noise:S1,S2 (sigma)")
    add("--baseline-data", metavar="SPEC", default=None,
        help="fit the content-free baseline on this training data (default: the one saved with MODEL)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (under accelerate launch: its device)")
    add("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="inference precision")
    add("--batch-size", type=int, default=8, help="images per forward pass and process")
    add("--max-samples", type=int, default=None, help="evaluate the first N images of each set")
    add("--skip-corrupt", action="store_true", help="count and skip unreadable images instead of stopping")
    add("--num-workers", type=int, default=0, help="data loader worker processes")
    add("--update-card", metavar="MODEL_DIR", default=None,
        help="write the results into this model folder's card (README.md model-index)")
    add("--trust-remote-code", action="store_true", help="passed to from_pretrained")
    return parser


def _error(message: str) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return 2


def _accelerator(device: str):
    """An `Accelerator` when launched over several processes (`accelerate launch`), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())


def main(argv: list[str] | None = None) -> int:
    with one_line_warnings(PROGRAM):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..evaluation import parse_eval_specs, parse_robustness

    try:
        specs = parse_eval_specs(args.data)
        perturbations = parse_robustness(args.robustness or [])
    except ValueError as error:
        return _error(str(error).replace("--eval_data", "--data"))
    if not 0.0 <= args.threshold <= 1.0:
        return _error(f"--threshold must be in [0, 1], got {args.threshold}")
    for name in ("batch_size", "max_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _error(f"--{name.replace('_', '-')} must be positive, got {value}")
    output_dir = Path(args.output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        return _error(f"--output-dir {output_dir} exists and is not a folder")
    if args.update_card is not None and not Path(args.update_card).is_dir():
        return _error(f"--update-card {args.update_card}: not a folder")
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    accelerator = _accelerator(args.device)
    try:
        return _run(args, specs, perturbations, output_dir, accelerator)
    finally:
        if accelerator is not None:
            accelerator.end_training()  # tears the process group down before the interpreter does


def _run(args, specs, perturbations, output_dir: Path, accelerator) -> int:
    from ..data import IMLDatasetError, load_iml_dataset
    from ..evaluation import ContentFreePredictor, Evaluator, MetricSettings, fit_content_free_on_dataset
    from ..evaluation.sets import is_synthetic_spec, load_evaluation_sets_counted
    from ..evaluation.suite import evaluate_model, model_description, write_outputs
    from ..inference import ModelLoadError, load_model

    # Data first: a bad spec fails in seconds, before the model is loaded.
    try:
        sets, skipped = load_evaluation_sets_counted(specs, args.max_samples, skip_corrupt=args.skip_corrupt)
        content_free = None
        if args.baseline_data is not None:
            split = "train" if is_synthetic_spec(args.baseline_data) else None
            training = load_iml_dataset(args.baseline_data, split=split, skip_corrupt=args.skip_corrupt)
            content_free = fit_content_free_on_dataset(training)
            if content_free is None:
                logger.warning("--baseline-data %s has no tampered mask: no content-free baseline", args.baseline_data)
        elif Path(args.model).expanduser().is_dir():
            content_free = ContentFreePredictor.load(Path(args.model).expanduser())
    except (IMLDatasetError, ValueError, OSError) as error:
        return _error(str(error))
    for name, count in skipped.items():
        if count:
            logger.warning("%s: skipped %d unreadable image(s) (--skip-corrupt)", name, count)
    if content_free is None and args.baseline_data is None:
        logger.warning("%s has no saved content-free baseline; give --baseline-data TRAINING_SPEC to fit one",
                       args.model)

    device = str(accelerator.device) if accelerator is not None else args.device
    try:
        model, processor = load_model(args.model, device=device, dtype=args.dtype,
                                      trust_remote_code=args.trust_remote_code)
    except (ModelLoadError, ValueError) as error:
        return _error(str(error))
    settings = MetricSettings(args.threshold, args.include_authentic, "max", args.protocol)
    options = {"tile_size": args.tile_size, "tile_overlap": args.tile_overlap} if args.mode == "tiled" else {}
    evaluator = Evaluator(
        sets, processor, settings, perturbations=perturbations, batch_size=args.batch_size,
        num_workers=args.num_workers, accelerator=accelerator, content_free=content_free, mode=args.mode,
        predictor_options=options,
    )
    described = {
        "mode": args.mode, "threshold": args.threshold, "protocol": args.protocol,
        "include_authentic": settings.metric().include_authentic, "image_score": "max", "dtype": args.dtype,
        "device": str(next(model.parameters()).device), "batch_size": args.batch_size,
        "max_samples": args.max_samples, "num_processes": accelerator.num_processes if accelerator else 1,
        "input_size": dict(processor.size) if args.mode == "resize" else None,
        "robustness": [p.name for p in perturbations], "baseline_data": args.baseline_data,
        **({"tile_size": args.tile_size, "tile_overlap": args.tile_overlap} if args.mode == "tiled" else {}),
    }
    try:
        results, evaluations = evaluate_model(
            model, evaluator, specs, settings=described, model_info=model_description(args.model, model),
            skipped=skipped,
        )
    except IMLDatasetError as error:
        return _error(f"{error} (use --skip-corrupt to count and skip unreadable images)")
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    written = write_outputs(results, evaluations, sets, output_dir)
    for name, entry in results["sets"].items():
        metrics = entry["metrics"]
        print(f"{name}: pixel F1 {metrics['pixel_f1']:.4f}, pixel AUC {metrics['pixel_auc']:.4f}, content-free "
              f"{metrics['content_free_f1']:.4f}, shuffled {metrics['shuffled_f1']:.4f}, content gap "
              f"{metrics['content_gap']:+.4f} ({metrics['num_images']} images)")
    print(f"Wrote {', '.join(path.name for path in written.values())} to {output_dir}")
    if args.update_card is not None:
        from ..hub.card_results import evaluation_card_entries, update_card_results

        update_card_results(args.update_card, evaluation_card_entries(results))
        print(f"Updated the model card {Path(args.update_card) / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
