"""Model cards for SparseViT checkpoints.

- `render_model_card` fills the model card template (`model_card.md` at the top of the source repository,
  shipped in the package as `model_card_template.md`; a test keeps the two identical) for one run: model id, base
  model, data sets, training hyper-parameters, evaluation results (as `model-index` entries), the widget example
  and its output picture, the linked Space and the licence. The template is a Jinja template rendered by
  `huggingface_hub.ModelCard.from_template` (Jinja2 is needed, see `install_requires`). The metadata is validated
  locally by `validate_model_card` (`ModelCard.validate` needs the network).
- `card_eval_results`, `write_model_card`, `write_widget_example` and `write_widget_output` are what a training run
  (`examples/run_iml.py`) and `push_to_hub` write into a model folder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .endpoint import write_endpoint_files

logger = logging.getLogger(__name__)

LIBRARY_NAME = "transformers"
PIPELINE_TAG = "image-segmentation"
TASK_NAME = "Image Manipulation Localization"
REQUIRED_TAGS = ("sparsevit", "image-manipulation-localization", "image-forensics")
DEFAULT_TAGS = (*REQUIRED_TAGS, "vision", "image-segmentation", "tampering-detection", "custom_code")
TEMPLATE_NAME = "model_card_template.md"
EXAMPLE_IMAGE_STEM = "example"
EXAMPLE_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
EXAMPLE_OUTPUT_IMAGE = "example_output.png"
# The official weights come with no licence of their own: the card says `license: other` and links to their source.
DEFAULT_LICENSE_NAME = "sparsevit-weights"
DEFAULT_LICENSE_LINK = "https://github.com/scu-zjz/SparseViT"
# The Hub's rule for `license_name`: lower-case letters, digits, dots and hyphens.
LICENSE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]*$")

# The released model's recipe (see the project's notes on the official implementation).
OFFICIAL_HYPERPARAMETERS = {
    "Input": "RGB resized to 512 x 512 (bilinear), ImageNet mean/std",
    "Optimizer": "AdamW, betas (0.9, 0.999), weight decay 0.05 (none on biases and norm weights)",
    "Batch size": 16,
    "Epochs": 200,
    "Learning rate": "2e-4, 4 warm-up epochs, then half-cycle cosine to 5e-7 (per iteration)",
    "Precision": "fp16 autocast with loss scaling",
    "Loss": "binary cross-entropy on the bilinearly upsampled logits",
    "Stochastic depth": "0 to 0.2, linear over the 40 blocks",
    "Augmentation": (
        "random scale 0.8-1.2; copy-move (p 0.1); inpainting of a box (p 0.1); horizontal and vertical flips "
        "(p 0.5 each); brightness/contrast +-0.1; JPEG quality 70-100 (p 0.2); 90-degree rotation (p 0.5); "
        "Gaussian blur kernel 3-7 (p 0.2); resize to 512"
    ),
    "Seed": 42,
}
OFFICIAL_TRAINING_DATA = (
    "The released SparseViT model follows the CAT-Net protocol: it is trained on CASIAv2, FantasticReality, "
    "IMD2020 and tampCOCO (four variants), sampling 1,840 images from each data set per epoch, with binary masks "
    "(authentic images get an all-zero mask). The backbone starts from the ImageNet-1k UniFormer-B weights. The "
    "paper evaluates on CASIAv1, Columbia, NIST16, Coverage and DEF-12k (pixel-level F1)."
)
DEFAULT_WEIGHTS_LICENSE = (
    "The weights come with no licence of their own: they follow the terms of the original SparseViT release (see the "
    "authors' repository) and of the data sets they were trained on."
)
DEFAULT_EVAL_NOTES = (
    "Pixel-level metrics are computed per image at threshold 0.5 and averaged over images unless the metric name "
    "says otherwise."
)


@dataclass
class RunInfo:
    """What a model card says about one checkpoint. `model_id` is required; everything else has a default.

    Attributes:
        model_id: Hub repository id (`"user/sparsevit-casia"`); used in the usage snippets.
        model_name: Display name (title and `model-index` name); defaults to the last part of `model_id`.
        base_model: Hub id of the checkpoint this one was fine-tuned from (`base_model` metadata).
        datasets: Training data set names or Hub ids (`datasets` metadata).
        training_data: Paragraph describing the training data (default: the official CAT-Net protocol).
        hyperparameters: Name -> value table of the training recipe (default: the official recipe).
        eval_results: `huggingface_hub.EvalResult` objects or dicts with `dataset`, `metric`, `value` and
            optionally `split` (default "test"), `dataset_type` (default: the name in lower case),
            `metric_name` (display name), `dataset_config`.
        eval_notes: Sentence under the evaluation table.
        metrics: Metric ids for the metadata (default: those of the evaluation results, else `["f1"]`).
        tags: Extra tags (the required ones are always added).
        license: the metadata `license` (an id such as `"apache-2.0"`), when you know the weights' licence. By
            default the card says `license: other` with `license_name` and `license_link`.
        license_name: with `license: other`, an id for the weights' terms (lower case, digits, dots, hyphens).
        license_link: with `license: other`, where the terms are (a URL or a file of the repository).
        weights_license: Sentence about the weights' terms (default: with `license` unset, that the weights have no
            licence of their own and follow the original release's and the training data's terms; with `license`
            set, that the weights are released under it).
        example_image: File name of the widget example inside the repository (`None`: no widget).
        example_output: File name of the picture of the model's output on the example (the widget's `output` and
            a picture in the card), or `None`.
        space_id: Hub id of a Space that runs this model (`user/space`), linked from the card.
        num_parameters: Shown in the model details table when set.
        code_url: Link to the source code, shown when set.
        description: An extra paragraph under the title.
    """

    model_id: str
    model_name: str | None = None
    base_model: str | None = None
    datasets: list[str] = field(default_factory=list)
    training_data: str = OFFICIAL_TRAINING_DATA
    hyperparameters: dict[str, Any] = field(default_factory=lambda: dict(OFFICIAL_HYPERPARAMETERS))
    eval_results: list[Any] = field(default_factory=list)
    eval_notes: str = DEFAULT_EVAL_NOTES
    metrics: list[str] | None = None
    tags: list[str] = field(default_factory=list)
    license: str | None = None
    license_name: str = DEFAULT_LICENSE_NAME
    license_link: str = DEFAULT_LICENSE_LINK
    weights_license: str | None = None
    example_image: str | None = f"{EXAMPLE_IMAGE_STEM}.jpg"
    example_output: str | None = None
    space_id: str | None = None
    num_parameters: str | int | None = None
    code_url: str | None = None
    description: str | None = None


def _as_run_info(run_info: RunInfo | dict) -> RunInfo:
    if isinstance(run_info, RunInfo):
        return run_info
    if dataclasses.is_dataclass(run_info):
        run_info = dataclasses.asdict(run_info)
    if not isinstance(run_info, dict):
        raise TypeError(f"run_info must be a RunInfo or a dict, got {type(run_info).__name__}.")
    known = {f.name for f in dataclasses.fields(RunInfo)}
    unknown = sorted(set(run_info) - known)
    if unknown:
        raise ValueError(f"Unknown run_info keys {unknown}; known keys: {sorted(known)}.")
    if not run_info.get("model_id"):
        raise ValueError("run_info needs a 'model_id' (the Hub repository id, e.g. 'user/sparsevit-casia').")
    keep_none = {"example_image", "example_output", "space_id", "license"}
    return RunInfo(**{key: value for key, value in run_info.items() if value is not None or key in keep_none})


def to_eval_result(entry: EvalResult | dict) -> EvalResult:
    """An `EvalResult` for an image-segmentation / image manipulation localization metric."""
    if isinstance(entry, EvalResult):
        return entry
    missing = [key for key in ("dataset", "metric", "value") if key not in entry]
    if missing:
        raise ValueError(f"Evaluation result {entry!r} lacks {missing} (needs dataset, metric, value).")
    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Evaluation result {entry!r}: value must be a number.")
    return EvalResult(
        task_type=PIPELINE_TAG,
        task_name=TASK_NAME,
        dataset_type=entry.get("dataset_type") or str(entry["dataset"]).lower().replace(" ", "-"),
        dataset_name=str(entry["dataset"]),
        dataset_config=entry.get("dataset_config"),
        dataset_split=entry.get("split", "test"),
        metric_type=str(entry["metric"]),
        metric_value=float(value),
        metric_name=entry.get("metric_name"),
    )


def default_template_path() -> Path:
    """The packaged template, or `model_card.md` at the top of a source checkout when the package data is absent."""
    try:
        from importlib.resources import files

        packaged = files("sparsevit_hf.hub") / TEMPLATE_NAME
        if packaged.is_file():
            return Path(os.fspath(packaged))
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    checkout = Path(__file__).resolve().parents[3] / "model_card.md"
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(
        f"The model card template ({TEMPLATE_NAME}) is not installed with sparsevit_hf; reinstall the package or pass "
        "template_path='model_card.md'."
    )


def render_model_card(run_info: RunInfo | dict, template_path: str | os.PathLike | None = None) -> ModelCard:
    """Fill the model card template for one run and validate its metadata (see `validate_model_card`).

    Args:
        run_info: a `RunInfo` (or a dict with its fields, or another dataclass with the same fields).
        template_path: a Jinja model card template; defaults to the packaged one (`default_template_path`).

    Returns:
        A `huggingface_hub.ModelCard` whose `data` holds `library_name: transformers`,
        `pipeline_tag: image-segmentation`, the licence (`other` with `license_name` / `license_link` unless
        `run_info.license` is set), tags, data sets, metrics, base model, the widget example (`src` a file of the
        repository, `output` the picture of the model's output on it) and the evaluation results as `model-index`;
        `str(card)` is the README.md text.
    """
    info = _as_run_info(run_info)
    model_name = info.model_name or info.model_id.rstrip("/").split("/")[-1]
    eval_results = [to_eval_result(entry) for entry in info.eval_results]
    metrics = info.metrics or sorted({result.metric_type for result in eval_results}) or ["f1"]
    tags = list(dict.fromkeys([*DEFAULT_TAGS, *info.tags]))
    widget = None
    if info.example_image:
        # A path inside the repository: the Hub resolves it against the repository itself.
        example = {"src": info.example_image, "example_title": "Example"}
        if info.example_output:
            example["output"] = {"url": info.example_output}
        widget = [example]
    licence = {"license": info.license} if info.license else {
        "license": "other", "license_name": info.license_name, "license_link": info.license_link
    }
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        datasets=list(info.datasets) or None,
        metrics=metrics,
        base_model=info.base_model,
        model_name=model_name,
        eval_results=eval_results or None,
        widget=widget,
        **licence,
    )
    eval_rows = [
        {
            "dataset": result.dataset_name,
            "split": result.dataset_split or "",
            "metric": result.metric_name or result.metric_type,
            "value": f"{result.metric_value:.4f}" if isinstance(result.metric_value, float) else result.metric_value,
        }
        for result in eval_results
    ]
    weights_license = info.weights_license or (
        f"The weights are released under the `{info.license}` licence." if info.license else DEFAULT_WEIGHTS_LICENSE
    )
    template = Path(template_path) if template_path is not None else default_template_path()
    card = ModelCard.from_template(
        card_data,
        template_path=os.fspath(template),
        model_id=info.model_id,
        model_name=model_name,
        base_model=info.base_model,
        description=info.description,
        training_data=info.training_data,
        hyperparameters=info.hyperparameters,
        eval_rows=eval_rows,
        eval_notes=info.eval_notes,
        weights_license=weights_license,
        num_parameters=info.num_parameters,
        code_url=info.code_url,
        example_image=info.example_image,
        example_output=info.example_output,
        space_id=info.space_id,
    )
    validate_model_card(card, expected_eval_results=eval_results)
    return card


def validate_model_card(card: ModelCard | str, expected_eval_results: list[EvalResult] | None = None) -> ModelCard:
    """Check a model card offline by parsing its text again with `huggingface_hub`'s classes.

    Checks: the YAML header parses; `library_name` is transformers; `pipeline_tag` is image-segmentation; a
    license is set (`other` with a valid `license_name` and a `license_link`); every widget example has a `src`;
    the SparseViT tags are present; no Jinja placeholder is left; the `model-index` evaluation
    results parse back and (when given) equal `expected_eval_results`. Raises `ValueError` listing the
    problems; returns the parsed card.
    """
    text = str(card)
    try:
        parsed = ModelCard(text, ignore_metadata_errors=False)
    except Exception as error:
        raise ValueError(f"The model card metadata does not parse: {error}") from error
    data = parsed.data
    problems = []
    if data.library_name != LIBRARY_NAME:
        problems.append(f"library_name is {data.library_name!r}, expected {LIBRARY_NAME!r}")
    if data.pipeline_tag != PIPELINE_TAG:
        problems.append(f"pipeline_tag is {data.pipeline_tag!r}, expected {PIPELINE_TAG!r}")
    if not data.license:
        problems.append("no license")
    elif data.license == "other":
        if not data.license_name or not LICENSE_NAME_PATTERN.match(str(data.license_name)):
            problems.append(
                f"license 'other' needs a license_name of lower-case letters, digits, '.' and '-', got "
                f"{data.license_name!r}"
            )
        if not data.license_link:
            problems.append("license 'other' needs a license_link")
    for example in data.get("widget") or []:
        source = example.get("src") if isinstance(example, dict) else None
        if not source or ("://" in source and not source.startswith("https://")):
            problems.append(f"widget example {example!r} needs a src: a file of the repository or an https URL")
    missing_tags = [tag for tag in REQUIRED_TAGS if tag not in (data.tags or [])]
    if missing_tags:
        problems.append(f"missing tags {missing_tags}")
    if "{{" in text or "{%" in text:
        problems.append("unrendered template placeholders ({{ or {%) remain")
    if expected_eval_results is not None:
        parsed_results = data.eval_results or []
        if len(parsed_results) != len(expected_eval_results):
            problems.append(
                f"{len(parsed_results)} evaluation results in model-index, expected {len(expected_eval_results)}"
            )
        else:
            for got, expected in zip(parsed_results, expected_eval_results, strict=True):
                if (got.dataset_name, got.metric_type, got.metric_value) != (
                    expected.dataset_name,
                    expected.metric_type,
                    expected.metric_value,
                ):
                    problems.append(f"model-index entry {got} differs from {expected}")
    if problems:
        raise ValueError("Invalid model card: " + "; ".join(problems) + ".")
    return parsed


# Metrics of `sparsevit_hf.metrics` listed in a model card's `model-index`, with their display names.
CARD_METRICS = {
    "pixel_f1": "Pixel F1",
    "pixel_iou": "Pixel IoU",
    "pixel_auc": "Pixel AUC",
    "image_auc": "Image AUC",
    "image_accuracy": "Image accuracy",
}


def card_eval_results(
    results: dict[str, dict[str, Any]], card_metrics: dict[str, str] = CARD_METRICS
) -> list[dict[str, Any]]:
    """`model-index` entries for `RunInfo`: one per evaluation set (name -> metrics, as returned by
    `sparsevit_hf.evaluation.evaluate`) and metric of `card_metrics` (name -> display name) with a finite value."""
    entries = []
    for set_name, metrics in results.items():
        for metric, display in card_metrics.items():
            value = metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                entries.append(
                    {"dataset": set_name, "dataset_type": set_name.lower(), "split": "test", "metric": metric,
                     "metric_name": display, "value": float(value)}
                )
    return entries


def write_model_card(folder: str | os.PathLike, run_info: RunInfo | dict) -> ModelCard:
    """Write the card of the model folder `folder` and the files it refers to: `README.md` (atomically, so a
    reader never sees half a card), the Endpoint files (`write_endpoint_files`) and, when the folder holds the
    widget example and a saved model, the picture of the model's output on it (`write_widget_output`)."""
    folder = Path(folder)
    info = _as_run_info(run_info)
    write_endpoint_files(folder)
    example = find_widget_example(folder) if info.example_image else None  # no widget without the picture
    output = info.example_output
    if example is not None and output is None:
        output = write_widget_output(folder, example)
    card = render_model_card(
        dataclasses.replace(info, example_image=example, example_output=output if example is not None else None)
    )
    tmp = folder / ".README.md.tmp"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, folder / "README.md")
    return card


