"""A Gradio Space for a SparseViT model: `write_space` writes its folder, `push_space` uploads it.

The folder holds `app.py` (a copy of `space_app.py` with the model filled in), `handler.py` (the Inference
Endpoints handler, which the app uses for loading and prediction, so that the Space needs transformers and torch
but not this package), `visualization.py` (a copy of `sparsevit_hf.inference.visualization`, which draws the outlined
region as `sparsevit-predict` does), `requirements.txt`, `README.md` (the Space's YAML header: `sdk: gradio`, the
Gradio version the app is tested with, `models:`) and `examples/` (held-out synthetic tampered images). A local model
folder is copied into `model/`, so that the Space is complete without a model repository.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData

from ..utils import is_local_path
from .card import EXAMPLE_IMAGE_STEM, find_widget_example
from .endpoint import HANDLER_FILE, HANDLER_SOURCE, REQUIREMENTS_FILE, runtime_requirements
from .push import files_to_upload

logger = logging.getLogger(__name__)

# The Gradio version the app is tested with (requirements-test.txt pins the same); the Space runs it (`sdk_version`).
GRADIO_VERSION = "6.31.0"
APP_FILE = "app.py"
# The app's picture code, copied as it is: it needs only NumPy and Pillow.
VISUALIZATION_FILE = "visualization.py"
VISUALIZATION_SOURCE = Path(__file__).parent.parent / "inference" / "visualization.py"
SPACE_FILES = (APP_FILE, HANDLER_FILE, VISUALIZATION_FILE, REQUIREMENTS_FILE, "README.md")
APP_SOURCE = Path(__file__).with_name("space_app.py")
# The line of `space_app.py` that `write_space` replaces with the model's name.
MODEL_LINE = "MODEL = None  # sparsevit-space writes the model (a Hub id, or a folder next to app.py) here\n"
MODEL_FOLDER = "model"
EXAMPLES_FOLDER = "examples"
# One synthetic example per kind of manipulation, in this order.
SYNTHETIC_EXAMPLE_KINDS = ("splicing", "copy_move", "removal")
# The Hub's limit for a Space's `short_description`.
SHORT_DESCRIPTION_LIMIT = 60
DEFAULT_SHORT_DESCRIPTION = "Find spliced, copy-moved or removed regions in photos"
# Never uploaded with a Space: caches and what Gradio writes next to the app while it runs.
SPACE_IGNORE_PATTERNS = [".*", "*/.*", "*__pycache__*", "*.pyc", "flagged/*", "*.tmp"]


def write_space(
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    title: str | None = None,
    short_description: str = DEFAULT_SHORT_DESCRIPTION,
    emoji: str = "🔍",
) -> Path:
    """Write a Gradio Space for `model` (a Hub model id, or a local model folder, which is copied into the Space)
    into `output_dir`; return its path. See the module docstring for the files.

    Raises `ValueError` for a folder that is not a SparseViT model, a string that is neither an existing folder
    nor a Hub id, or a `short_description` longer than the Hub's 60 characters.
    """
    from ..inference.loading import check_model_folder

    if len(short_description) > SHORT_DESCRIPTION_LIMIT:
        raise ValueError(
            f"short_description has {len(short_description)} characters; the Hub allows {SHORT_DESCRIPTION_LIMIT}."
        )
    name = os.fspath(model)
    output = Path(output_dir)
    local = Path(name).expanduser()
    hub_id = None
    if local.exists():
        check_model_folder(local)
        if output.resolve() in (local.resolve(), *local.resolve().parents):
            raise ValueError(f"The Space folder {os.fspath(output)!r} must not contain the model folder {name!r}.")
    elif is_local_path(name):  # the package's one rule, as in `load_model`
        raise ValueError(f"{name!r} is neither a model folder nor a Hub model id (user/name).")
    else:
        hub_id = name

    output.mkdir(parents=True, exist_ok=True)
    if hub_id is None:
        _copy_model(local, output / MODEL_FOLDER)
    app = APP_SOURCE.read_text(encoding="utf-8")
    if app.count(MODEL_LINE) != 1:
        raise RuntimeError(f"{APP_SOURCE} lost its model line {MODEL_LINE.strip()!r}.")
    model_value = hub_id if hub_id is not None else MODEL_FOLDER
    (output / APP_FILE).write_text(app.replace(MODEL_LINE, f"MODEL = {model_value!r}\n"), encoding="utf-8")
    shutil.copyfile(HANDLER_SOURCE, output / HANDLER_FILE)
    shutil.copyfile(VISUALIZATION_SOURCE, output / VISUALIZATION_FILE)
    (output / REQUIREMENTS_FILE).write_text(
        "# The Space's Gradio comes from sdk_version in README.md; these are what handler.py and the model need.\n"
        + "".join(f"{line}\n" for line in runtime_requirements()),
        encoding="utf-8",
    )
    _write_examples(output / EXAMPLES_FOLDER, local if hub_id is None else None)
    model_title = title or f"SparseViT: {Path(name).name if hub_id is None else hub_id.split('/')[-1]}"
    space_card(model_title, short_description, emoji, hub_id).save(output / "README.md")
    return output


def space_card(title: str, short_description: str, emoji: str, hub_id: str | None) -> SpaceCard:
    """The Space's README.md: its YAML header (what the Hub reads to build and list the Space) and a short text."""
    data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=GRADIO_VERSION,
        app_file=APP_FILE,
        models=[hub_id] if hub_id else None,
        license="apache-2.0",
        tags=["sparsevit", "image-forensics", "image-manipulation-localization"],
        emoji=emoji,
        colorFrom="indigo",
        colorTo="red",
        pinned=False,
        short_description=short_description,
    )
    model_link = f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else f"the model in `{MODEL_FOLDER}/`"
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n"
        f"Image manipulation localization with SparseViT ({model_link}): upload a photo to see, for every pixel, the "
        "probability that it was spliced in, copy-moved or removed, the region above a threshold outlined, a "
        "before/after view and an image-level score (the maximum probability). The app's API endpoint is "
        "`/localize` (image, threshold, resolution mode).\n\n"
        "A high probability is evidence for a closer look, not proof; a low one does not certify a photo.\n"
    )
    card = SpaceCard(text)
    if card.data.sdk != "gradio" or card.data.sdk_version != GRADIO_VERSION:
        raise RuntimeError("The Space card header did not round-trip.")
    return card


