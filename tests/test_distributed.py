"""Distributed training: parameter layouts DDP reduces in place, the engine asked for against the one obtained, the
ready-made accelerate configs, and checkpoints written by any engine read back as one model.

What needs GPUs (FSDP, DeepSpeed) runs in `benchmarks/gpu_distributed.sh`; its CPU dry run is tested here. The
2-process DDP run itself (and its lack of layout warnings) is `test_training.py::test_two_cpu_processes_...`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from conftest import REPO
from safetensors.torch import load_file, save_file
from test_training import run_iml, tiny_args  # noqa: F401  (run_iml is a fixture)

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.training import engine_mismatch, log_distributed_setup, requested_engine, use_channels_last_parameters
from sparsevit_hf.training.checkpoint_weights import checkpoint_state_dict, export_checkpoint_model

CONFIGS = REPO / "examples" / "accelerate_configs"


def tiny_model(seed: int = 0) -> SparseViTForManipulationLocalization:
    torch.manual_seed(seed)
    return SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny"))


def gradient_layout_mismatches(model) -> list[str]:
    torch.manual_seed(1)
    pixel_values, labels = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    model.zero_grad(set_to_none=True)
    model(pixel_values=pixel_values, labels=labels).loss.backward()
    return [name for name, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]


# ------------------------------------------------------------------------------------------------------------------
# Parameter layouts
# ------------------------------------------------------------------------------------------------------------------
def test_channels_last_parameters_give_every_gradient_its_parameters_strides(one_thread):
    """The channels-last activations of the conv stages give depthwise and 1 x 1 convolution weights gradients
    with other strides than the weights (what DDP copies and warns about); after `use_channels_last_parameters`
    every gradient has its parameter's strides, with the same values, outputs and contiguous parameters."""
    model = tiny_model()
    before = gradient_layout_mismatches(model)
    assert "sparsevit.stages.3.blocks.1.mlp.depthwise_conv.weight" in before  # the (256, 1, 3, 3) of the report
    shapes = dict((name, p.shape) for name, p in model.named_parameters())
    assert all(len(shapes[name]) == 4 and 1 in shapes[name] for name in before)  # depthwise (C, 1, k, k), 1 x 1
    expected_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    pixel_values = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    model.eval()
    with torch.no_grad():
        expected_logits = model(pixel_values=pixel_values).logits

    assert use_channels_last_parameters(model) is model
    with torch.no_grad():
        assert torch.equal(model(pixel_values=pixel_values).logits, expected_logits)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected_state[name]), name
    assert all(p.is_contiguous() for p in model.parameters())  # FSDP2 refuses non-contiguous parameters
    assert gradient_layout_mismatches(model.train()) == []


# ------------------------------------------------------------------------------------------------------------------
# The engine asked for and the one obtained
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "environ, engine",
    [
        ({}, None),
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
        ({"ACCELERATE_USE_FSDP": "True"}, "FSDP"),
        ({"ACCELERATE_USE_FSDP": "false", "ACCELERATE_USE_DEEPSPEED": "TRUE"}, "DEEPSPEED"),
        ({"ACCELERATE_USE_MEGATRON_LM": "true"}, "MEGATRON_LM"),
        ({"ACCELERATE_USE_DEEPSPEED": "1"}, None),  # Accelerate itself only takes "true"
    ],
)
def test_the_requested_engine_is_read_from_the_launchers_variables_as_accelerate_reads_it(environ, engine):
    assert requested_engine(environ) == engine


def fake_accelerator(distributed_type, device="cpu", processes=2, mixed_precision="no"):
    return SimpleNamespace(distributed_type=distributed_type, device=torch.device(device), num_processes=processes,
                           mixed_precision=mixed_precision)


def test_a_run_that_asked_for_fsdp_or_deepspeed_and_got_plain_ddp_is_told_so(caplog):
    ddp_on_cpu = fake_accelerator(DistributedType.MULTI_CPU)
    message = engine_mismatch(ddp_on_cpu, {"ACCELERATE_USE_FSDP": "true"})
    assert "asked for FSDP, but this run got distributed type MULTI_CPU (2 process(es) on cpu)" in message
    assert "on the CPU" in message and "nothing is sharded" in message
    assert "asked for DEEPSPEED" in engine_mismatch(ddp_on_cpu, {"ACCELERATE_USE_DEEPSPEED": "true"})
    gpu = fake_accelerator(DistributedType.MULTI_GPU, device="cuda:0")
    assert "did not set the engine up" in engine_mismatch(gpu, {"ACCELERATE_USE_FSDP": "true"})
    # What was asked for, or nothing asked for: no warning.
    assert engine_mismatch(fake_accelerator(DistributedType.FSDP, "cuda:0"), {"ACCELERATE_USE_FSDP": "true"}) is None
    assert engine_mismatch(ddp_on_cpu, {}) is None

    with caplog.at_level("INFO", logger="sparsevit_hf"):
        assert log_distributed_setup(ddp_on_cpu, {"ACCELERATE_USE_FSDP": "true"}) == [message]
    assert "2 process(es), distributed type DistributedType.MULTI_CPU, device cpu" in caplog.text
    assert [r.levelname for r in caplog.records if "asked for FSDP" in r.getMessage()] == ["WARNING"]


