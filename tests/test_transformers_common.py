"""Run transformers' own model and configuration test mixins against SparseViT.

`ModelTesterMixin` (`tests/test_modeling_common.py`) and `ConfigTester` (`tests/test_configuration_common.py`) live in
the transformers source distribution, not in the wheel. They are loaded from the folder named by the environment
variable `TRANSFORMERS_TESTS_DIR` (default: `<repo>/.venv/transformers-tests`, which `make` fills by extracting the
sdist's `tests/*.py`); this module is skipped when that folder or the `parameterized` package is missing.

The sdist's `tests/` folder is not a complete package: `test_modeling_common.py` imports `.exporters.test_export` and
`.generation.test_utils`, and `test_configuration_common.py` imports `.utils.test_configuration_utils` (and reads
`tests/__init__.py`). At collection time a throw-away package is built in a temporary folder: it links the sdist's
top-level test modules and adds small stubs, written here, for the missing ones (an empty `ExportTesterMixin`, so no
`torch.export` tests run; an empty `GenerationTesterMixin`, SparseViT does not generate; and our own
`config_common_kwargs`).
"""

import atexit
import copy
import importlib
import os
import shutil
import sys
import tempfile
import unittest
import warnings
from pathlib import Path
from unittest import mock

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TRANSFORMERS_TESTS_DIR = Path(
    os.environ.get("TRANSFORMERS_TESTS_DIR", str(REPO_ROOT / ".venv" / "transformers-tests"))
).resolve()
REQUIRED_FILES = ("test_modeling_common.py", "test_configuration_common.py")

if not all((TRANSFORMERS_TESTS_DIR / name).is_file() for name in REQUIRED_FILES):
    pytest.skip(
        f"transformers' test mixins not found in {TRANSFORMERS_TESTS_DIR} (set TRANSFORMERS_TESTS_DIR to the `tests/` "
        "folder of the transformers 5.24.0 source distribution, or run `make install`)",
        allow_module_level=True,
    )
pytest.importorskip("parameterized", reason="transformers' model test mixin needs `parameterized`")

import torch  # noqa: E402
from transformers.testing_utils import torch_device  # noqa: E402

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTModel  # noqa: E402

PACKAGE = "_sparsevit_transformers_common_tests"

# Stubs for the modules the sdist's `tests/` folder imports but does not ship.
STUBS = {
    "exporters/test_export.py": '''
class ExportTesterMixin:
    """Stub: the `torch.export` tests are not part of the transformers sdist."""
''',
    "generation/test_utils.py": '''
class GenerationTesterMixin:
    """Stub: the generation tests are not part of the transformers sdist (SparseViT does not generate)."""
''',
    # Non-default values of attributes every `PreTrainedConfig` takes; `ConfigTester.check_config_arguments_init`
    # checks that a config built with them keeps them (and `dtype="float16"` becomes `torch.float16`).
    "utils/test_configuration_utils.py": """
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["SparseViTForManipulationLocalization"],
    "id2label": {0: "background", 1: "tampered", 2: "spliced"},
    "label2id": {"background": 0, "tampered": 1, "spliced": 2},
    "problem_type": "regression",
}
""",
}


