"""The README's quickstart runs as written (on a small model saved under the name it uses)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor


def quickstart_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_quickstart_has_the_auto_class_and_pipeline_examples():
    blocks = quickstart_blocks()
    assert len(blocks) == 2
    assert "AutoModelForSemanticSegmentation" in blocks[0] and "pipeline(" in blocks[1]


@pytest.mark.parametrize("index", [0, 1], ids=["auto-classes", "pipeline"])
def test_quickstart_code_runs_as_written(tiny_config, tmp_path, index):
    SparseViTForManipulationLocalization(tiny_config).save_pretrained(tmp_path / "sparsevit-official")
    SparseViTImageProcessor().save_pretrained(tmp_path / "sparsevit-official")
    pixels = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.jpg")
    code = quickstart_blocks()[index]
    checks = {
        0: "\nassert probabilities.shape == (120, 90) and mask.shape == (120, 90)\n",
        1: "\nassert regions and all(region['mask'].size == (90, 120) for region in regions)\n",
    }
    result = subprocess.run(
        [sys.executable, "-c", code + checks[index]],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_MODULES_CACHE": str(tmp_path / "modules"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert result.returncode == 0, result.stderr
