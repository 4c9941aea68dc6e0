"""Evaluation results into a model folder's card (`sparsevit-evaluate --update-card MODEL_DIR`).

The results become `model-index` entries of the card's metadata: the `CARD_METRICS` of every evaluated set, and
the baselines a reader needs to judge them (the best content-free predictor fitted on training masks, the shuffled
pairing) with the content gap. Each entry's `metric_config` names the protocol, the mode and the threshold, so
results of different protocols live side by side; an entry with the same data set, metric and configuration is
replaced, every other entry is kept. A folder without a card gets a new one rendered from the template.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from .card import card_eval_results, render_model_card, to_eval_result, validate_model_card

__all__ = ["BASELINE_CARD_METRICS", "evaluation_card_entries", "update_card_results"]

# Baseline figures written next to the model's metrics, with their display names.
BASELINE_CARD_METRICS = {
    "content_gap": "Content gap (pixel F1 - best content-free baseline)",
    "content_free_f1": "Pixel F1 of the best content-free predictor (fitted on training masks)",
    "shuffled_f1": "Pixel F1 of the shuffled pairing",
}


def evaluation_card_entries(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`model-index` entries (dicts for `to_eval_result`) of a `sparsevit-evaluate` results dictionary."""
    settings = results.get("settings", {})
    config = (
        f"protocol={settings.get('protocol', 'exact')},mode={settings.get('mode', 'resize')},"
        f"threshold={settings.get('threshold', 0.5)}"
    )
    sets = results["sets"]
    entries = card_eval_results({name: entry["metrics"] for name, entry in sets.items()})
    baselines = {name: {"content_gap": e.get("content_gap"), **e.get("baselines", {})} for name, e in sets.items()}
    entries += card_eval_results(baselines, BASELINE_CARD_METRICS)
    for item in entries:
        item["metric_config"] = config
    return entries


def _key(result: EvalResult) -> tuple:
    return (result.dataset_name, result.dataset_split, result.metric_type, result.metric_config)


def update_card_results(folder: str | os.PathLike, entries: list[dict[str, Any]]) -> ModelCard:
    """Merge `entries` (see `evaluation_card_entries`) into `folder/README.md`'s `model-index` and write it back
    atomically; a folder without a README gets a card rendered from the template. Returns the card."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--update-card {folder}: not a folder (give the model folder whose README.md to update)")
    new = []
    for entry in entries:
        result = to_eval_result(entry)
        result.metric_config = entry.get("metric_config")
        new.append(result)
    path = folder / "README.md"
    if path.is_file():
        card = ModelCard.load(path)
        kept = [r for r in (card.data.eval_results or []) if _key(r) not in {_key(n) for n in new}]
        card.data.eval_results = kept + new
        card.data.model_name = card.data.model_name or folder.resolve().name
        metrics = set(card.data.metrics or []) | {r.metric_type for r in new}
        card.data.metrics = sorted(metrics)
        card = ModelCard(str(card))  # re-parse: the header is rendered from `data`
        validate_model_card(card, expected_eval_results=card.data.eval_results)
    else:
        card = render_model_card({"model_id": folder.resolve().name, "eval_results": new})
    tmp = folder / ".README.md.tmp"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return card
