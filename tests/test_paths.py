"""Specification of `sparsevit_hf.utils.is_local_path`: the one rule, used by model loading, the training script
and the model card, that tells a local file or folder from a Hugging Face Hub repository id."""

from pathlib import Path

import pytest

from sparsevit_hf.utils import is_local_path


@pytest.mark.parametrize(
    "name",
    [
        "/data/CASIAv1",  # absolute
        "./model",  # relative, written as a path
        "../model",
        ".hidden",
        "~/models/sparsevit",  # home folder
        "data\\CASIA",  # Windows separators
        "C:\\data\\CASIA",
        "outputs/run/final",  # more than one "/": never a repository id
        "pairs.json",  # a pair list or combined data set file
        "some/pairs.JSON",
        "my data",  # characters a repository id cannot hold
        "a--b",
        "a..b",
        "model.git",
        "",
    ],
)
def test_names_that_cannot_be_hub_ids_are_local_paths(name):
    assert is_local_path(name)


@pytest.mark.parametrize("name", ["sparsevit", "me/sparsevit", "org/SparseViT-B_512.v2", "CASIAv1"])
def test_possible_hub_ids_are_hub_ids_unless_they_exist_here(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_path(name)
    (tmp_path / name).mkdir(parents=True)  # a local folder of that name wins, as in from_pretrained
    assert is_local_path(name)


def test_path_objects_are_local(tmp_path):
    assert is_local_path(tmp_path / "missing") and is_local_path(Path("me/sparsevit"))


def test_model_loading_reports_a_missing_folder_instead_of_asking_the_hub(tmp_path, monkeypatch):
    from sparsevit_hf.inference import ModelLoadError, load_model

    monkeypatch.chdir(tmp_path)
    for name in ("outputs/run/final", "./final", "my model"):
        with pytest.raises(ModelLoadError, match="does not exist"):
            load_model(name)
    with pytest.raises(ModelLoadError, match="Cannot load a model config for 'me/missing'"):
        load_model("me/missing")  # a Hub id: asked for (offline in the tests), not reported as a missing folder


def test_the_model_card_lists_hub_ids_only(tmp_path, monkeypatch):
    from sparsevit_hf.training import is_hub_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    assert is_hub_id("me/casia") and is_hub_id("sparsevit")
    assert not is_hub_id("local") and not is_hub_id("/data/CASIA") and not is_hub_id("pairs.json")
    assert not is_hub_id("synthetic") and not is_hub_id("synthetic:train:num_images=10")
