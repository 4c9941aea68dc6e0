import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def tiny_config():
    from sparsevit_hf import SparseViTConfig

    return SparseViTConfig(
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 4, 2],
        attention_head_size=16,
        sparsity_rates=[[4, 4, 2, 1], [2, 1]],
        fused_blocks=[[1, 3], [0, 1]],
        fusion_hidden_size=64,
        drop_path_rate=0.0,
    )


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and OpenMP threads stall badly when the machine is busy."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the project's shared reference folder) is not present")
    return SHARED


# Prepended to a script run in a fresh interpreter where `import sparsevit_hf` fails, as on a machine without the
# package: what a saved folder needs must come from its own code files.
WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoSparseViT(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "sparsevit_hf":
                raise ModuleNotFoundError("sparsevit_hf is not installed here")

    sys.meta_path.insert(0, NoSparseViT())
    sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
    """
)


def run_without_package(script: str, tmp_path) -> str:
    """Run `script` offline in a fresh interpreter without the package; return its standard output."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PACKAGE + textwrap.dedent(script)],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def predict_without_package(folder, image_path, tmp_path):
    """Load `folder` with the Auto classes and `trust_remote_code=True` in an interpreter without the package and
    predict `image_path`; return the logits and the (module, model, backbone, processor) names of what loaded."""
    stdout = run_without_package(
        f"""
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation

        folder = {str(folder)!r}
        model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
        backbone = AutoModel.from_pretrained(folder, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        with torch.no_grad():
            logits = model(**processor(Image.open({str(image_path)!r}), return_tensors="pt")).logits
        torch.save(logits, {str(tmp_path / "logits.pt")!r})
        print(type(model).__module__, type(model).__name__, type(backbone).__name__, type(processor).__name__)
        """,
        tmp_path,
    )
    import torch

    return torch.load(tmp_path / "logits.pt"), stdout.split()


def save_model_folder(folder, config, seed=0):
    """Save a randomly initialised SparseViT of `config` (seeded) with a 64 x 64 processor into `folder`."""
    import torch

    from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor

    torch.manual_seed(seed)
    SparseViTForManipulationLocalization(config).save_pretrained(folder)
    SparseViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def save_tiny_localizer(folder, seed=0):
    """Save a tiny SparseViT (64 x 64 processor) whose probabilities on noise images straddle 0.5, so that both
    labels appear, with its Endpoint files; return the model and the processor."""
    import numpy as np
    import torch
    from PIL import Image

    from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
    from sparsevit_hf.hub import write_endpoint_files
    from sparsevit_hf.inference import predict_probabilities

    torch.manual_seed(seed)
    config = SparseViTConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 4, 2], attention_head_size=16,
        sparsity_rates=[[4, 4, 2, 1], [2, 1]], fused_blocks=[[1, 3], [0, 1]], fusion_hidden_size=64,
        drop_path_rate=0.0, layer_scale_init_value=0.3,
    )
    model = SparseViTForManipulationLocalization(config).eval()
    processor = SparseViTImageProcessor(size={"height": 64, "width": 64})
    noise = np.random.default_rng(seed).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    [probability] = predict_probabilities(model, processor, [Image.fromarray(noise)])
    median = float(np.median(probability))
    with torch.no_grad():
        model.fusion_head.classifier.bias -= float(np.log(median / (1 - median)))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_endpoint_files(folder)
    return model, processor
