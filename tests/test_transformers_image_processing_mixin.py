"""Run transformers' own image-processor test mixin against `SparseViTImageProcessor`.

The mixin lives in the transformers source distribution (`tests/test_image_processing_common.py`), not in the wheel.
It is loaded from the folder named by the environment variable `TRANSFORMERS_TESTS_DIR` (default:
`<repo>/.venv/transformers-tests`, which `make` fills by extracting the sdist's `tests/` folder); the whole module is
skipped when that folder or the `parameterized` package is missing.

The mixin imports `fetch_hub_objects_for_ci` from transformers' `utils/` folder, which the sdist does not ship. A stub
is put into `sys.modules` only while the mixin module is imported; its `url_to_local_path` skips the calling test,
because the hub fixtures it would map to are never downloaded here (everything runs offline).
"""

import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import types
import unittest
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TRANSFORMERS_TESTS_DIR = Path(
    os.environ.get("TRANSFORMERS_TESTS_DIR", str(REPO_ROOT / ".venv" / "transformers-tests"))
)
COMMON_TESTS_FILE = TRANSFORMERS_TESTS_DIR / "test_image_processing_common.py"
RUN_SLOW = os.environ.get("RUN_SLOW", "").strip().lower() in {"1", "true", "yes", "on", "y"}

if not COMMON_TESTS_FILE.is_file():
    pytest.skip(
        f"transformers' test mixin not found at {COMMON_TESTS_FILE} (set TRANSFORMERS_TESTS_DIR to the `tests/` "
        "folder of the transformers source distribution)",
        allow_module_level=True,
    )
pytest.importorskip("parameterized", reason="transformers' image processing test mixin needs `parameterized`")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoImageProcessor, PreTrainedConfig  # noqa: E402
from transformers.modeling_outputs import SemanticSegmenterOutput  # noqa: E402
from transformers.models.auto.image_processing_auto import (  # noqa: E402
    IMAGE_PROCESSOR_MAPPING,
    get_image_processor_class_from_name,
)

from sparsevit_hf.image_processing_sparsevit import SparseViTImageProcessor  # noqa: E402


def _offline_url_to_local_path(url):
    pytest.skip(f"needs the hub fixture {url}, which is not available offline")


def _load_common_module():
    saved_path = list(sys.path)
    had_helper = "fetch_hub_objects_for_ci" in sys.modules
    saved_helper = sys.modules.get("fetch_hub_objects_for_ci")
    stub = types.ModuleType("fetch_hub_objects_for_ci")
    stub.url_to_local_path = _offline_url_to_local_path
    sys.modules["fetch_hub_objects_for_ci"] = stub
    try:
        spec = importlib.util.spec_from_file_location("_transformers_image_processing_common", COMMON_TESTS_FILE)
        module = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings():
            # transformers' own pytest marks (`slow`, `torch_compile_test`) are not registered in this project.
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        if had_helper:
            sys.modules["fetch_hub_objects_for_ci"] = saved_helper
        else:
            sys.modules.pop("fetch_hub_objects_for_ci", None)
    return module


common = _load_common_module()


class _SparseViTMixinTestConfig(PreTrainedConfig):
    """Throw-away config used only to register the processor with `AutoImageProcessor` for these tests."""

    model_type = "sparsevit-image-processor-mixin-test"


