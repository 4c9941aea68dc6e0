"""Model cards and Hub repositories for SparseViT checkpoints.

- `render_model_card` fills the model card template (`model_card.md` at the top of the source repository,
  shipped in the package as `model_card_template.md`; a test keeps the two identical) for one run: model id, base
  model, data sets, training hyper-parameters and evaluation results (as `model-index` entries). The template is
  a Jinja template rendered by `huggingface_hub.ModelCard.from_template` (Jinja2 is needed, see
  `install_requires`). The metadata is validated locally by `validate_model_card` (`ModelCard.validate`
  needs the network).
- `push_to_hub` uploads a `save_pretrained` folder as a complete Hub model repository (weights, configs,
  code files for `trust_remote_code`, README.md, an example image for the widget), leaving out optimizer
  checkpoints and logs (`UPLOAD_IGNORE_PATTERNS`).
- `card_eval_results`, `write_model_card` and `write_widget_example` are what a training run
  (`examples/run_iml.py`) writes into its output folder before pushing it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

logger = logging.getLogger(__name__)

LIBRARY_NAME = "transformers"
PIPELINE_TAG = "image-segmentation"
TASK_NAME = "Image Manipulation Localization"
REQUIRED_TAGS = ("sparsevit", "image-manipulation-localization", "image-forensics")
DEFAULT_TAGS = (*REQUIRED_TAGS, "vision", "image-segmentation", "tampering-detection", "custom_code")
TEMPLATE_NAME = "model_card_template.md"
# Files a repository needs for `from_pretrained(..., trust_remote_code=True)` and the pipeline.
CODE_FILES = (
    "configuration_sparsevit.py",
    "modeling_sparsevit.py",
    "attention_sparsevit.py",
    "image_processing_sparsevit.py",
)
REQUIRED_FILES = ("config.json", "preprocessor_config.json", *CODE_FILES, "README.md")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
EXAMPLE_IMAGE_STEM = "example"
# Left out of uploads (fnmatch patterns on the path relative to the folder; `*` also matches `/`).
UPLOAD_IGNORE_PATTERNS = [
    "checkpoint-*",  # Trainer / accelerate checkpoints, with their optimizer states
    "*optimizer.*",
    "*scheduler.*",
    "*scaler.*",
    "*rng_state*",
    "*trainer_state.json",
    "*training_args.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.bin.tmp",
    "runs/*",  # TensorBoard
    "logs/*",
    "wandb/*",
    "*events.out.tfevents*",
    "*.log",
    "*__pycache__*",
    "*.pyc",
    ".*",  # hidden files and folders (.git, .cache, editor files, temporary files)
    "*/.*",
    "*.tmp",
]

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
    "The weights are not covered by that license: they follow the terms of the original SparseViT release (see the "
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
        model_id: Hub repository id (`"user/sparsevit-casia"`); used in the usage snippets and widget URL.
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
        license: SPDX id of the code license (the metadata `license`).
        weights_license: Sentence about the weights' terms.
        example_image: File name of the widget example inside the repository (`None`: no widget).
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
    license: str = "apache-2.0"
    weights_license: str = DEFAULT_WEIGHTS_LICENSE
    example_image: str | None = f"{EXAMPLE_IMAGE_STEM}.jpg"
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
    return RunInfo(**{key: value for key, value in run_info.items() if value is not None or key == "example_image"})


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
        `pipeline_tag: image-segmentation`, license, tags, data sets, metrics, base model, the widget example and
        the evaluation results as `model-index`; `str(card)` is the README.md text.
    """
    info = _as_run_info(run_info)
    model_name = info.model_name or info.model_id.rstrip("/").split("/")[-1]
    eval_results = [to_eval_result(entry) for entry in info.eval_results]
    metrics = info.metrics or sorted({result.metric_type for result in eval_results}) or ["f1"]
    tags = list(dict.fromkeys([*DEFAULT_TAGS, *info.tags]))
    widget = None
    if info.example_image:
        widget = [
            {
                "src": f"https://huggingface.co/{info.model_id}/resolve/main/{info.example_image}",
                "example_title": "Example",
            }
        ]
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        license=info.license,
        tags=tags,
        datasets=list(info.datasets) or None,
        metrics=metrics,
        base_model=info.base_model,
        model_name=model_name,
        eval_results=eval_results or None,
        widget=widget,
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
        weights_license=info.weights_license,
        num_parameters=info.num_parameters,
        code_url=info.code_url,
    )
    validate_model_card(card, expected_eval_results=eval_results)
    return card


