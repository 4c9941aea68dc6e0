"""The evaluation loop shared by training (`examples/run_iml.py`) and stand-alone evaluation: a model's metrics on
named IML data sets, each image counted once across processes, predictions scored at each image's own size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

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


@torch.no_grad()
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
    statistics are gathered with `IMLMetric.add_batch(..., accelerator=...)`, which drops the samples `accelerate`
    repeats to even out the last batch, so each image is counted exactly once. Without it, batches are moved to the
    model's device. Predictions are mapped back to each image's original size by the processor's post-processing
    (bilinear) before scoring. Returns `iml_metrics`' keys plus `loss`: the training BCE per image at the model
    input size, averaged over images. The model's training mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    metric = settings.metric()
    loss_sum, loss_count = 0.0, 0
    show = accelerator.is_local_main_process if accelerator is not None else True
    for batch in tqdm(dataloader, desc=description, disable=not show, leave=False):
        pixel_values = batch["pixel_values"]
        if accelerator is None:
            pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
        logits = model(pixel_values=pixel_values).logits.float()  # (B, 1, h, w)
        labels = batch["labels"].to(logits.device).float()  # (B, H, W), the model input size
        upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        per_image = F.binary_cross_entropy_with_logits(upsampled, labels, reduction="none").mean(dim=(1, 2))
        if accelerator is not None:
            per_image = accelerator.gather_for_metrics(per_image)
        loss_sum += float(per_image.sum())
        loss_count += int(per_image.numel())
        masks = batch["mask"]
        maps = processor.post_process_semantic_segmentation(
            logits, target_sizes=[mask.shape for mask in masks], return_probabilities=True
        )
        metric.add_batch([m["probabilities"].cpu() for m in maps], masks, accelerator=accelerator)
    results = metric.compute()
    results["loss"] = loss_sum / loss_count if loss_count else float("nan")
    model.train(was_training)
    return results


class Evaluator:
    """Evaluates a model on named IML data sets, and on each of them under robustness perturbations.

    `sets` maps names to `datasets.Dataset`s (`load_evaluation_sets`); every set gets a data loader, plus one per
    perturbation named `<set>@<perturbation>` (`casia@jpeg70`). With `accelerator` the loaders are prepared by it
    and evaluation is distributed (see `evaluate`). Call it with a model (and optionally the set names to run) for
    `{set name: metrics}`.
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
    ):
        self.sets = dict(sets)
        self.processor = processor
        self.settings = settings
        self.accelerator = accelerator
        self.loaders: dict[str, Any] = {}
        for name, dataset in self.sets.items():
            for set_name, perturbation in [(name, None)] + [(f"{name}@{p.name}", p) for p in perturbations]:
                loader = torch.utils.data.DataLoader(
                    IMLEvaluationDataset(dataset, processor, perturbation, seed=seed),
                    batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_iml,
                )
                self.loaders[set_name] = accelerator.prepare(loader) if accelerator is not None else loader

    @property
    def main_sets(self) -> list[str]:
        """The sets as given, without perturbation."""
        return list(self.sets)

    @property
    def robustness_sets(self) -> list[str]:
        """The perturbed variants, `<set>@<perturbation>`."""
        return [name for name in self.loaders if name not in self.sets]

    def __call__(self, model: nn.Module, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """`{set name: metrics}` of `model` on `names` (default: the main sets), in order."""
        names = self.main_sets if names is None else list(names)
        return {
            name: evaluate(
                model, self.loaders[name], self.processor, self.settings,
                accelerator=self.accelerator, description=f"eval {name}",
            )
            for name in names
        }

    def baselines(self) -> dict[str, dict[str, dict[str, Any]]]:
        """`{set: {baseline: metrics}}`: the trivial constant predictions on every main set (`trivial_baselines`)."""
        return {name: trivial_baselines(dataset, self.settings) for name, dataset in self.sets.items()}


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


def flatten_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{set: {metric: value}} -> {"set/metric": value}, the keys of trackers and all_results.json."""
    return {f"{name}/{key}": value for name, metrics in results.items() for key, value in metrics.items()}