def _build_common_tests_package():
    """Import the sdist's test mixins through a temporary package made of links to them plus our stubs."""
    root = Path(tempfile.mkdtemp(prefix="sparsevit-transformers-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package = root / PACKAGE
    package.mkdir()
    # `test_configuration_common` runs `direct_transformers_import(<its folder>)`, which executes `<folder>/__init__.py`
    # under the name `transformers` and returns the real `sys.modules["transformers"]`: it must exist and be empty.
    (package / "__init__.py").write_text("")
    for source in sorted(TRANSFORMERS_TESTS_DIR.glob("*.py")):
        if source.name != "__init__.py":
            try:
                os.symlink(source, package / source.name)
            except OSError:  # no symlinks on this file system: a temporary copy does as well
                shutil.copyfile(source, package / source.name)
    for relative, text in STUBS.items():
        path = package / relative
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text.lstrip())
    sys.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():
            # The mixins mark tests with transformers' own pytest marks (`flash_attn_test`, ...), unknown here.
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
            configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    finally:
        sys.path.remove(str(root))
    return modeling, configuration


common, config_common = _build_common_tests_package()
ConfigTester = config_common.ConfigTester
ModelTesterMixin = common.ModelTesterMixin
floats_tensor = common.floats_tensor


class SparseViTModelTester:
    """Builds a tiny SparseViT (4 stages, 6 blocks) and inputs, the way transformers' model testers do."""

    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=64,
        num_channels=3,
        hidden_sizes=(8, 16, 32, 64),
        depths=(1, 1, 2, 2),
        patch_sizes=(4, 2, 2, 2),
        attention_head_size=16,
        mlp_ratio=2.0,
        sparsity_rates=((2, 1), (2, 1)),
        fused_blocks=((0, 1), (0, 1)),
        fusion_hidden_size=32,
        hidden_act="gelu",
        layer_scale_init_value=0.1,  # the default 1e-6 leaves gradients at the level of float noise
        drop_path_rate=0.0,  # as the mixin does with dropout: deterministic training steps
        attention_dropout=0.0,
        initializer_range=0.02,
        is_training=True,
        use_labels=True,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.patch_sizes = list(patch_sizes)
        self.attention_head_size = attention_head_size
        self.mlp_ratio = mlp_ratio
        self.sparsity_rates = [list(rates) for rates in sparsity_rates]
        self.fused_blocks = [list(blocks) for blocks in fused_blocks]
        self.fusion_hidden_size = fusion_hidden_size
        self.hidden_act = hidden_act
        self.layer_scale_init_value = layer_scale_init_value
        self.drop_path_rate = drop_path_rate
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.is_training = is_training
        self.use_labels = use_labels

        # What the shape checks expect. Grid side of each stage (the input is a multiple of the patch product):
        self.grid_sizes = []
        side = image_size
        for patch in self.patch_sizes:
            side //= patch
            self.grid_sizes.append(side)
        # hidden states: the stage-1 patch embedding, then every block, each (batch, channels, height, width)
        self.expected_num_hidden_layers = 1 + sum(self.depths)
        self.expected_hidden_state_shapes = [(self.hidden_sizes[0], self.grid_sizes[0], self.grid_sizes[0])] + [
            (self.hidden_sizes[stage], self.grid_sizes[stage], self.grid_sizes[stage])
            for stage in range(4)
            for _ in range(self.depths[stage])
        ]
        # attentions: one per attention block (stages 3-4), (batch, groups, heads, N, N) with S x S groups of N tokens
        self.expected_num_attentions = sum(self.depths[2:])
        self.expected_attention_shapes = []
        for stage in (2, 3):
            heads = self.hidden_sizes[stage] // attention_head_size
            for rate in self.sparsity_rates[stage - 2]:
                rate = min(rate, self.grid_sizes[stage])
                group_side = -(-self.grid_sizes[stage] // rate)
                self.expected_attention_shapes.append((rate * rate, heads, group_side**2, group_side**2))
        self.logits_size = image_size // (self.patch_sizes[0] * self.patch_sizes[1] * self.patch_sizes[2])

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = None
        if self.use_labels:
            labels = (torch.rand(self.batch_size, self.image_size, self.image_size) > 0.5).float()
        return self.get_config(), pixel_values, labels

    def get_config_kwargs(self):
        return {
            "num_channels": self.num_channels,
            "hidden_sizes": self.hidden_sizes,
            "depths": self.depths,
            "patch_sizes": self.patch_sizes,
            "attention_head_size": self.attention_head_size,
            "mlp_ratio": self.mlp_ratio,
            "sparsity_rates": self.sparsity_rates,
            "fused_blocks": self.fused_blocks,
            "fusion_hidden_size": self.fusion_hidden_size,
            "hidden_act": self.hidden_act,
            "layer_scale_init_value": self.layer_scale_init_value,
            "drop_path_rate": self.drop_path_rate,
            "attention_dropout": self.attention_dropout,
            "initializer_range": self.initializer_range,
        }

    def get_config(self):
        return SparseViTConfig(**copy.deepcopy(self.get_config_kwargs()))

    def create_and_check_model(self, config, pixel_values, labels):
        model = SparseViTModel(config).to(torch_device).eval()
        with torch.no_grad():
            result = model(pixel_values)
        side = self.grid_sizes[3]
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.hidden_sizes[3], side, side))
        expected = [(self.hidden_sizes[2], self.grid_sizes[2])] * len(self.fused_blocks[0]) + [
            (self.hidden_sizes[3], self.grid_sizes[3])
        ] * len(self.fused_blocks[1])
        self.parent.assertEqual(
            [tuple(f.shape) for f in result.feature_maps],
            [(self.batch_size, width, side, side) for width, side in expected],
        )

    def create_and_check_for_manipulation_localization(self, config, pixel_values, labels):
        model = SparseViTForManipulationLocalization(config).to(torch_device).eval()
        with torch.no_grad():
            result = model(pixel_values)
            self.parent.assertEqual(result.logits.shape, (self.batch_size, 1, self.logits_size, self.logits_size))
            result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, 1, self.logits_size, self.logits_size))
        self.parent.assertEqual(result.loss.ndim, 0)
        self.parent.assertGreater(result.loss.item(), 0.0)

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class SparseViTModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (SparseViTModel, SparseViTForManipulationLocalization)
    # No `PipelineTesterMixin` / `pipeline_model_mapping`: its tests run tiny checkpoints from the Hub listed in the
    # transformers repository (not in the sdist), and this suite is offline.

    has_attentions = True
    test_resize_embeddings = False  # no token embeddings
    # `_init_weights` covers every weight and buffer; the mixin only checks this for models it dates after 2022.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # In-tree models are listed in transformers' `*_MAPPING_NAMES`, from which the mixin learns which class is the
        # base model (no loss: skipped by the training tests; target of `base_model_prefix`) and which is a semantic
        # segmentation head. Register SparseViT in the test module's view of those tables only.
        cls._patches = [
            mock.patch.object(
                common,
                "MODEL_MAPPING_NAMES",
                {**common.MODEL_MAPPING_NAMES, SparseViTConfig.model_type: SparseViTModel.__name__},
            ),
            mock.patch.object(
                common,
                "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
                {
                    **common.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
                    SparseViTConfig.model_type: SparseViTForManipulationLocalization.__name__,
                },
            ),
        ]
        for patch in cls._patches:
            patch.start()
        # The models are tiny: intra-op threads only add synchronisation (on a busy 2-core machine each op then waits
        # for a time slice, 100x slower). One thread for this class; the previous setting is restored afterwards.
        cls._num_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls._num_threads)
        for patch in reversed(cls._patches):
            patch.stop()
        super().tearDownClass()

    def setUp(self):
        self.model_tester = SparseViTModelTester(self)
        self.config_tester = ConfigTester(
            self,
            config_class=SparseViTConfig,
            has_text_modality=False,
            common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "num_channels"],
            **self.model_tester.get_config_kwargs(),
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=False)
        if return_labels and model_class is SparseViTForManipulationLocalization:
            # Manipulation masks: (batch, height, width), float 0 (authentic) / 1 (manipulated).
            batch, _, height, width = inputs_dict["pixel_values"].shape
            generator = torch.Generator().manual_seed(0)
            inputs_dict["labels"] = (torch.rand(batch, height, width, generator=generator) > 0.5).float()
        return inputs_dict

    # ----------------------------------------------------------------------------------------------- model-specific

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_config_hidden_size_maps_to_fusion_hidden_size(self):
        config = self.model_tester.get_config()
        self.assertEqual(config.hidden_size, config.fusion_hidden_size)
        config.hidden_size = 48
        self.assertEqual(config.fusion_hidden_size, 48)
        self.assertEqual(config.num_hidden_layers, sum(self.model_tester.depths))
        self.assertEqual(config.num_attention_heads, [2, 4])

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_manipulation_localization(self):
        self.model_tester.create_and_check_for_manipulation_localization(*self.model_tester.prepare_config_and_inputs())

    # ----------------------------------------------------------------- shape checks adapted to this model's outputs

    def test_hidden_states_output(self):
        # Same checks as the mixin's, for hidden states of shape (batch, channels, height, width): the stage-1 patch
        # embedding then every block; set by the `output_hidden_states` kwarg or by the config.
        tester = self.model_tester

        def check_hidden_states_output(inputs_dict, config, model_class):
            model = model_class(copy.deepcopy(config)).to(torch_device).eval()
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs_dict, model_class))
            hidden_states = outputs.hidden_states
            self.assertEqual(len(hidden_states), tester.expected_num_hidden_layers)
            self.assertEqual(
                [tuple(h.shape) for h in hidden_states],
                [(tester.batch_size, *shape) for shape in tester.expected_hidden_state_shapes],
            )

        config, inputs_dict = tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            inputs_dict["output_hidden_states"] = True
            check_hidden_states_output(inputs_dict, config, model_class)

            del inputs_dict["output_hidden_states"]
            config.output_hidden_states = True
            check_hidden_states_output(inputs_dict, config, model_class)
            config.output_hidden_states = False

    def test_attention_outputs(self):
        # Same checks as the mixin's, for attentions of shape (batch, groups, heads, N, N), one per attention block.
        tester = self.model_tester
        expected_shapes = [(tester.batch_size, *shape) for shape in tester.expected_attention_shapes]
        config, inputs_dict = tester.prepare_config_and_inputs_for_common()
        config.return_dict = True

        for model_class in self.all_model_classes:
            # eager, requested by the kwarg
            inputs_dict["output_attentions"] = True
            inputs_dict["output_hidden_states"] = False
            model = model_class._from_config(config, attn_implementation="eager").to(torch_device).eval()
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs_dict, model_class))
            self.assertEqual(len(outputs.attentions), tester.expected_num_attentions)
            self.assertEqual([tuple(a.shape) for a in outputs.attentions], expected_shapes)
            for attention in outputs.attentions:
                torch.testing.assert_close(attention.sum(-1), torch.ones_like(attention.sum(-1)))

            # sdpa, requested by the config: the attention blocks fall back to eager to return the probabilities
            del inputs_dict["output_attentions"]
            sdpa_config = copy.deepcopy(config)
            sdpa_config.output_attentions = True
            model = model_class._from_config(sdpa_config, attn_implementation="sdpa").to(torch_device).eval()
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs_dict, model_class))
            self.assertEqual([tuple(a.shape) for a in outputs.attentions], expected_shapes)
            out_len = len(outputs)

            # attentions come last, after the hidden states
            inputs_dict["output_attentions"] = True
            inputs_dict["output_hidden_states"] = True
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs_dict, model_class))
            self.assertEqual(out_len + 1, len(outputs))
            self.assertEqual(list(outputs.keys())[-2:], ["hidden_states", "attentions"])
            self.assertEqual([tuple(a.shape) for a in outputs.attentions], expected_shapes)
            del inputs_dict["output_attentions"], inputs_dict["output_hidden_states"]

    def test_can_capture_specific_layers_hidden_states(self):
        # The mixin's version skips models whose `_can_record_outputs["hidden_states"]` lists several recorders (here
        # the convolution and the attention blocks). The selection still works: indices count the hidden states in the
        # order the model returns them, negative ones through `config.num_hidden_layers` (+ 1 for the stem).
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).to(torch_device).eval()
            inputs = self._prepare_for_class(inputs_dict, model_class)
            with torch.no_grad():
                hidden_states = model(**inputs, output_hidden_states=True).hidden_states
                num_hidden_states = len(hidden_states)
                self.assertEqual(num_hidden_states, self.model_tester.expected_num_hidden_layers)
                indices = [*range(0, num_hidden_states, 2), -1]
                captured = model(**inputs, output_hidden_states=indices).hidden_states
            self.assertEqual(len(captured), num_hidden_states)
            kept = {i % num_hidden_states for i in indices}
            for i in range(num_hidden_states):
                if i in kept:
                    torch.testing.assert_close(captured[i], hidden_states[i])
                else:
                    self.assertIsNone(captured[i])

    def test_model_get_set_embeddings(self):
        # The mixin expects a token `nn.Embedding`; like transformers' vision models, SparseViT exposes its stem (the
        # stage-1 patch embedding) as input embeddings and has no output embeddings.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config))
            base_model = model if model_class is SparseViTModel else model.sparsevit
            self.assertIs(model.get_input_embeddings(), base_model.stages[0].patch_embeddings)
            self.assertIsNone(model.get_output_embeddings())

    def test_enable_input_require_grads_with_frozen_weights_and_reentrant_checkpointing(self):
        # What `enable_input_require_grads` is for (adapters on a frozen model): with reentrant checkpointing, a
        # checkpointed block only gets gradients if its input requires grad, which the stem hook provides.
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        model_class = SparseViTForManipulationLocalization
        inputs = self._prepare_for_class(inputs_dict, model_class, return_labels=True)
        model = model_class(config).to(torch_device).train()
        model.requires_grad_(False)
        trainable = model.sparsevit.stages[2].blocks[0].attention.qkv.weight
        trainable.requires_grad_(True)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
        model(**inputs).loss.backward()
        self.assertIsNotNone(trainable.grad)
        self.assertGreater(trainable.grad.abs().sum().item(), 0.0)

    def test_torch_compile_fullgraph(self):
        # `_can_compile_fullgraph = True`: the forward, with its output capture, and the training step trace without a
        # graph break and match eager. The mixin's compile tests need an accelerator (and token inputs); inductor's CPU
        # code generation takes minutes here, so this traces with dynamo + AOTAutograd and runs the graphs eagerly.
        # A 64 x 96 input makes the stage-4 grid (2 x 3) not a multiple of S = 2: the padding mask is traced too.
        torch.compiler.reset()
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        inputs_dict = {"pixel_values": floats_tensor([self.model_tester.batch_size, 3, 64, 96])}
        model_class = SparseViTForManipulationLocalization
        model = model_class(config).to(torch_device).eval()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            expected = model(**inputs_dict, output_hidden_states=True, output_attentions=True)
            outputs = compiled(**inputs_dict, output_hidden_states=True, output_attentions=True)
        torch.testing.assert_close(outputs.logits, expected.logits)
        for name in ("hidden_states", "attentions"):
            self.assertEqual(len(outputs[name]), len(expected[name]))
            for actual, reference in zip(outputs[name], expected[name]):
                torch.testing.assert_close(actual, reference)

        inputs = self._prepare_for_class(inputs_dict, model_class, return_labels=True)
        model.train()
        model(**inputs).loss.backward()
        expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        compiled(**inputs).loss.backward()
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(parameter.grad, expected_grads[name], atol=1e-6, rtol=1e-4, msg=name)
        torch.compiler.reset()


if __name__ == "__main__":
    unittest.main()
