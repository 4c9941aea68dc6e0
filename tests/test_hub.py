"""Model card rendering/validation and pushing a folder as a Hub repository (at the huggingface_hub API boundary)."""


import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import predict_without_package
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects
from PIL import Image

import sparsevit_hf.hub as hub
import sparsevit_hf.hub.push as hub_push
from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf.hub import (
    OFFICIAL_HYPERPARAMETERS,
    RunInfo,
    files_to_upload,
    push_to_hub,
    render_model_card,
    validate_model_card,
)
from sparsevit_hf.inference import load_model, predict_probabilities

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


pytestmark = pytest.mark.usefixtures("one_thread")


RUN = {
    "model_id": "forensics-lab/sparsevit-catnet",
    "base_model": "forensics-lab/sparsevit-official",
    "datasets": ["CASIAv2", "IMD2020"],
    "hyperparameters": {"Epochs": 3, "Learning rate": 1e-4, "Batch size": 8},
    "eval_results": [
        {"dataset": "CASIAv1", "metric": "f1", "value": 0.8123, "metric_name": "Pixel F1"},
        {"dataset": "Columbia", "metric": "roc_auc", "value": 0.91, "split": "test", "metric_name": "Pixel AUC"},
        EvalResult(
            task_type="image-segmentation",
            dataset_type="coverage",
            dataset_name="Coverage",
            metric_type="iou",
            metric_value=0.5,
        ),
    ],
    "num_parameters": "50.2 M",
}


def test_rendered_card_metadata_round_trips(tmp_path):
    card = render_model_card(RUN)
    assert isinstance(card, ModelCard)
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-segmentation"
    # The official weights have no licence of their own: "other", named and linked.
    assert data.license == "other"
    assert data.license_name == "sparsevit-weights" and data.license_link == "https://github.com/scu-zjz/SparseViT"
    assert {"sparsevit", "image-manipulation-localization", "image-forensics"} <= set(data.tags)
    assert data.datasets == ["CASIAv2", "IMD2020"]
    assert data.base_model == "forensics-lab/sparsevit-official"
    assert data.metrics == ["f1", "iou", "roc_auc"]
    assert data.model_name == "sparsevit-catnet"
    assert data.widget == [{"src": "example.jpg", "example_title": "Example"}]  # a file of the repository
    results = {(r.dataset_name, r.metric_type): r for r in data.eval_results}
    assert {key: r.metric_value for key, r in results.items()} == {
        ("CASIAv1", "f1"): 0.8123,
        ("Columbia", "roc_auc"): 0.91,
        ("Coverage", "iou"): 0.5,
    }
    assert results[("CASIAv1", "f1")].task_type == "image-segmentation"
    assert results[("CASIAv1", "f1")].dataset_split == "test"
    assert results[("Columbia", "roc_auc")].metric_name == "Pixel AUC"

    text = card.text
    assert "| CASIAv1 | test | Pixel F1 | 0.8123 |" in text
    assert "| Epochs | 3 |" in text and "| Learning rate | 0.0001 |" in text
    assert "| Parameters | 50.2 M |" in text
    assert 'pipeline("image-segmentation", model="forensics-lab/sparsevit-catnet", trust_remote_code=True)' in text
    assert "sparsevit-predict forensics-lab/sparsevit-catnet" in text
    assert "@inproceedings{su2025sparsevit" in text and "2412.14598" in text
    assert "Limitations and biases" in text
    hosted = text.split("## Hosted inference", 1)[1].split("\n## ", 1)[0]
    assert "trust_remote_code" in hosted and "handler.py" in hosted and "requirements.txt" in hosted
    assert "sparsevit-space forensics-lab/sparsevit-catnet" in hosted  # how to make the Space that is not there yet
    assert 'segment["score"]' in text and "mask_threshold" in text
    assert "{{" not in str(card) and "{%" not in str(card)


def test_default_card_uses_the_official_recipe_and_has_no_results():
    card = render_model_card(RunInfo(model_id="someone/sparsevit", example_image=None))
    assert card.data.eval_results is None and card.data.get("model-index") is None
    assert card.data.get("widget") is None
    assert "No evaluation results have been recorded" in card.text
    for name, value in OFFICIAL_HYPERPARAMETERS.items():
        assert f"| {name} | {value} |" in card.text
    assert "CASIAv2, FantasticReality" in card.text


