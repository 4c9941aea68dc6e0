"""The evaluation loop shared by training (`examples/run_iml.py`) and stand-alone evaluation: a model's metrics on
named IML data sets, each image counted once across processes, predictions scored at each image's own size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .baselines import (
    ContentFreePredictor,
    content_free_scores,
    content_gap,
    dataset_kinds,
    dataset_masks,
    per_kind_gaps,
    resize_map,
    shuffled_pairing,
)
from .curves import ThresholdSweep
from .metrics import IMLMetric
from .robustness import Perturbation
from .sets import IMLEvaluationDataset, collate_iml
from .trivial import trivial_baselines

# Metrics reported per evaluation set (`iml_metrics`' scores plus the loss); what `--metric_for_best_model` may name.
METRIC_NAMES = (
    "pixel_f1",
    "pixel_f1_dataset",
    "pixel_f1_permuted",
    "pixel_iou",
    "pixel_auc",
    "image_auc",
    "image_accuracy",
    "image_f1",
    "loss",
    "content_free_f1",
    "shuffled_f1",
    "content_gap",
)


@dataclass(frozen=True)
class MetricSettings:
    """How probability maps are scored (the arguments of `iml_metrics`): a pixel or image counts as manipulated
    above `threshold`; `include_authentic` counts authentic images in the pixel metrics (F1 0 each, IMDLBenCo
    rule; None: the protocol's rule); `image_score` is `max` or `mean` of the map; `protocol` is `exact` or
    `imdlbenco` (IMDLBenCo's definitions, see `metrics`)."""

    threshold: float = 0.5
    include_authentic: bool | None = None
    image_score: str = "max"
    protocol: str = "exact"

    def metric(self) -> IMLMetric:
        """A fresh streaming metric with these settings."""
        return IMLMetric(self.threshold, self.include_authentic, self.image_score, self.protocol)


# Kept maps (for the shuffled pairing and the example pictures) are shrunk to at most this side; the model's maps
# are smooth upsamplings of a grid 4 times coarser than its input, so little is lost.
KEPT_MAP_SIDE = 128


@dataclass
class SetEvaluation:
    """One evaluation set's results: `metrics` (`iml_metrics`' keys, `loss`, the baselines' F1, `content_gap` and,
    where the set has kinds, `per_kind`), `baselines` (the trivial and content-free predictors' metrics and notes),
    and per image in data set order: `per_image` (`IMLMetric.per_image_stats`), `maps` (kept maps, `KEPT_MAP_SIDE`),
    plus the pixel F1 / IoU against the threshold (`curve`, when asked for)."""

    metrics: dict[str, Any]
    baselines: dict[str, Any]
    per_image: dict[str, np.ndarray]
    maps: list[np.ndarray]
    curve: dict[str, Any] | None = None


def _shrink(probabilities: np.ndarray) -> np.ndarray:
    height, width = probabilities.shape
    scale = KEPT_MAP_SIDE / max(height, width)
    if scale >= 1:
        return np.asarray(probabilities, dtype=np.float32)
    return resize_map(probabilities, max(1, round(height * scale)), max(1, round(width * scale)))


@torch.no_grad()
def _predict(
    model: nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    processor,
    settings: MetricSettings,
    *,
    accelerator=None,
    predictor=None,
    sweep: ThresholdSweep | None = None,
    description: str | None = None,
) -> tuple[IMLMetric, list[np.ndarray], float]:
    """One pass over a loader: the streaming metric (rows in data set order), the kept maps and the mean loss.

    Every per-image result travels with the image's index through `accelerator.gather_for_metrics`, which drops the
    samples `accelerate` repeats to even out the last batch, so each image is counted once and the order is the
    data set's whatever the number of processes."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    metric = settings.metric()
    records: list[tuple] = []
    show = accelerator.is_local_main_process if accelerator is not None else True
    for batch in tqdm(dataloader, desc=description, disable=not show, leave=False):
        masks = batch["mask"]
        if predictor is None:
            pixel_values = batch["pixel_values"].to(device=parameter.device, dtype=parameter.dtype)
            logits = model(pixel_values=pixel_values).logits.float()  # (B, 1, h, w)
            labels = batch["labels"].to(logits.device).float()  # (B, H, W), the model input size
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            losses = F.binary_cross_entropy_with_logits(upsampled, labels, reduction="none").mean(dim=(1, 2)).tolist()
            maps = processor.post_process_semantic_segmentation(
                logits, target_sizes=[mask.shape for mask in masks], return_probabilities=True
            )
            maps = [m["probabilities"].cpu().numpy() for m in maps]
        else:  # native / tiled: the predictor runs the model on the decoded image at its own size
            maps = predictor.predict(list(batch["image"]))
            losses = [float("nan")] * len(maps)
        rows = metric.batch_stats(maps, masks)
        curve_rows = sweep.batch_rows(maps, masks) if sweep is not None else [None] * len(maps)
        batch_records = list(zip(_indices(batch["index"]), rows, map(_shrink, maps), curve_rows, losses))
        if accelerator is not None:
            batch_records = accelerator.gather_for_metrics(batch_records, use_gather_object=True)
        records.extend(batch_records)
    model.train(was_training)
    records.sort(key=lambda record: record[0])
    metric.add_stats([record[1] for record in records], gathered=accelerator is not None)
    if sweep is not None:
        sweep.add_rows([record[3] for record in records])
    losses = [record[4] for record in records]
    loss = float(np.mean(losses)) if losses else float("nan")
    return metric, [record[2] for record in records], loss


def _indices(values: Any) -> list[int]:
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def evaluate(
    model: nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    processor,
    settings: MetricSettings = MetricSettings(),
    *,
    accelerator=None,
    description: str | None = None,
) -> dict[str, Any]:
    """Metrics of `model` on one evaluation data loader (`IMLEvaluationDataset` batches, `collate_iml`).

    With `accelerator` the loader must be prepared by it: every process runs its shard and the per-image
    statistics are gathered, each image counted exactly once. Without it, batches are moved to the model's device.
    Predictions are mapped back to each image's original size by the processor's post-processing (bilinear) before
    scoring. Returns `iml_metrics`' keys plus `loss`: the training BCE per image at the model input size, averaged
    over images. The model's training mode is restored afterwards. (`Evaluator` adds the baselines.)
    """
    metric, _, loss = _predict(model, dataloader, processor, settings, accelerator=accelerator, description=description)
    return {**metric.compute(), "loss": loss}


class Evaluator:
    """Evaluates a model on named IML data sets, and on each of them under robustness perturbations, next to the
    baselines that ignore the image (`baselines`).

    `sets` maps names to `datasets.Dataset`s (`load_evaluation_sets`); every set gets a data loader, plus one per
    perturbation named `<set>@<perturbation>` (`casia@jpeg70`). With `accelerator` the loaders are prepared by it
    and evaluation is distributed. `content_free` is the content-free predictor fitted on the training masks
    (`fit_content_free`; None: that baseline is reported as missing). `mode` is `resize` (the processor's size, the
    training evaluation) or `native` / `tiled` (`inference.Predictor`, with `predictor_options`). Call it with a
    model (and optionally the set names to run) for `{set name: metrics}`; `evaluate_set` returns everything.
    """

    def __init__(
        self,
        sets: Mapping[str, Any],
        processor,
        settings: MetricSettings = MetricSettings(),
        *,
        perturbations: Sequence[Perturbation] = (),
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        accelerator=None,
        content_free: ContentFreePredictor | None = None,
        mode: str = "resize",
        predictor_options: Mapping[str, Any] | None = None,
    ):
        self.sets = dict(sets)
        self.processor = processor
        self.settings = settings
        self.accelerator = accelerator
        self.content_free = content_free
        self.mode = mode
        self.predictor_options = dict(predictor_options or {})
        self.batch_size = batch_size
        self.loaders: dict[str, Any] = {}
        self.base_set: dict[str, str] = {}
        self.perturbations: dict[str, Perturbation | None] = {}
        for name, dataset in self.sets.items():
            for set_name, perturbation in [(name, None)] + [(f"{name}@{p.name}", p) for p in perturbations]:
                view = IMLEvaluationDataset(dataset, processor, perturbation, seed=seed, process=mode == "resize")
                loader = torch.utils.data.DataLoader(
                    view, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_iml
                )
                self.loaders[set_name] = accelerator.prepare(loader) if accelerator is not None else loader
                self.base_set[set_name] = name
                self.perturbations[set_name] = perturbation
        self._references: dict[str, dict[str, Any]] = {}

    @property
    def main_sets(self) -> list[str]:
        """The sets as given, without perturbation."""
        return list(self.sets)

    @property
    def robustness_sets(self) -> list[str]:
        """The perturbed variants, `<set>@<perturbation>`."""
        return [name for name in self.loaders if name not in self.sets]

    def perturbation_of(self, name: str) -> Perturbation | None:
        """The degradation of a set name (`casia@jpeg70`), None for a main set."""
        return self.perturbations[name]

    def __call__(self, model: nn.Module, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """`{set name: metrics}` of `model` on `names` (default: the main sets), in order."""
        names = self.main_sets if names is None else list(names)
        return {name: self.evaluate_set(model, name).metrics for name in names}

    def evaluate_set(self, model: nn.Module, name: str, thresholds: Sequence[float] | None = None) -> SetEvaluation:
        """Everything about `model` on one set (`SetEvaluation`); `thresholds` adds the threshold sweep."""
        predictor = None
        if self.mode != "resize":
            from ..inference import Predictor

            options = {"batch_size": self.batch_size, **self.predictor_options}
            predictor = Predictor(model, self.processor, self.mode, **options)
        sweep = None
        if thresholds is not None:
            sweep = ThresholdSweep(thresholds, self.settings.include_authentic, self.settings.protocol)
        metric, maps, loss = _predict(
            model, self.loaders[name], self.processor, self.settings, accelerator=self.accelerator,
            predictor=predictor, sweep=sweep, description=f"eval {name}",
        )
        metrics = {**metric.compute(), "loss": loss}
        per_image = metric.per_image_stats()
        reference = self._reference(self.base_set[name])
        shuffled, shuffled_per_image = shuffled_pairing(maps, reference["masks"], self.settings)
        free = reference["content_free"]
        metrics["content_free_f1"] = free.get("pixel_f1", float("nan"))
        metrics["shuffled_f1"] = shuffled.get("pixel_f1", float("nan"))
        metrics["content_gap"] = content_gap(metrics["pixel_f1"], metrics["content_free_f1"], metrics["shuffled_f1"])
        notes = self._notes(metrics, reference)
        if notes:
            metrics["baseline_note"] = notes
        if reference["kinds"] is not None:
            metrics["per_kind"] = per_kind_gaps(
                reference["kinds"], reference["masks"], per_image["f1"], reference["content_free_f1"],
                shuffled_per_image,
            )
        baselines = {
            "trivial": reference["trivial"],
            "content_free": self.content_free.name if self.content_free is not None else None,
            "content_free_f1": metrics["content_free_f1"],
            "content_free_metrics": free,
            "shuffled_f1": metrics["shuffled_f1"],
            "note": notes,
        }
        return SetEvaluation(metrics, baselines, per_image, maps, sweep.compute() if sweep is not None else None)

    def _notes(self, metrics: Mapping[str, Any], reference: Mapping[str, Any]) -> str | None:
        scored = [m for m in reference["masks"] if m.any() or self.settings.metric().include_authentic]
        notes = []
        if not any(mask.any() for mask in reference["masks"]):
            notes.append("the set has no tampered image, so pixel F1 and the content gap are undefined")
        if self.content_free is None:
            notes.append("no content-free predictor (no tampered training mask, or no training data given)")
        elif len(scored) < 2:
            notes.append("fewer than two scored images: no shuffled pairing")
        return "; ".join(notes) or None

    def _reference(self, name: str) -> dict[str, Any]:
        """The set's masks and kinds and the predictions that ignore the image, computed once per set."""
        if name not in self._references:
            dataset = self.sets[name]
            masks = list(dataset_masks(dataset))
            free, free_per_image = content_free_scores(self.content_free, masks, self.settings)
            self._references[name] = {
                "masks": masks, "kinds": dataset_kinds(dataset), "content_free": free,
                "content_free_f1": free_per_image, "trivial": trivial_baselines(masks, self.settings),
            }
        return self._references[name]

    def baselines(self) -> dict[str, dict[str, dict[str, Any]]]:
        """`{set: {baseline: metrics}}` on every main set: the trivial constant predictions (`trivial_baselines`)
        and, when there is one, the content-free predictor (`content_free`)."""
        result = {}
        for name in self.sets:
            reference = self._reference(name)
            result[name] = dict(reference["trivial"])
            if reference["content_free"]:
                result[name]["content_free"] = reference["content_free"]
        return result


def resolve_metric_name(metric: str, set_names: Sequence[str]) -> str:
    """Check a metric choice (`--metric_for_best_model`) and return it as `<set>/<metric>`.

    `set_names` are the evaluated set names (robustness variants included, e.g. `casia@jpeg70`). A bare metric
    name is accepted when there is exactly one set. Raises `ValueError` listing the valid choices.
    """
    metric = metric.strip()
    if "/" in metric:
        set_name, _, name = metric.rpartition("/")
    elif len(set_names) == 1:
        set_name, name = set_names[0], metric
    else:
        raise ValueError(
            f"--metric_for_best_model {metric!r} must name its evaluation set as <set>/<metric> when there are "
            f"several sets ({', '.join(set_names)})"
        )
    if set_name not in set_names:
        raise ValueError(
            f"--metric_for_best_model {metric!r}: unknown evaluation set {set_name!r}; evaluated sets: "
            f"{', '.join(set_names) or '(none)'}"
        )
    if name not in METRIC_NAMES:
        raise ValueError(
            f"--metric_for_best_model {metric!r}: unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}"
        )
    return f"{set_name}/{name}"


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{set: {metric: value}} -> {"set/metric": value}, the keys of trackers and all_results.json; nested tables
    (`per_kind`) become longer keys (`set/per_kind/splicing/content_gap`)."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
