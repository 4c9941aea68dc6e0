"""A saved folder carries its own code: it loads with `trust_remote_code=True` where the package is not installed."""

import json

import numpy as np
import torch
from conftest import predict_without_package
from PIL import Image

from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor


def test_saved_folder_has_weights_configs_code_and_a_complete_auto_map(tiny_config, tmp_path):
    SparseViTForManipulationLocalization(tiny_config).save_pretrained(tmp_path)
    SparseViTImageProcessor().save_pretrained(tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert {
        "model.safetensors", "config.json", "preprocessor_config.json",
        "configuration_sparsevit.py", "modeling_sparsevit.py", "attention_sparsevit.py", "checks_sparsevit.py",
        "image_processing_sparsevit.py",
        "image_decoding_sparsevit.py",  # imported by the processor: `save_pretrained` copies it along
        "localization_sparsevit.py",  # likewise; the Endpoint handler and the Space predict with it
    } <= names
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_sparsevit.SparseViTConfig",
        "AutoModel": "modeling_sparsevit.SparseViTModel",
        "AutoModelForSemanticSegmentation": "modeling_sparsevit.SparseViTForManipulationLocalization",
        "AutoImageProcessor": "image_processing_sparsevit.SparseViTImageProcessor",
    }
    processor_config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"]["AutoImageProcessor"] == "image_processing_sparsevit.SparseViTImageProcessor"


def test_auto_classes_load_the_folder_with_remote_code_and_reproduce_the_outputs(tiny_config, tmp_path):
    torch.manual_seed(0)
    tiny_config.layer_scale_init_value = 0.3  # make every block matter for the comparison
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    processor = SparseViTImageProcessor(size={"height": 64, "width": 64})
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).logits

    logits, (module, *names) = predict_without_package(tmp_path / "model", tmp_path / "image.png", tmp_path)
    assert not module.startswith("sparsevit_hf")
    assert names == ["SparseViTForManipulationLocalization", "SparseViTModel", "SparseViTImageProcessor"]
    torch.testing.assert_close(logits, expected)