def test_a_linked_space_an_output_picture_and_a_known_licence(tmp_path):
    card = render_model_card(
        {**RUN, "space_id": "forensics-lab/sparsevit-demo", "example_output": "example_output.png", "license": "mit"}
    )
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.widget == [
        {"src": "example.jpg", "example_title": "Example", "output": {"url": "example_output.png"}}
    ]
    assert data.license == "mit" and data.license_name is None and data.license_link is None
    text = card.text
    assert "](example_output.png)" in text  # the output picture, in the card body
    assert text.count("https://huggingface.co/spaces/forensics-lab/sparsevit-demo") == 2  # top, hosted inference
    assert "sparsevit-space" not in text
    assert "The weights are released under the `mit` licence." in text


def test_run_info_errors():
    with pytest.raises(ValueError, match="model_id"):
        render_model_card({"datasets": ["x"]})
    with pytest.raises(ValueError, match="Unknown run_info keys"):
        render_model_card({"model_id": "a/b", "learning_rate": 1})
    with pytest.raises(ValueError, match="lacks"):
        render_model_card({"model_id": "a/b", "eval_results": [{"dataset": "CASIAv1", "value": 0.5}]})
    with pytest.raises(ValueError, match="number"):
        render_model_card({"model_id": "a/b", "eval_results": [{"dataset": "x", "metric": "f1", "value": "high"}]})


def test_validation_finds_problems():
    good = str(render_model_card(RUN))
    validate_model_card(good)
    with pytest.raises(ValueError, match="pipeline_tag"):
        validate_model_card(good.replace("pipeline_tag: image-segmentation", "pipeline_tag: image-classification"))
    with pytest.raises(ValueError, match="missing tags"):
        validate_model_card(good.replace("- image-forensics\n", ""))
    with pytest.raises(ValueError, match="placeholders"):
        validate_model_card(good + "\n{{ forgotten }}\n")
    with pytest.raises(ValueError, match="evaluation results"):
        validate_model_card(good, expected_eval_results=[])
    with pytest.raises(ValueError, match="license_name"):
        validate_model_card(good.replace("license_name: sparsevit-weights", "license_name: SparseViT Weights"))
    with pytest.raises(ValueError, match="license_link"):
        validate_model_card(good.replace("license_link: https://github.com/scu-zjz/SparseViT\n", ""))
    with pytest.raises(ValueError, match="widget example"):
        validate_model_card(good.replace("- src: example.jpg", "- src: ftp://example.org/example.jpg"))


def test_custom_template(tmp_path):
    template = tmp_path / "card.md"
    template.write_text("---\n{{ card_data }}\n---\n\n# {{ model_name }} for {{ model_id }}\n")
    card = render_model_card({"model_id": "a/b"}, template_path=template)
    assert card.text.strip() == "# b for a/b"


def test_a_runs_metrics_become_one_model_index_entry_per_set_and_card_metric(tmp_path):
    results = {
        "CASIAv1": {"pixel_f1": 0.61, "pixel_auc": 0.9, "image_auc": float("nan"), "loss": 0.2, "num_images": 10},
        "Columbia@jpeg75": {"pixel_f1": 0.4},
    }
    entries = hub.card_eval_results(results)
    assert [(e["dataset"], e["metric"], e["value"]) for e in entries] == [
        ("CASIAv1", "pixel_f1", 0.61), ("CASIAv1", "pixel_auc", 0.9), ("Columbia@jpeg75", "pixel_f1", 0.4)
    ]  # undefined (NaN) values and metrics that are not card metrics are left out
    card = hub.write_model_card(tmp_path, {**RUN, "eval_results": entries})
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == str(card)
    assert {"handler.py", "requirements.txt"} <= {path.name for path in tmp_path.iterdir()}  # the card refers to them
    assert card.data.get("widget") is None  # the folder has no example.jpg: no widget pointing at a missing file
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    parsed = validate_model_card(str(card), [hub.to_eval_result(e) for e in entries])
    assert len(parsed.data.eval_results) == 3


def test_the_top_level_model_card_is_the_packaged_template():
    top_level = REPO / "model_card.md"
    if not top_level.is_file():
        pytest.skip("not a source checkout")
    assert hub.default_template_path().read_text(encoding="utf-8") == top_level.read_text(encoding="utf-8"), (
        "model_card.md and src/sparsevit_hf/hub/model_card_template.md differ: edit model_card.md, then "
        "cp model_card.md src/sparsevit_hf/hub/model_card_template.md"
    )