def _copy_model(source: Path, target: Path) -> None:
    """The model files of `source` (what `push_to_hub` would upload, without the card and the examples)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in files_to_upload(source):
        if name == "README.md" or Path(name).stem.startswith(EXAMPLE_IMAGE_STEM):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / name)


def _write_examples(folder: Path, model_folder: Path | None) -> list[str]:
    """Example photos for the app: held-out synthetic tampered images, one per kind of manipulation (scikit-image's
    photographs, free to publish; they need the `train` extra), and the model's widget example when it has one."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    example = find_widget_example(model_folder) if model_folder is not None else None
    if example is not None:
        shutil.copyfile(model_folder / example, folder / f"widget-{example}")
        written.append(f"widget-{example}")
    try:
        from ..data.synthetic import generate_sample
    except ImportError as error:
        logger.warning("No synthetic example images for the Space (install the `train` extra): %s", error)
        return written
    missing = list(SYNTHETIC_EXAMPLE_KINDS)
    for index in range(200):
        image, _, kind = generate_sample(index, split="test", size=384)
        if kind in missing:
            name = f"{SYNTHETIC_EXAMPLE_KINDS.index(kind) + 1}-synthetic-{kind}-{index}.jpg"
            image.save(folder / name, quality=92)
            written.append(name)
            missing.remove(kind)
        if not missing:
            break
    return written


def push_space(
    folder: str | os.PathLike,
    space_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload SparseViT Space",
):
    """Create (or update) the Gradio Space `space_id` from a folder written by `write_space`, in one commit.

    The folder is checked first (`app.py`, `handler.py`, `visualization.py`, `requirements.txt`, and a README.md whose
    header says `sdk: gradio`); then `HfApi.create_repo(space_id, repo_type="space", space_sdk="gradio",
    exist_ok=True)` and `upload_folder` without caches and hidden files. Returns the `CommitInfo` of the upload.
    """
    root = Path(folder)
    missing = [name for name in SPACE_FILES if not (root / name).is_file()]
    if missing:
        raise ValueError(f"{os.fspath(root)!r} is not a Space folder written by sparsevit-space: missing {missing}.")
    data = SpaceCard.load(root / "README.md").data
    if data.sdk != "gradio" or not data.sdk_version or data.app_file != APP_FILE:
        raise ValueError(
            f"{root / 'README.md'}: the Space header must say sdk: gradio, an sdk_version and app_file: {APP_FILE} "
            f"(got sdk {data.sdk!r}, sdk_version {data.sdk_version!r}, app_file {data.app_file!r})."
        )
    api = HfApi(token=token)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=space_id,
        repo_type="space",
        folder_path=os.fspath(root),
        commit_message=commit_message,
        ignore_patterns=list(SPACE_IGNORE_PATTERNS),
    )


__all__ = ["GRADIO_VERSION", "SPACE_FILES", "push_space", "space_card", "write_space"]
