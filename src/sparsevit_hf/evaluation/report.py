"""What `sparsevit-evaluate` writes: `results.json`, `results.md` (tables a paper could print) and pictures
(robustness curves, pixel F1 against the threshold, grids of the worst and best images).

The results are one dictionary (see `results_markdown` for the keys it reads):

    {"model": {...}, "package": {...}, "settings": {...},
     "sets": {name: {"spec": ..., "metrics": {iml_metrics keys}, "baselines": {...}, "content_gap": ...,
                     "per_kind": {...}, "threshold_curve": {...}, "robustness": {"jpeg70": {"kind": "jpeg",
                     "value": 70, "metrics": {...}}, ...}, "examples": {...}, "skipped_corrupt": n}}}

Plots use matplotlib (the Agg backend, no display needed).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

__all__ = [
    "example_grid",
    "json_safe",
    "plot_robustness",
    "plot_threshold_curves",
    "results_markdown",
    "write_json",
]

# Axis labels of the robustness curves, per perturbation kind.
KIND_AXES = {"jpeg": "JPEG quality", "blur": "Gaussian blur kernel size", "noise": "Gaussian noise sigma (8-bit)"}
KIND_NAMES = {"jpeg": "JPEG", "blur": "blur", "noise": "noise"}


def json_safe(value: Any) -> Any:
    """`value` with NaN / infinities replaced by None (strict JSON) and NumPy scalars by Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as strict JSON (NaN as null), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _number(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _perturbation_label(entry: Mapping[str, Any]) -> str:
    value = entry["value"]
    value = int(value) if float(value).is_integer() else value
    return f"{KIND_NAMES.get(entry['kind'], entry['kind'])} {value}"


def results_markdown(results: Mapping[str, Any]) -> str:
    """The tables of `results.md`: the main metrics with the baselines and the content gap, per manipulation kind
    where the sets have kinds, the robustness sweep, and the settings."""
    settings = results.get("settings", {})
    sets = results["sets"]
    lines = [f"# Evaluation of `{results['model']['name_or_path']}`", ""]
    lines.append(
        f"Protocol `{settings.get('protocol', 'exact')}`, mode `{settings.get('mode', 'resize')}`, threshold "
        f"{settings.get('threshold', 0.5)}, image score `{settings.get('image_score', 'max')}`, authentic images "
        f"{'counted as 0 in' if settings.get('include_authentic') else 'left out of'} the pixel metrics; "
        f"{results['package']['name']} {results['package']['version']}."
    )
    lines += [
        "",
        "| set | images | tampered | pixel F1 | pixel AUC | pixel IoU | image AUC | image acc. | content-free F1 "
        "| shuffled F1 | content gap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in sets.items():
        m, b = entry["metrics"], entry.get("baselines", {})
        lines.append(
            f"| {name} | {m['num_images']} | {m['num_tampered']} | **{_number(m['pixel_f1'])}** "
            f"| {_number(m['pixel_auc'])} | {_number(m['pixel_iou'])} | {_number(m['image_auc'])} "
            f"| {_number(m['image_accuracy'])} | {_number(b.get('content_free_f1'))} | {_number(b.get('shuffled_f1'))} "
            f"| **{_number(entry.get('content_gap'), signed=True)}** |"
        )
    lines += [
        "",
        "Content gap = pixel F1 - max(content-free F1, shuffled F1): what the model gains by reading the image. The "
        "content-free predictor is the best fixed map fitted on training masks; the shuffled pairing scores the "
        "model's maps against the masks of other images.",
    ]
    notes = [f"- {name}: {e['baselines']['note']}" for name, e in sets.items() if e.get("baselines", {}).get("note")]
    if notes:
        lines += [""] + notes

    lines += ["", "## Baselines (pixel F1)", ""]
    lines += [
        "| set | model | every pixel manipulated | every pixel authentic | content-free (fitted on training masks) "
        "| shuffled pairing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in sets.items():
        b = entry.get("baselines", {})
        trivial = b.get("trivial", {})
        free = b.get("content_free_f1")
        free_text = _number(free) + (f" ({b['content_free']})" if b.get("content_free") else "")
        lines.append(
            f"| {name} | {_number(entry['metrics']['pixel_f1'])} "
            f"| {_number(trivial.get('all_manipulated', {}).get('pixel_f1'))} "
            f"| {_number(trivial.get('all_authentic', {}).get('pixel_f1'))} | {free_text} "
            f"| {_number(b.get('shuffled_f1'))} |"
        )

    kinds = {name: entry["per_kind"] for name, entry in sets.items() if entry.get("per_kind")}
    if kinds:
        lines += ["", "## Per manipulation kind", ""]
        lines += [
            "| set | kind | tampered | pixel F1 | content-free F1 | shuffled F1 | content gap |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, per_kind in kinds.items():
            for kind, r in per_kind.items():
                lines.append(
                    f"| {name} | {kind} | {r['num_tampered']} | {_number(r['pixel_f1'])} "
                    f"| {_number(r['content_free_f1'])} | {_number(r['shuffled_f1'])} "
                    f"| {_number(r['content_gap'], signed=True)} |"
                )

    perturbations = _perturbation_columns(sets)
    if perturbations:
        lines += ["", "## Robustness (pixel F1)", ""]
        header = ["set", "clean"] + [_perturbation_label(p) for p in perturbations.values()]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for name, entry in sets.items():
            cells = [name, _number(entry["metrics"]["pixel_f1"])]
            for key in perturbations:
                run = entry.get("robustness", {}).get(key)
                cells.append(_number(run["metrics"]["pixel_f1"]) if run else "")
            lines.append("| " + " | ".join(cells) + " |")

    pictures = results.get("pictures", {})
    if pictures:
        lines += ["", "## Pictures", ""]
        lines += [f"![{title}]({file})" for title, file in pictures.items()]
    return "\n".join(lines) + "\n"


def _perturbation_columns(sets: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    columns: dict[str, Mapping[str, Any]] = {}
    for entry in sets.values():
        for key, run in entry.get("robustness", {}).items():
            columns.setdefault(key, run)
    return columns


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_robustness(results: Mapping[str, Any], path: str | os.PathLike, metric: str = "pixel_f1") -> Path | None:
    """One panel per perturbation kind: `metric` against the quality / kernel / sigma, one line per set, the
    set's clean score as a dotted line of the same colour. None (nothing written) without robustness runs."""
    sets = results["sets"]
    kinds: dict[str, None] = {}
    for entry in sets.values():
        for run in entry.get("robustness", {}).values():
            kinds.setdefault(run["kind"], None)
    if not kinds:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for axis, kind in zip(axes[0], kinds):
        for index, (name, entry) in enumerate(sets.items()):
            runs = sorted(
                (run["value"], run["metrics"][metric]) for run in entry.get("robustness", {}).values()
                if run["kind"] == kind
            )
            if not runs:
                continue
            colour = f"C{index % 10}"
            values, scores = zip(*runs)
            axis.plot(values, scores, marker="o", color=colour, label=name)
            axis.axhline(entry["metrics"][metric], color=colour, linestyle=":", linewidth=1)
        if kind == "jpeg":
            axis.invert_xaxis()  # stronger compression to the right, like the other kinds
        axis.set_xlabel(KIND_AXES.get(kind, kind))
        axis.set_ylabel(metric.replace("_", " "))
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small", title="dotted: clean", title_fontsize="small")
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_threshold_curves(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Pixel F1 against the threshold, one line per set, the evaluation threshold marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.0, 3.6))
    for index, (name, entry) in enumerate(results["sets"].items()):
        curve = entry["threshold_curve"]
        axis.plot(curve["thresholds"], curve["pixel_f1"], marker=".", color=f"C{index % 10}", label=name)
    threshold = results.get("settings", {}).get("threshold")
    if threshold is not None:
        axis.axvline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    axis.set_xlabel("threshold")
    axis.set_ylabel("pixel F1")
    axis.set_xlim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure, plt, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
    return path


def example_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image]]],
    path: str | os.PathLike,
    *,
    headers: Sequence[str] = (),
    height: int = 160,
) -> Path:
    """Tile picture rows (a caption, then panels, each scaled to `height` pixels) into one PNG, with column
    `headers` on top."""
    gap, caption_height = 6, 18
    scaled = [
        (caption, [p.convert("RGB").resize((max(1, round(p.width * height / p.height)), height)) for p in panels])
        for caption, panels in rows
    ]
    width = max((sum(p.width for p in panels) + gap * (len(panels) - 1) for _, panels in scaled), default=height)
    top = caption_height if headers else 0
    total = top + sum(caption_height + height + gap for _ in scaled)
    canvas = Image.new("RGB", (width + 2 * gap, total + gap), "white")
    draw = ImageDraw.Draw(canvas)
    if headers and scaled:
        x = gap
        for header, panel in zip(headers, scaled[0][1]):
            draw.text((x, 3), header, fill="black")
            x += panel.width + gap
    y = top + gap
    for caption, panels in scaled:
        draw.text((gap, y), caption, fill="black")
        y += caption_height
        x = gap
        for panel in panels:
            canvas.paste(panel, (x, y))
            x += panel.width + gap
        y += height + gap
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