def test_mixed_precision_without_native_products_on_the_cpu_is_told_so(monkeypatch, caplog):
    from sparsevit_hf.inference import loading

    monkeypatch.setattr(loading, "cpu_has_fast_matmul", lambda dtype: dtype == torch.float32)
    with caplog.at_level("WARNING", logger="sparsevit_hf"):
        [warning] = log_distributed_setup(fake_accelerator(DistributedType.NO, processes=1, mixed_precision="bf16"), {})
    assert "no native bf16 matrix products" in warning and "mixed precision 'no'" in warning
    assert [r.levelname for r in caplog.records if "no native bf16" in r.getMessage()] == ["WARNING"]
    assert log_distributed_setup(fake_accelerator(DistributedType.NO, "cuda:0", 1, "bf16"), {}) == []
    assert log_distributed_setup(fake_accelerator(DistributedType.NO, processes=1), {}) == []


def test_run_iml_warns_when_the_fsdp_it_was_launched_with_falls_back(run_iml, monkeypatch, tmp_path, caplog):  # noqa: F811
    """What `accelerate launch` with an FSDP config does on a machine without GPUs: the script runs, and says so."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    argv = tiny_args(max_train_steps=1, eval_every_epochs=0) + ["--cpu", "--output_dir", str(tmp_path / "run")]
    with caplog.at_level("INFO"):
        assert run_iml.main(argv) == 0
    assert "asked for FSDP, but this run got distributed type NO (1 process(es) on cpu)" in caplog.text


# ------------------------------------------------------------------------------------------------------------------
# Ready-made accelerate configs
# ------------------------------------------------------------------------------------------------------------------
def launch_settings(config: Path):
    """What `accelerate launch --config_file config` hands to the processes: its parsed arguments and the
    environment of the launcher the config selects (built by Accelerate's own functions; nothing is started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "examples/run_iml.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return args, defaults, prepare_deepspeed_cmd_env(args)[1]
    if args.use_fsdp or args.multi_gpu:
        return args, defaults, prepare_multi_gpu_env(args)
    return args, defaults, {}


def test_every_ready_made_config_is_there():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == [
        "ddp_cpu_2proc.yaml", "ddp_multi_gpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml",
        "fsdp2_full.yaml", "fsdp2_sharded.yaml",
    ]


@pytest.mark.parametrize("name", ["ddp_cpu_2proc", "ddp_multi_gpu"])
def test_ddp_configs_start_two_processes_without_an_engine(name):
    """Both go through torchrun (the CPU one too: Accelerate's CPU launcher starts a single process);
    test_training.py's 2-process test runs ddp_cpu_2proc.yaml."""
    args, defaults, environ = launch_settings(CONFIGS / f"{name}.yaml")
    assert defaults.distributed_type.name == "MULTI_GPU" and args.multi_gpu and args.num_processes == 2
    assert not (args.cpu or args.use_cpu)
    assert requested_engine(environ) is None


@pytest.mark.parametrize("name, state_dict_type", [("fsdp2_sharded", "SHARDED"), ("fsdp2_full", "FULL")])
def test_fsdp2_configs_wrap_the_attention_blocks(name, state_dict_type, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.dataclasses import get_module_class_from_name

    args, defaults, environ = launch_settings(CONFIGS / f"{name}.yaml")
    assert defaults.distributed_type.name == "FSDP" and requested_engine(environ) == "FSDP"
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # reads the launcher's variables, as in every process
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type.name == f"{state_dict_type}_STATE_DICT"
    assert plugin.transformer_cls_names_to_wrap == ["SparseViTAttentionBlock"]
    from sparsevit_hf.modeling_sparsevit import SparseViTAttentionBlock

    assert get_module_class_from_name(tiny_model(), "SparseViTAttentionBlock") is SparseViTAttentionBlock


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs(stage, monkeypatch):
    """Checked as far as Accelerate goes without `deepspeed` installed (the plugin and its DeepSpeed config)."""
    from accelerate.utils import DeepSpeedPlugin

    args, defaults, environ = launch_settings(CONFIGS / f"deepspeed_zero{stage}.yaml")
    assert defaults.distributed_type.name == "DEEPSPEED" and requested_engine(environ) == "DEEPSPEED"
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage
    zero = plugin.deepspeed_config["zero_optimization"]
    # ZeRO-3 partitions the parameters: the model folders need them gathered at save time.
    assert zero["stage3_gather_16bit_weights_on_model_save"] == (stage == 3)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"  # run_iml's batch size
    # No clipping, as the official recipe (left "auto", Accelerate would have DeepSpeed clip at 1.0).
    assert "gradient_clipping" not in plugin.deepspeed_config


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints written by any engine
# ------------------------------------------------------------------------------------------------------------------
# Two gloo processes shard the tiny model with FSDP2 (each SparseViTAttentionBlock a unit, as the configs say) and
# write its state dict as Accelerate's `save_state` does with SHARDED_STATE_DICT: torch.distributed.checkpoint,
# {"model": sharded state dict}, into `pytorch_model_fsdp_0`.
WRITE_FSDP2_SHARDED = """
import sys, torch, torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from safetensors.torch import save_file
from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization
from sparsevit_hf.modeling_sparsevit import SparseViTAttentionBlock

dist.init_process_group("gloo")
torch.manual_seed(0)
model = SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny"))
if dist.get_rank() == 0:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for module in model.modules():
    if isinstance(module, SparseViTAttentionBlock):
        fully_shard(module, mesh=mesh)
fully_shard(model, mesh=mesh)
state = get_model_state_dict(model)
assert any(type(v).__name__ == "DTensor" for v in state.values())
dcp.save({"model": state}, checkpoint_id=sys.argv[1] + "/pytorch_model_fsdp_0")
dist.destroy_process_group()
"""


def test_an_fsdp2_sharded_checkpoint_reads_back_and_becomes_a_model_folder(tmp_path):
    script, checkpoint, reference = tmp_path / "write.py", tmp_path / "checkpoint-4", tmp_path / "reference.safetensors"
    script.write_text(WRITE_FSDP2_SHARDED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(checkpoint), str(reference)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    shards = sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))
    assert len(shards) == 2 and not (checkpoint / "model.safetensors").exists()

    expected = load_file(reference)
    state = checkpoint_state_dict(checkpoint)
    assert state.keys() == expected.keys()
    for name in expected:
        assert torch.equal(state[name], expected[name]), name

    folder = tmp_path / "model"
    export_checkpoint_model(checkpoint, tiny_model(seed=5), folder, max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file() and (folder / "config.json").is_file()
    reloaded = SparseViTForManipulationLocalization.from_pretrained(folder).state_dict()
    for name in expected:
        assert torch.equal(reloaded[name], expected[name]), name


def test_ddp_and_fsdp_full_checkpoints_read_back_without_their_wrappers(tmp_path):
    model = tiny_model()
    expected = model.state_dict()
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    save_file({f"module.{k}": v.contiguous() for k, v in expected.items()}, ddp / "model.safetensors")
    full = tmp_path / "fsdp_full"
    full.mkdir()
    torch.save(expected, full / "pytorch_model_fsdp_0.bin")
    for checkpoint in (ddp, full):
        state = checkpoint_state_dict(checkpoint)
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected), checkpoint.name


def test_a_checkpoint_without_model_weights_is_an_error_naming_it(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(ValueError, match=r"checkpoint-2 holds no model weights"):
        checkpoint_state_dict(tmp_path / "checkpoint-2")
    deepspeed = tmp_path / "checkpoint-3" / "pytorch_model"
    deepspeed.mkdir(parents=True)
    try:
        import deepspeed as _  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"checkpoint-3 holds DeepSpeed ZeRO partitions"):
            checkpoint_state_dict(deepspeed.parent)


# ------------------------------------------------------------------------------------------------------------------
# The GPU check script
# ------------------------------------------------------------------------------------------------------------------
def import_gpu_distributed():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_distributed
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return gpu_distributed


def test_gpu_distributed_dry_run_resumes_exactly_and_reloads_the_best_model_on_two_cpu_processes(tmp_path):
    """`benchmarks/gpu_distributed.sh --dry-run`: the checks of every engine, with DDP on 2 gloo processes."""
    output = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = ["bash", str(REPO / "benchmarks" / "gpu_distributed.sh"), "--dry-run", "--work-dir",
               str(tmp_path / "runs"), "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (row,) = json.loads(output.read_text())["rows"]
    assert row["engine"] == "ddp-cpu" and row["distributed_type"] == "MULTI_CPU" and row["processes"] == 2
    assert row["checkpoint_files"] == ["model.safetensors"]
    assert row["best_reloaded"] and row["final_vs_best"] == 0.0 and row["checkpoint_vs_best"] == 0.0
    assert row["best_vs_last"] > 0.0  # the end of the run replaced the step-4 weights with the step-2 best model
    assert row["resume_vs_straight"] == 0.0 and row["resume_log_equal"] and row["ok"]
    assert "| ddp-cpu | MULTI_CPU | 2 |" in result.stdout


def test_gpu_distributed_without_a_gpu_says_how_to_check_it_and_skips_what_cannot_run(monkeypatch, capsys):
    gpu_distributed = import_gpu_distributed()
    monkeypatch.setattr(gpu_distributed.torch.cuda, "is_available", lambda: False)
    assert gpu_distributed.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert gpu_distributed.unavailable("cuda") == "needs CUDA"
    monkeypatch.setattr(gpu_distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed raises ImportError
    assert gpu_distributed.unavailable("deepspeed") == "deepspeed is not installed"
    assert gpu_distributed.unavailable("cuda") is None
    assert set(gpu_distributed.ENGINES) == {"ddp", "fsdp2-sharded", "fsdp2-full", "zero2", "zero3"}
    assert all((CONFIGS / config).is_file() for config, _ in gpu_distributed.ENGINES.values())
