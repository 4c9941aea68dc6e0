"""A model's evaluation on named test sets, clean and degraded, as `sparsevit-evaluate` reports it: the results
dictionary of `report` (every metric, the baselines and content gap, per kind, the threshold curve, the robustness
sweep, the settings, the package and model revision) and the files written from it. The metrics come from the
evaluation loop training uses (`Evaluator`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .curves import DEFAULT_THRESHOLDS
from .evaluator import Evaluator, SetEvaluation
from .report import example_grid, plot_robustness, plot_threshold_curves, results_markdown, write_json

__all__ = ["evaluate_model", "model_description", "write_outputs"]

# Images per end (worst, best) in each set's picture of examples.
EXAMPLES_PER_END = 3


def model_description(name_or_path: str, model) -> dict[str, Any]:
    """What identifies the evaluated weights: the name, the Hub revision when loaded from the Hub, and for a local
    folder the SHA-256 of its weights file (a revision that changes whenever the weights do)."""
    info: dict[str, Any] = {"name_or_path": str(name_or_path), "revision": getattr(model.config, "_commit_hash", None)}
    folder = Path(name_or_path).expanduser()
    for name in ("model.safetensors", "pytorch_model.bin", "model.onnx"):
        if (folder / name).is_file():
            digest = hashlib.sha256()
            with open(folder / name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            info["weights_sha256"] = digest.hexdigest()
            break
    config = model.config
    info["config"] = {key: getattr(config, key, None) for key in ("hidden_sizes", "depths", "sparsity_rates")}
    return info


def evaluate_model(
    model,
    evaluator: Evaluator,
    specs: Mapping[str, str],
    *,
    settings: Mapping[str, Any],
    model_info: Mapping[str, Any],
    skipped: Mapping[str, int] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> tuple[dict[str, Any], dict[str, SetEvaluation]]:
    """Evaluate `model` on every set of `evaluator` and its perturbed variants. Returns the results dictionary (see
    `report`) and `{set name: SetEvaluation}` of the clean sets (for the pictures). Collective under accelerate:
    every process calls it."""
    from .. import __version__

    evaluations: dict[str, SetEvaluation] = {}
    sets: dict[str, Any] = {}
    for name in evaluator.main_sets:
        evaluation = evaluator.evaluate_set(model, name, thresholds=thresholds)
        evaluations[name] = evaluation
        metrics = dict(evaluation.metrics)
        entry = {
            "spec": specs.get(name),
            "metrics": {k: v for k, v in metrics.items() if k not in ("per_kind", "baseline_note")},
            "baselines": evaluation.baselines,
            "content_gap": metrics["content_gap"],
            "threshold_curve": evaluation.curve,
            "robustness": {},
            "skipped_corrupt": int((skipped or {}).get(name, 0)),
        }
        if metrics.get("per_kind"):
            entry["per_kind"] = metrics["per_kind"]
        sets[name] = entry
    for variant in evaluator.robustness_sets:
        name, _, label = variant.partition("@")
        perturbation = evaluator.perturbation_of(variant)
        metrics = evaluator.evaluate_set(model, variant).metrics
        sets[name]["robustness"][label] = {
            "kind": perturbation.kind, "value": perturbation.value,
            "metrics": {k: v for k, v in metrics.items() if k not in ("per_kind", "baseline_note")},
        }
    results = {
        "model": dict(model_info),
        "package": {"name": "sparsevit-hf", "version": __version__},
        "settings": dict(settings),
        "content_free_predictor": None if evaluator.content_free is None else {
            "name": evaluator.content_free.name, "train_f1": evaluator.content_free.train_f1,
            "num_train_masks": evaluator.content_free.num_train_masks,
        },
        "sets": sets,
    }
    return results, evaluations


def _examples(dataset, evaluation: SetEvaluation, threshold: float) -> list[tuple[str, list[Image.Image]]]:
    """Rows (caption, [image, ground truth, model overlay]) of the worst and the best tampered images by F1."""
    from ..data import with_decoding
    from ..inference import outlined_image
    from .baselines import resize_map

    f1 = evaluation.per_image["f1"]
    tampered = np.flatnonzero(evaluation.per_image["tp"] + evaluation.per_image["fn"] > 0)
    if tampered.size == 0:
        return []
    order = tampered[np.argsort(f1[tampered], kind="stable")]
    count = min(EXAMPLES_PER_END, (order.size + 1) // 2)
    picks = [("worst", i) for i in order[:count]] + [("best", i) for i in order[::-1][:count]]
    rows = with_decoding(dataset.select_columns(["image", "mask"]))
    result = []
    for end, index in picks:
        row = rows[int(index)]
        image = Image.fromarray(np.asarray(row["image"]))
        mask = np.asarray(row["mask"], dtype=bool)
        probabilities = np.clip(resize_map(evaluation.maps[index], *mask.shape), 0.0, 1.0)
        truth = outlined_image(image, mask.astype(np.float32), 0.5)
        panels = [image, truth, outlined_image(image, probabilities, threshold)]
        result.append((f"{end}: #{index}, pixel F1 {f1[index]:.3f}", panels))
    return result


def write_outputs(
    results: dict[str, Any],
    evaluations: Mapping[str, SetEvaluation],
    datasets: Mapping[str, Any],
    output_dir: str | os.PathLike,
) -> dict[str, Path]:
    """Write `results.json`, `results.md` and the pictures (`threshold_curves.png`, `robustness.png` when there was a
    sweep, `examples_<set>.png`) into `output_dir`; returns the written paths by name."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    threshold = float(results["settings"].get("threshold", 0.5))
    written: dict[str, Path] = {}
    pictures: dict[str, str] = {}
    written["threshold_curves"] = plot_threshold_curves(results, folder / "threshold_curves.png")
    pictures["Pixel F1 against the threshold"] = "threshold_curves.png"
    robustness = plot_robustness(results, folder / "robustness.png")
    if robustness is not None:
        written["robustness"] = robustness
        pictures["Robustness: pixel F1 under degradations"] = "robustness.png"
    for name, evaluation in evaluations.items():
        rows = _examples(datasets[name], evaluation, threshold)
        if rows:
            file = f"examples_{name}.png"
            written[file] = example_grid(rows, folder / file, headers=["image", "ground truth", "model"])
            pictures[f"{name}: worst and best images (ground truth and model region outlined)"] = file
    results["pictures"] = pictures
    written["results.json"] = write_json(folder / "results.json", results)
    path = folder / "results.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(results_markdown(results), encoding="utf-8")
    os.replace(tmp, path)
    written["results.md"] = path
    return written