def validate_model_card(card: ModelCard | str, expected_eval_results: list[EvalResult] | None = None) -> ModelCard:
    """Check a model card offline by parsing its text again with `huggingface_hub`'s classes.

    Checks: the YAML header parses; `library_name` is transformers; `pipeline_tag` is image-segmentation; a
    license is set; the SparseViT tags are present; no Jinja placeholder is left; the `model-index` evaluation
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


def files_to_upload(folder: str | os.PathLike, ignore_patterns: list[str] | None = None) -> list[str]:
    """The files (POSIX paths relative to `folder`) that `push_to_hub` uploads, filtered exactly as
    `HfApi.upload_folder` filters them (our ignore patterns plus huggingface_hub's defaults)."""
    from huggingface_hub.utils import filter_repo_objects

    try:
        from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS
    except ImportError:  # pragma: no cover - older/newer layouts
        DEFAULT_IGNORE_PATTERNS = [".git", ".git/*", "*/.git", "**/.git/**"]
    root = Path(folder)
    relative = sorted(path.relative_to(root).as_posix() for path in root.glob("**/*") if path.is_file())
    patterns = list(UPLOAD_IGNORE_PATTERNS if ignore_patterns is None else ignore_patterns) + list(
        DEFAULT_IGNORE_PATTERNS
    )
    return list(filter_repo_objects(relative, ignore_patterns=patterns))


def check_repo_folder(folder: str | os.PathLike) -> list[str]:
    """Check that a folder is a complete SparseViT repository (weights, configs, code, README.md) once filtered;
    return the files that would be uploaded. Raises `ValueError` naming what is missing."""
    from ..inference.predictor import check_model_folder

    check_model_folder(folder)
    uploaded = set(files_to_upload(folder))
    missing = [name for name in REQUIRED_FILES if name not in uploaded]
    if not any(name in uploaded for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if missing:
        hint = ""
        if any(name in CODE_FILES for name in missing):
            hint = " Save the model and processor after `import sparsevit_hf`, so that save_pretrained copies the code."
        raise ValueError(f"{os.fspath(folder)!r} is not a complete SparseViT repository: missing {missing}.{hint}")
    return sorted(uploaded)


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload SparseViT model",
    example_image: str | os.PathLike | None = None,
    card: ModelCard | RunInfo | dict | None = None,
):
    """Push a `save_pretrained` folder as a complete Hub model repository, in one commit.

    The folder must hold the weights, `config.json`, `preprocessor_config.json` and the code files that
    `save_pretrained` copies (`trust_remote_code`). Before uploading, into the folder itself:

    - `example_image` (a path), when given, is copied as `example<suffix>` (the widget picture);
    - `README.md` is written from `card` (a `ModelCard`, or a `RunInfo` / dict given to
      `render_model_card`); without `card`, an existing README.md is kept and a missing one is rendered
      for `repo_id` with the default recipe.

    The card is validated (`validate_model_card`), the repository is created if needed
    (`HfApi.create_repo(exist_ok=True)` with `private`), and the folder is uploaded with `upload_folder`
    without optimizer checkpoints, logs and hidden files (`UPLOAD_IGNORE_PATTERNS`).

    Returns:
        The `CommitInfo` of the upload.
    """
    from ..inference.predictor import check_model_folder

    root = Path(folder)
    check_model_folder(root)
    example_name = None
    if example_image is not None:
        source = Path(example_image)
        if not source.is_file():
            raise FileNotFoundError(f"Example image {os.fspath(source)!r} does not exist.")
        example_name = f"{EXAMPLE_IMAGE_STEM}{source.suffix.lower() or '.jpg'}"
        if source.resolve() != (root / example_name).resolve():
            shutil.copyfile(source, root / example_name)

    readme = root / "README.md"
    if isinstance(card, ModelCard):
        readme.write_text(str(card), encoding="utf-8")
    elif card is not None or not readme.is_file():
        info = _as_run_info(card if card is not None else {"model_id": repo_id})
        if example_name is not None:
            info = dataclasses.replace(info, example_image=example_name)
        elif not any((root / f"{EXAMPLE_IMAGE_STEM}{suffix}").is_file() for suffix in (".jpg", ".jpeg", ".png")):
            info = dataclasses.replace(info, example_image=None)
        readme.write_text(str(render_model_card(info)), encoding="utf-8")
    validate_model_card(readme.read_text(encoding="utf-8"))
    check_repo_folder(root)

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=os.fspath(root),
        repo_type="model",
        commit_message=commit_message,
        ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),
    )


# Metrics of `sparsevit_hf.metrics` listed in a model card's `model-index`, with their display names.
CARD_METRICS = {
    "pixel_f1": "Pixel F1",
    "pixel_iou": "Pixel IoU",
    "pixel_auc": "Pixel AUC",
    "image_auc": "Image AUC",
    "image_accuracy": "Image accuracy",
}


def card_eval_results(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`model-index` entries for `RunInfo`: one per evaluation set (name -> metrics, as returned by
    `sparsevit_hf.training.evaluate`) and `CARD_METRICS` metric with a finite value."""
    entries = []
    for set_name, metrics in results.items():
        for metric, display in CARD_METRICS.items():
            value = metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                entries.append(
                    {"dataset": set_name, "dataset_type": set_name.lower(), "split": "test", "metric": metric,
                     "metric_name": display, "value": float(value)}
                )
    return entries


def write_model_card(folder: str | os.PathLike, run_info: RunInfo | dict) -> ModelCard:
    """Render `render_model_card` into `folder/README.md`, atomically (a reader never sees half a card)."""
    card = render_model_card(run_info)
    folder = Path(folder)
    tmp = folder / ".README.md.tmp"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, folder / "README.md")
    return card


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
    "CODE_FILES",
    "OFFICIAL_HYPERPARAMETERS",
    "REQUIRED_FILES",
    "UPLOAD_IGNORE_PATTERNS",
    "RunInfo",
    "card_eval_results",
    "check_repo_folder",
    "default_template_path",
    "files_to_upload",
    "push_to_hub",
    "render_model_card",
    "to_eval_result",
    "validate_model_card",
    "write_model_card",
    "write_widget_example",
]