def find_widget_example(folder: str | os.PathLike) -> str | None:
    """The name of the widget example (`example.jpg`, `.jpeg`, `.png` or `.webp`) in `folder`, or None."""
    for suffix in EXAMPLE_IMAGE_SUFFIXES:
        if (Path(folder) / f"{EXAMPLE_IMAGE_STEM}{suffix}").is_file():
            return f"{EXAMPLE_IMAGE_STEM}{suffix}"
    return None


def write_widget_output(folder: str | os.PathLike, example_name: str) -> str | None:
    """Predict the widget example `example_name` with the model saved in `folder` (resize mode, threshold 0.5, on
    the CPU) and save the overlay of `sparsevit-predict` (image | heatmap | outlined region) as
    `example_output.png`; return its name. A picture newer than the weights, the config and the example is kept as
    it is (a push right after `write_model_card` does not predict again). Returns None, with a warning, when the
    folder holds no loadable model."""
    from ..inference import ImageLoadError, ModelLoadError, load_image, load_model, overlay_image, predict_probabilities

    folder = Path(folder)
    picture_path = folder / EXAMPLE_OUTPUT_IMAGE
    sources = [folder / example_name, folder / "config.json", *folder.glob("model*.safetensors*")]
    if picture_path.is_file() and all(
        source.stat().st_mtime_ns < picture_path.stat().st_mtime_ns for source in sources if source.is_file()
    ):
        return EXAMPLE_OUTPUT_IMAGE
    try:
        model, processor = load_model(folder, device="cpu", dtype="fp32")
        image = load_image(folder / example_name)
        [probability] = predict_probabilities(model, processor, [image])
    except (ModelLoadError, ImageLoadError, ValueError) as error:
        logger.warning("No output picture for the widget example: %s", error)
        return None
    picture = overlay_image(image, probability, title="widget example")
    tmp = folder / f".{EXAMPLE_OUTPUT_IMAGE}.tmp"
    picture.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, picture_path)
    return EXAMPLE_OUTPUT_IMAGE


def write_widget_example(folder: str | os.PathLike, size: int) -> str | None:
    """Save `example.jpg` for the Hub widget into `folder` and return its name: a held-out synthetic tampered
    image (scikit-image's photographs, free to publish, unlike images of a user's evaluation data). Returns None,
    with a warning, when the synthetic generator is not available (the `train` extra)."""
    try:
        from ..data.synthetic import generate_sample

        for index in range(20):
            image, _, kind = generate_sample(index, split="test", size=size)
            if kind != "authentic":
                image.save(Path(folder) / f"{EXAMPLE_IMAGE_STEM}.jpg", quality=95)
                return f"{EXAMPLE_IMAGE_STEM}.jpg"
    except (ImportError, OSError, ValueError) as error:
        logger.warning("No example image for the model card widget: %s", error)
    return None


__all__ = [
    "CARD_METRICS",
    "EXAMPLE_OUTPUT_IMAGE",
    "OFFICIAL_HYPERPARAMETERS",
    "RunInfo",
    "card_eval_results",
    "default_template_path",
    "find_widget_example",
    "render_model_card",
    "to_eval_result",
    "validate_model_card",
    "write_model_card",
    "write_widget_example",
    "write_widget_output",
]