class SparseViTImageProcessingTester(common.ImageProcessingTester):
    def __init__(self, parent, **kwargs):
        # Images of at least 32 x 32 (the processor's minimum) and a small multiple of 32 as model size, for speed.
        kwargs.setdefault("min_resolution", 32)
        kwargs.setdefault("max_resolution", 160)
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("size", {"height": 64, "width": 64})
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.485, 0.456, 0.406])
        kwargs.setdefault("image_std", [0.229, 0.224, 0.225])
        kwargs.setdefault("do_pad", True)
        kwargs.setdefault("size_divisor", 32)
        # id2label {0: "authentic", 1: "manipulated"}: the per-class scores have two channels.
        kwargs.setdefault("num_labels", 2)
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        # The mixin looks the classes up in transformers' own mapping by test folder name; this processor is not there.
        return {"pil": SparseViTImageProcessor}

    def prepare_post_process_semantic_segmentation_inputs(self):
        # SparseViT predicts one logit channel at 1/16 of the input size; post-processing returns input-size maps.
        height, width = self.size["height"], self.size["width"]
        logits = torch.randn(self.batch_size, 1, height // 16, width // 16)
        inputs = {"outputs": SemanticSegmenterOutput(logits=logits)}
        expected_shape = {"num_labels": self.num_labels, "height": height, "width": width}
        return inputs, expected_shape


class SparseViTImageProcessingMixinTest(
    common.ImageProcessingTestMixin, common.PostProcessSemanticSegmentationTestMixin, unittest.TestCase
):
    image_processor_tester_class = SparseViTImageProcessingTester
    test_cast_dtype = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._registered_config = None
        if get_image_processor_class_from_name(SparseViTImageProcessor.__name__) is not SparseViTImageProcessor:
            AutoImageProcessor.register(
                _SparseViTMixinTestConfig, image_processor_classes={"pil": SparseViTImageProcessor}, exist_ok=True
            )
            cls._registered_config = _SparseViTMixinTestConfig

    @classmethod
    def tearDownClass(cls):
        if cls._registered_config is not None:
            IMAGE_PROCESSOR_MAPPING._extra_content.pop(cls._registered_config, None)
        super().tearDownClass()

    def test_new_models_require_torchvision_backend(self):
        self.skipTest(
            "SparseViT deliberately ships only the PIL/NumPy backend: the package must work without torchvision"
        )

    @unittest.skipUnless(RUN_SLOW, "test is slow (set RUN_SLOW=1 to run it)")
    def test_pil_can_run_without_torchvision(self):
        # Slow like upstream (a fresh interpreter imports transformers), so it runs with RUN_SLOW=1. The mixin's
        # version loads the processor with `AutoImageProcessor`, which in a fresh interpreter only knows transformers'
        # own processors; this one loads the code files of a saved folder (as remote code is) with torchvision blocked.
        image_processor = SparseViTImageProcessor(**self.image_processor_dict)
        processor_inputs = self.image_processor_tester.prepare_processor_inputs(equal_resolution=False)
        expected_outputs = image_processor(**processor_inputs, return_tensors=None)
        script = textwrap.dedent(
            """
            import importlib
            import pickle
            import sys
            import types

            sys.modules["torchvision"] = None  # `import torchvision` raises ImportError

            processor_dir, inputs_path, outputs_path = sys.argv[1:]
            # The saved folder holds the processor's code and the sibling files it imports, as a Hub repo does.
            package = types.ModuleType("saved_remote_code")
            package.__path__ = [processor_dir]
            sys.modules["saved_remote_code"] = package
            module = importlib.import_module("saved_remote_code.image_processing_sparsevit")
            processor = module.SparseViTImageProcessor.from_pretrained(processor_dir)
            with open(inputs_path, "rb") as f:
                processor_inputs = pickle.load(f)
            outputs = processor(**processor_inputs, return_tensors=None)
            with open(outputs_path, "wb") as f:
                pickle.dump(outputs.data, f)
            """
        )
        with tempfile.TemporaryDirectory() as tmpdirname:
            image_processor.save_pretrained(tmpdirname)
            inputs_path = os.path.join(tmpdirname, "inputs.pkl")
            outputs_path = os.path.join(tmpdirname, "outputs.pkl")
            with open(inputs_path, "wb") as f:
                pickle.dump(processor_inputs, f)
            result = subprocess.run(
                [sys.executable, "-c", script, tmpdirname, inputs_path, outputs_path],
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            with open(outputs_path, "rb") as f:
                outputs = pickle.load(f)
        np.testing.assert_equal(outputs, expected_outputs.data)