# ------------------------------------------------------------------------------------------------------------------
# Pushing
# ------------------------------------------------------------------------------------------------------------------
def test_the_endpoint_requirements_lift_transformers_and_torch_to_what_the_package_requires(tmp_path):
    hub.write_endpoint_files(tmp_path)
    assert (tmp_path / "handler.py").read_bytes() == hub.endpoint.HANDLER_SOURCE.read_bytes()
    lines = [line for line in (tmp_path / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    declared = {line.split(">")[0].split("<")[0]: line for line in hub.runtime_requirements()}
    assert lines == list(declared.values())
    assert set(declared) == {"torch", "transformers", "safetensors", "numpy", "pillow"}
    assert ">=5.24" in declared["transformers"] and ">=2.13" in declared["torch"]  # setup.cfg's install_requires


class FakeHfApi:
    """Records what push_to_hub asks of huggingface_hub; never touches the network."""

    instances = []

    def __init__(self, token=None, **kwargs):
        self.token = token
        self.calls = []
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "commit-info"


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.instances = []
    monkeypatch.setattr(hub_push, "HfApi", FakeHfApi)
    return FakeHfApi


@pytest.fixture
def training_folder(tiny_config, tmp_path):
    """A save_pretrained folder as a training run leaves it: with checkpoints, logs and hidden files."""
    torch.manual_seed(0)
    tiny_config.layer_scale_init_value = 0.3
    folder = tmp_path / "run"
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    processor = SparseViTImageProcessor(size={"height": 64, "width": 64})
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    junk = [
        "checkpoint-500/optimizer.pt",
        "checkpoint-500/model.safetensors",
        "checkpoint-500/rng_state.pth",
        "optimizer.pt",
        "scheduler.pt",
        "training_args.bin",
        "trainer_state.json",
        "runs/Nov29/events.out.tfevents.1.x",
        "logs/train.log",
        "train.log",
        ".hidden",
        "__pycache__/modeling_sparsevit.cpython-311.pyc",
        ".ipynb_checkpoints/notes.ipynb",
    ]
    for name in junk:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"junk")
    return folder, model, processor, junk


def example_picture(tmp_path) -> Path:
    samples = sorted((SAMPLES / "Tp").glob("*.jpg"))
    if samples:
        return samples[0]
    path = tmp_path / "picture.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def uploaded_files(call) -> list[str]:
    """What upload_folder would upload for this call: huggingface_hub's own filter on the folder's files."""
    kwargs = call[2]
    root = Path(kwargs["folder_path"])
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    patterns = list(kwargs.get("ignore_patterns") or []) + DEFAULT_IGNORE_PATTERNS
    return list(filter_repo_objects(names, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=patterns))


def test_push_creates_the_repo_and_uploads_a_complete_folder(fake_api, training_folder, tmp_path):
    folder, _, _, junk = training_folder
    card = {**RUN, "model_id": "forensics-lab/sparsevit-tiny"}
    result = push_to_hub(
        folder,
        "forensics-lab/sparsevit-tiny",
        token="hf_test",
        private=True,
        commit_message="First upload",
        example_image=example_picture(tmp_path),
        card=card,
    )
    assert result == "commit-info"
    (api,) = fake_api.instances
    assert api.token == "hf_test"
    (create, upload) = api.calls
    assert create[0] == "create_repo" and create[1] == "forensics-lab/sparsevit-tiny"
    assert (
        create[2]["private"] is True
        and create[2]["exist_ok"] is True
        and create[2].get("repo_type", "model") == "model"
    )
    assert upload[0] == "upload_folder" and upload[1] == "forensics-lab/sparsevit-tiny"
    assert Path(upload[2]["folder_path"]) == folder and upload[2]["commit_message"] == "First upload"

    files = uploaded_files(upload)
    assert files == files_to_upload(folder)
    assert set(files) == {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "configuration_sparsevit.py",
        "modeling_sparsevit.py",
        "attention_sparsevit.py",
        "checks_sparsevit.py",
        "image_processing_sparsevit.py",
        "image_decoding_sparsevit.py",
        "localization_sparsevit.py",
        "handler.py",
        "requirements.txt",
        "README.md",
        "example.jpg",
        "example_output.png",
    }
    assert not set(files) & set(junk)
    card = ModelCard.load(folder / "README.md")
    assert card.data.widget == [
        {"src": "example.jpg", "example_title": "Example", "output": {"url": "example_output.png"}}
    ]
    assert "](example_output.png)" in card.text
    assert len(card.data.eval_results) == 3

    # The widget's output picture is the overlay of the model's prediction on the example (image | heatmap | region).
    model, processor = load_model(folder)
    example = Image.open(folder / "example.jpg").convert("RGB")
    [probability] = predict_probabilities(model, processor, [example])
    output = Image.open(folder / hub.EXAMPLE_OUTPUT_IMAGE)
    assert output.mode == "RGB" and output.width > 3 * example.width and output.height > example.height
    heatmap_panel = np.asarray(output)[-example.height :, output.width // 3 : 2 * output.width // 3]
    assert heatmap_panel.std() > 0  # a real heatmap, not a blank panel
    assert probability.shape == (example.height, example.width)


def test_the_output_picture_is_drawn_again_only_when_the_model_or_the_example_changed(training_folder, tmp_path,
                                                                                      monkeypatch):
    import sparsevit_hf.inference as inference

    folder, model, _, _ = training_folder
    shutil.copyfile(example_picture(tmp_path), folder / "example.jpg")
    assert hub.write_widget_output(folder, "example.jpg") == "example_output.png"
    first = (folder / "example_output.png").read_bytes()
    loads = []
    load = inference.load_model
    monkeypatch.setattr(inference, "load_model", lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs))
    assert hub.write_widget_output(folder, "example.jpg") == "example_output.png"
    assert loads == []  # up to date: kept (a push right after write_model_card does not predict again)
    with torch.no_grad():
        model.fusion_head.classifier.bias += 3.0
    model.save_pretrained(folder)
    assert hub.write_widget_output(folder, "example.jpg") == "example_output.png"
    assert len(loads) == 1 and (folder / "example_output.png").read_bytes() != first


def test_push_renders_a_default_card_and_keeps_an_existing_one(fake_api, training_folder):
    folder, _, _, _ = training_folder
    push_to_hub(folder, "someone/sparsevit")
    (api,) = fake_api.instances
    assert api.calls[0][2]["private"] is False
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-segmentation" and card.data.get("widget") is None  # no example image
    assert (folder / "handler.py").is_file() and "handler.py" in files_to_upload(folder)
    (folder / "README.md").write_text(str(card) + "\nHand-written notes.\n")
    push_to_hub(folder, "someone/sparsevit")
    assert "Hand-written notes." in (folder / "README.md").read_text()


def test_push_refuses_incomplete_folders_before_touching_the_hub(fake_api, training_folder, tmp_path):
    folder, _, _, _ = training_folder
    (folder / "modeling_sparsevit.py").unlink()
    with pytest.raises(ValueError, match="modeling_sparsevit.py"):
        push_to_hub(folder, "someone/sparsevit")
    with pytest.raises(ValueError, match="does not exist"):
        push_to_hub(tmp_path / "nothing", "someone/sparsevit")
    (folder / "README.md").write_text("---\npipeline_tag: text-generation\n---\nWrong card\n")
    shutil.copy(Path(__import__("sparsevit_hf").modeling_sparsevit.__file__), folder / "modeling_sparsevit.py")
    with pytest.raises(ValueError, match="pipeline_tag"):
        push_to_hub(folder, "someone/sparsevit")
    assert all(not api.calls for api in fake_api.instances)
    (folder / "README.md").unlink()
    (folder / "handler.py").unlink()
    with pytest.raises(ValueError, match=r"handler\.py.*write_endpoint_files"):
        hub.check_repo_folder(folder)


def test_what_would_be_uploaded_loads_with_remote_code_without_the_package(fake_api, training_folder, tmp_path):
    folder, model, processor, _ = training_folder
    push_to_hub(folder, "someone/sparsevit", example_image=example_picture(tmp_path))
    upload = fake_api.instances[0].calls[1]
    repo = tmp_path / "hub-repo"
    for name in uploaded_files(upload):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, repo / name)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).logits

    logits, (module, *_) = predict_without_package(repo, tmp_path / "image.png", tmp_path)
    assert not module.startswith("sparsevit_hf")
    torch.testing.assert_close(logits, expected)
