"""Loading models: every loader of the package refuses a folder whose weights do not match its config, a truncated
weights file and another architecture's config, with one `ModelLoadError` (or, for the config class itself, a
`ValueError`) that names the folder or file and the problem."""

import shutil

import pytest
import torch
from conftest import save_model_folder
from safetensors.torch import load_file, save_file

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.cli.predict import main as predict_main
from sparsevit_hf.inference import ModelLoadError, check_model_folder, load_model
from sparsevit_hf.training import load_best_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model_dir(tmp_path):
    return save_model_folder(tmp_path / "model", SparseViTConfig.from_preset("tiny"))


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "image.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(path)
    return path


def copy_without(model_dir, folder, dropped=(), added=()):
    """A copy of `model_dir` whose weights lack the keys `dropped` and carry extra zero tensors named `added`."""
    shutil.copytree(model_dir, folder)
    weights = load_file(folder / "model.safetensors")
    for key in dropped:
        del weights[key]
    for key in added:
        weights[key] = torch.zeros(3)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def truncated_copy(model_dir, folder):
    shutil.copytree(model_dir, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return folder


class Unwrapped:
    """The little of an `Accelerator` that `load_best_model` uses, on one process without wrapping."""

    distributed_type = "NO"

    @staticmethod
    def unwrap_model(model):
        return model


def test_a_complete_folder_loads(model_dir):
    from sparsevit_hf.inference import load_pretrained

    model = load_pretrained(SparseViTForManipulationLocalization, model_dir)
    assert isinstance(model, SparseViTForManipulationLocalization)
    expected = load_file(model_dir / "model.safetensors")
    assert all(torch.equal(model.state_dict()[key], tensor) for key, tensor in expected.items())


def test_missing_weights_are_an_error_naming_them_in_every_loader(model_dir, tmp_path, image, capsys):
    dropped = sorted(load_file(model_dir / "model.safetensors"))[:5]
    folder = copy_without(model_dir, tmp_path / "missing", dropped=dropped)
    out = tmp_path / "out"
    assert predict_main([str(folder), str(image), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("sparsevit-predict: error:")]) == 1
    assert "5 weights missing" in err[-1] and not out.exists()

    from sparsevit_hf.inference import load_pretrained

    for load in (
        lambda: load_model(folder),
        lambda: load_pretrained(SparseViTForManipulationLocalization, folder),
        lambda: load_best_model(Unwrapped(), SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny")),
                                folder),
    ):
        with pytest.raises(ModelLoadError, match="5 weights missing") as error:
            load()
        assert str(folder) in str(error.value) and all(key in str(error.value) for key in dropped)


def test_unexpected_weights_are_an_error_naming_them(model_dir, tmp_path):
    folder = copy_without(model_dir, tmp_path / "extra", added=["backbone.extra.weight"])
    with pytest.raises(ModelLoadError, match="1 weights the model does not have: backbone.extra.weight"):
        load_model(folder)


def test_a_truncated_weights_file_is_an_error_naming_the_file_in_every_loader(model_dir, tmp_path, image, capsys):
    folder = truncated_copy(model_dir, tmp_path / "truncated")
    weights = str(folder / "model.safetensors")
    assert predict_main([str(folder), str(image), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert weights in capsys.readouterr().err

    from sparsevit_hf.inference import load_pretrained

    for load in (
        lambda: check_model_folder(folder),
        lambda: load_model(folder),
        lambda: load_pretrained(SparseViTForManipulationLocalization, folder),
        lambda: load_best_model(Unwrapped(), SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny")),
                                folder),
    ):
        with pytest.raises(ModelLoadError, match="truncated or corrupt") as error:
            load()
        assert weights in str(error.value)


def test_another_architectures_config_is_refused_by_the_config_class(tmp_path):
    from transformers import ViTConfig

    folder = tmp_path / "vit"
    ViTConfig().save_pretrained(folder)
    for cls in (SparseViTConfig, SparseViTForManipulationLocalization):
        with pytest.raises(ValueError, match="model_type 'vit' is not 'sparsevit'") as error:
            cls.from_pretrained(folder)
        assert str(folder) in str(error.value)
    with pytest.raises(ValueError, match="model_type 'vit' is not 'sparsevit'"):
        SparseViTConfig.from_dict(ViTConfig().to_dict())
    with pytest.raises(ModelLoadError, match="model_type 'vit' is not 'sparsevit'"):
        load_model(folder)
    assert SparseViTConfig.from_dict({"depths": [1, 1, 2, 2], "sparsity_rates": [[2, 1], [2, 1]],
                                      "fused_blocks": [[1], [1]]}).depths == [1, 1, 2, 2]  # no model_type: accepted
