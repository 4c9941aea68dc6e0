"""Training: `sparsevit_hf.training` (optimiser groups, schedule, seeding, checkpoints, model folders, Hub pushes)
and `examples/run_iml.py` end to end on tiny synthetic data (CPU, offline; the Hub is mocked at `HfApi`)."""

import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_without_package
from safetensors.torch import load_file

from sparsevit_hf import SparseViTConfig, SparseViTForManipulationLocalization, SparseViTImageProcessor
from sparsevit_hf import training as T
from sparsevit_hf.evaluation import collate_iml, parse_eval_specs, parse_robustness, resolve_metric_name
from sparsevit_hf.training import loop

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "run_iml.py"

# A run of a few seconds: tiny model, 64 px synthetic images, few of them.
TINY = [
    "--model_preset", "tiny",
    "--image_size", "64",
    "--train_data", "synthetic:train:num_images=12,size=64",
    "--eval_data", "syn=synthetic:test:num_images=5,size=64",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "2",
    "--dataloader_num_workers", "0",
    "--logging_steps", "1",
    "--seed", "0",
]


def tiny_args(**overrides) -> list[str]:
    """TINY with some options replaced (`train_data=...`); list-valued options extend, so they must not repeat."""
    argv = list(TINY)
    for key, value in overrides.items():
        flag = f"--{key}"
        if flag in argv:
            argv[argv.index(flag) + 1] = str(value)
        else:
            argv += [flag, str(value)]
    return argv


def load_script():
    spec = importlib.util.spec_from_file_location("run_iml", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_iml():
    """The script as a module, with accelerate's process-wide singletons reset around each in-process run."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        PartialState._reset_state()

    reset()
    yield load_script()
    reset()


@pytest.fixture
def hub_mock(monkeypatch, tmp_path):
    """Mock `HfApi.create_repo` / `HfApi.upload_folder`; uploads are copied (filtered as the Hub filters them) into
    `uploads/<n>`. `fail` holds the 1-based upload numbers that raise; `fail_all` makes every upload raise."""
    from huggingface_hub import HfApi, RepoUrl

    from sparsevit_hf import hub

    state = {"created": [], "uploads": [], "fail": set(), "fail_all": False, "root": tmp_path / "uploads"}

    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None, **kwargs):
        state["created"].append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        return RepoUrl(f"https://huggingface.co/{repo_id if '/' in repo_id else 'user/' + repo_id}")

    def upload_folder(
        self, *, repo_id, folder_path, commit_message=None, ignore_patterns=None, allow_patterns=None, **kwargs
    ):
        number = len(state["uploads"]) + 1
        target = state["root"] / str(number)
        files = hub.files_to_upload(folder_path, ignore_patterns or [])
        for name in files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(folder_path) / name, target / name)
        state["uploads"].append({"repo_id": repo_id, "message": commit_message, "files": files, "path": target})
        if state["fail_all"] or number in state["fail"]:
            raise ConnectionError(f"simulated network failure (upload {number})")
        return "https://huggingface.co/commit/abc"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return state


# ------------------------------------------------------------------------------------------------------------------
# Library parts
# ------------------------------------------------------------------------------------------------------------------
def test_parameter_groups_exclude_biases_norms_layer_scales_and_fusion_weights():
    model = SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny"))
    decay, no_decay = T.parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert len(no_decay_names) + len(decay_names) == len(names)
    for name in names.values():
        expected_no_decay = (
            name.endswith(".bias") or "norm" in name or "layer_scale" in name or name.endswith("fusion_weights")
        )
        assert (name in no_decay_names) == expected_no_decay, name
    assert "fusion_head.fusion_weights" in no_decay_names
    assert "sparsevit.stages.2.blocks.0.attention.qkv.weight" in decay_names


def test_the_model_declares_what_gets_no_weight_decay():
    """Biases and norm weights (tensors of at most one dimension) never decay; beyond them the model's own
    `_no_weight_decay_parameters` decides, matched against a parameter's own name."""
    assert set(SparseViTForManipulationLocalization._no_weight_decay_parameters) == {
        "layer_scale_1", "layer_scale_2", "fusion_weights"
    }

    class Scaled(torch.nn.Module):
        _no_weight_decay_parameters = ("scales",)

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 3)
            self.scales = torch.nn.Parameter(torch.ones(2, 3))
            self.table = torch.nn.Parameter(torch.ones(2, 3))

    model = Scaled()
    model.proj.weight.requires_grad_(False)  # frozen: in no group
    groups = T.parameter_groups(model, 0.1)
    assert [len(g["params"]) for g in groups] == [1, 2]
    assert groups[0]["params"][0] is model.table
    assert {id(p) for p in groups[1]["params"]} == {id(model.scales), id(model.proj.bias)}
    optimizer = T.create_optimizer(model, 1e-3, 0.1, betas=(0.8, 0.9), eps=1e-6)
    assert optimizer.defaults["betas"] == (0.8, 0.9) and [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0]


def test_schedule_is_linear_warm_up_then_half_cosine_to_min_lr():
    """transformers' `get_cosine_with_min_lr_schedule_with_warmup` is the official recipe's schedule."""
    base, min_lr, warmup, total = 2e-4, 5e-7, 10, 110
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = T.create_lr_scheduler(optimizer, min_lr, warmup_steps=warmup, total_steps=total)
    lrs = []
    for _ in range(total + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(base / 2) and lrs[10] == pytest.approx(base)
    for step in range(warmup, total + 1):
        cosine = min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert lrs[step] == pytest.approx(cosine, rel=1e-12, abs=1e-20)
    assert lrs[60] == pytest.approx(min_lr + (base - min_lr) / 2) and lrs[110] == pytest.approx(min_lr)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    # The warm-up is capped below the total; the state restores exactly (resume).
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = T.create_lr_scheduler(optimizer, min_lr, warmup_steps=500, total_steps=20)
    assert optimizer.param_groups[0]["lr"] == 0.0
    for _ in range(19):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(base)
    restored_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    restored = T.create_lr_scheduler(restored_optimizer, min_lr, warmup_steps=500, total_steps=20)
    restored.load_state_dict(scheduler.state_dict())
    restored_optimizer.load_state_dict(optimizer.state_dict())
    scheduler.step()
    restored.step()
    assert restored_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="total_steps must be positive"):
        T.create_lr_scheduler(optimizer, min_lr, 0, 0)


def test_sampler_and_augmentations_depend_only_on_seed_epoch_and_index():
    sampler = T.EpochSampler([10], seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert sorted(i for _, i in first) == list(range(10)) and {e for e, _ in first} == {1}
    assert list(sampler) == first
    sampler.set_epoch(2)
    assert [i for _, i in sampler] != [i for _, i in first]
    combined = T.EpochSampler([10, 3], per_dataset=4, seed=3)
    assert len(list(combined)) == 8 and sum(i >= 10 for _, i in combined) == 4

    from sparsevit_hf.data.synthetic import synthetic_dataset

    dataset = T.IMLTrainingDataset(
        synthetic_dataset("train", num_images=4, size=64), SparseViTImageProcessor(size={"height": 64, "width": 64}),
        64, seed=5,
    )
    a, b = dataset[(1, 2)], dataset[(1, 2)]
    assert a["pixel_values"].shape == (3, 64, 64) and a["labels"].shape == (64, 64)
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"], rtol=0, atol=0)
    assert not torch.equal(dataset[(2, 2)]["pixel_values"], a["pixel_values"])
    # Same items from DataLoader worker processes (the augmentation's automatic per-worker re-seed must not win).
    keys = [(1, 2), (1, 0), (3, 1), (1, 2)]
    loader = torch.utils.data.DataLoader(dataset, sampler=keys, batch_size=2, num_workers=2, collate_fn=collate_iml)
    from_workers = torch.cat([batch["pixel_values"] for batch in loader])
    torch.testing.assert_close(from_workers, torch.stack([dataset[k]["pixel_values"] for k in keys]), rtol=0, atol=0)


def test_checkpoint_folders_incomplete_ones_are_never_resumed(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / T.COMPLETE_MARKER).write_text("{}")
    (tmp_path / "checkpoint-8.tmp").mkdir()  # a save killed before its rename
    (tmp_path / "checkpoint-8.tmp" / T.COMPLETE_MARKER).write_text("{}")
    assert [p.name for p in T.list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    assert T.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert T.resolve_checkpoint("latest", tmp_path).name == "checkpoint-4"
    assert T.resolve_checkpoint("latest", tmp_path / "empty") is None
    with pytest.raises(ValueError, match="incomplete"):
        T.resolve_checkpoint(str(tmp_path / "checkpoint-6"), tmp_path)
    deleted = T.rotate_checkpoints(tmp_path, 1)
    assert [p.name for p in deleted] == ["checkpoint-2"] and T.latest_checkpoint(tmp_path).name == "checkpoint-4"


def test_save_checkpoint_is_atomic_and_rotates(tmp_path, run_iml):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    (tmp_path / "checkpoint-9.tmp").mkdir()  # debris of a killed save
    for step in (1, 2, 3):
        progress = T.TrainingProgress(completed_steps=step, epoch=0, batches_in_epoch=step)
        T.save_checkpoint(accelerator, tmp_path, progress, save_total_limit=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-2", "checkpoint-3"]
    state = T.load_training_state(tmp_path / "checkpoint-3")
    assert (state.completed_steps, state.batches_in_epoch) == (3, 3)
    assert (tmp_path / "checkpoint-3" / "model.safetensors").is_file()


def _model_folder(folder, **save_kwargs):
    model = SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny"))
    model.save_pretrained(folder, **save_kwargs)
    SparseViTImageProcessor().save_pretrained(folder)
    return model


def test_hub_sync_pushes_in_the_background_survives_failures_and_reports_the_final_one(hub_mock, tmp_path):
    folder = tmp_path / "out"
    _model_folder(folder)
    (folder / "checkpoint-1").mkdir()
    (folder / "checkpoint-1" / "optimizer.bin").write_text("x")
    (folder / "best_model").mkdir()
    (folder / "best_model" / "model.safetensors").write_text("w")
    (folder / "log.jsonl").write_text("{}\n")
    hub_mock["fail"] = {1, 3}

    sync = T.HubSync.create("sparsevit-test", private=True)
    assert sync.repo_id == "user/sparsevit-test" and hub_mock["created"][0]["private"] is True
    first = sync.push(folder, "first")
    first.exception()  # the background upload ran (and failed); training would have gone on
    (folder / "config.json").touch()  # training rewrites the folder meanwhile: the next push takes a new snapshot
    sync.push(folder, "second")
    error = sync.finish(folder, "final")
    assert isinstance(error, ConnectionError)
    assert [u["message"] for u in hub_mock["uploads"]] == ["first", "second", "final"]
    assert len(sync.failures) == 2 and sync.successes == 1
    for upload in hub_mock["uploads"]:
        assert "model.safetensors" in upload["files"] and "README.md" in upload["files"]
        assert not any(f.startswith(("checkpoint-", "best_model", "log.jsonl")) for f in upload["files"])


def test_a_push_waiting_for_its_turn_is_replaced_by_the_newer_one(hub_mock, tmp_path, monkeypatch):
    import threading

    folder = tmp_path / "out"
    _model_folder(folder)
    release = threading.Event()
    upload = T.HubSync._upload

    def slow_upload(self, snapshot, message):
        release.wait(30)
        upload(self, snapshot, message)

    monkeypatch.setattr(T.HubSync, "_upload", slow_upload)
    sync = T.HubSync("me/model", staging_dir=tmp_path / "staging")
    (tmp_path / "staging").mkdir()
    running = sync.push(folder, "one")  # the worker takes it and blocks
    queued = sync.push(folder, "two")
    sync.push(folder, "three")  # "two" never started: dropped, its snapshot removed
    assert queued.cancelled()
    release.set()
    sync.wait()
    assert running.done() and [u["message"] for u in hub_mock["uploads"]] == ["one", "three"]
    assert not any((tmp_path / "staging").iterdir())  # every snapshot removed


def test_push_checkpoints_adds_a_second_commit_with_checkpoints_and_logs(hub_mock, tmp_path):
    folder = tmp_path / "out"
    _model_folder(folder)
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "optimizer.bin").write_text("x")
    (folder / "log.jsonl").write_text("{}\n")
    sync = T.HubSync("me/model", push_checkpoints=True)
    assert sync.finish(folder, "End of training") is None
    model_commit, checkpoint_commit = hub_mock["uploads"]
    assert not any(f.startswith("checkpoint-") for f in model_commit["files"])
    assert checkpoint_commit["message"] == "End of training (checkpoints, logs)"
    assert "checkpoint-2/optimizer.bin" in checkpoint_commit["files"] and "log.jsonl" in checkpoint_commit["files"]


def test_the_best_model_reloads_from_a_sharded_save(tmp_path, run_iml):
    """`load_best_model` reads the folder as `from_pretrained` does, so shards with their index load (a folder
    without `model.safetensors` broke the reload)."""
    from accelerate import Accelerator

    best = tmp_path / "best_model"
    saved = _model_folder(best, max_shard_size="100KB")
    assert not (best / "model.safetensors").exists() and (best / "model.safetensors.index.json").is_file()
    (best / "eval_results.json").write_text(json.dumps({"step": 3, "results": {"syn": {"pixel_f1": 0.5}}}))
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny")))
    assert T.load_best_model(accelerator, model, best)["results"] == {"syn": {"pixel_f1": 0.5}}
    expected, got = saved.state_dict(), accelerator.unwrap_model(model).state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_json_files_are_written_atomically_with_the_usual_permissions(tmp_path):
    """Importing the training package changes no process-wide state (it used to call `os.umask` twice, racing the
    push thread), and the files it writes still get the usual 0666 less the umask."""
    script = f"""
import os, sys, stat
def no_umask(mask):
    raise AssertionError("os.umask called")
os.umask(0o027)
os.umask = no_umask
import sparsevit_hf.training as T
T.write_json_atomic({str(tmp_path / "a.json")!r}, {{"x": 1}})
T.write_history({str(tmp_path / "log.jsonl")!r}, [{{"step": 1}}, {{"step": 2}}])
print(oct(stat.S_IMODE(os.stat({str(tmp_path / "a.json")!r}).st_mode)))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0o640"
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log == [{"step": 1}, {"step": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "log.jsonl"]  # no temporary file left


def test_option_parsers():
    assert [p.name for p in parse_robustness(["jpeg:50,70", "blur:3", "noise:5.5"])] == [
        "jpeg50", "jpeg70", "blur3", "noise5.5"
    ]
    for bad in ("jpeg:101", "blur:4", "noise:-1", "sharpen:3", "jpeg", "jpeg:x"):
        with pytest.raises(ValueError):
            parse_robustness([bad])
    assert parse_eval_specs(["a=synthetic:test", "b=/data/x"]) == {"a": "synthetic:test", "b": "/data/x"}
    for bad in (["synthetic:test"], ["=x"], ["a=x", "a=y"], ["a b=x"]):
        with pytest.raises(ValueError):
            parse_eval_specs(bad)
    assert resolve_metric_name("pixel_f1", ["syn"]) == "syn/pixel_f1"
    assert resolve_metric_name("a/loss", ["a", "b"]) == "a/loss"
    with pytest.raises(ValueError, match="unknown metric"):
        resolve_metric_name("a/f2", ["a"])
    with pytest.raises(ValueError, match="several sets"):
        resolve_metric_name("pixel_f1", ["a", "b"])
    assert T.is_better(0.5, None, True) and not T.is_better(float("nan"), 0.1, True) and T.is_better(0.1, 0.2, False)


# ------------------------------------------------------------------------------------------------------------------
# The script: argument checks
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_data", "/no/such/dataset"], "no such file or folder"),
        (["--eval_data", "/no/such/test.json"], "give each evaluation set a name"),
        (["--eval_data", "casia=/no/such/CASIAv1"], "no such file or folder"),
        (["--metric_for_best_model", "synthetic/pixel_f2"], "unknown metric 'pixel_f2'"),
        (["--metric_for_best_model", "casia/pixel_f1"], "unknown evaluation set 'casia'"),
        (["--per_device_train_batch_size", "0"], "must be positive"),
        (["--gradient_accumulation_steps", "-1"], "must be positive"),
        (["--model_preset", "huge"], "invalid choice: 'huge'"),
        (["--image_size", "100"], "multiple of 32"),
        (["--robustness", "jpeg:500"], "JPEG quality"),
        (["--checkpointing_steps", "often"], "positive integer or 'epoch'"),
        (["--uniformer_checkpoint", "/no/such/uniformer.pth"], "no such file"),
        (["--official_reinit"], "only applies together with --uniformer_checkpoint"),
        (["--hub_model_id", "me/model"], "need --push_to_hub"),
        (["--synthetic_options", '{"no_such_option": 1}'], "--synthetic_options"),
        (["--min_lr", "1", "--learning_rate", "0.1"], "must not exceed"),
        (["--train_data", "my data/CASIA"], "no such file or folder"),  # cannot be a Hub id: a missing path
        (["--model_name_or_path", "outputs/run/final"], "no such folder"),
    ],
)
def test_bad_arguments_are_rejected_before_any_work(argv, message, run_iml, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started despite bad arguments")

    monkeypatch.setattr(run_iml, "make_accelerator", no_work)
    monkeypatch.setattr(run_iml, "load_data", no_work)
    with pytest.raises(SystemExit) as exit_info:
        run_iml.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "failure",
    [None, ValueError("unreadable data"), KeyboardInterrupt()],
    ids=["finished", "error-return", "interrupted"],
)
def test_every_exit_ends_the_accelerator(failure, run_iml, monkeypatch, tmp_path):
    """`end_training` tears down the process group; a gloo group left to interpreter shutdown can abort the
    process, so the script ends it after a normal run, an early error return and an exception alike."""
    from accelerate import Accelerator

    ended = []
    monkeypatch.setattr(Accelerator, "end_training", lambda self: ended.append(self))
    if failure is not None:
        def load_fails(args):
            raise failure

        monkeypatch.setattr(run_iml, "load_data", load_fails)
        argv = tiny_args(output_dir=tmp_path)
    else:
        argv = tiny_args(output_dir=tmp_path, max_train_steps=1)
    expected = {None: 0, ValueError: 2, KeyboardInterrupt: 130}[failure if failure is None else type(failure)]
    assert run_iml.main(argv) == expected
    assert len(ended) == 1


def test_help_needs_no_torch():
    """`--help` answers at once: the script imports only the standard library before parsing."""
    script = f"""
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sparsevit_hf"):
            raise ImportError(name + " imported by --help")
sys.meta_path.insert(0, NoTorch())
sys.argv = ["run_iml.py", "--help"]
exec(compile(open({str(SCRIPT)!r}).read(), "run_iml.py", "exec"), {{"__name__": "__main__"}})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--model_preset {published,small,tiny}" in result.stdout and "--push_checkpoints" in result.stdout


def test_the_script_defaults_are_the_library_defaults(run_iml):
    """The command line's defaults and `TrainingArguments`' are the same recipe (the script repeats them so that
    `--help` needs no torch)."""
    import dataclasses

    from sparsevit_hf.configuration_sparsevit import PRESETS

    assert run_iml.MODEL_PRESET_NAMES == tuple(PRESETS)
    parsed = T.TrainingArguments.from_namespace(run_iml.parse_args(["--train_data", "synthetic:train"]))
    for field in dataclasses.fields(T.TrainingArguments):
        if field.name not in ("train_data", "eval_sets"):
            assert getattr(parsed, field.name) == getattr(T.TrainingArguments(), field.name), field.name


def test_an_epoch_smaller_than_one_batch_is_an_error(run_iml, tmp_path, caplog):
    assert run_iml.main(tiny_args(output_dir=tmp_path, max_train_samples=3)) == 2
    assert any("an epoch holds 3 samples, fewer than one batch of 4" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "model.safetensors").exists()


def test_resuming_from_an_incomplete_checkpoint_is_rejected(run_iml, tmp_path, capsys):
    (tmp_path / "checkpoint-4").mkdir()
    with pytest.raises(SystemExit):
        run_iml.main(["--output_dir", str(tmp_path), "--resume_from_checkpoint", str(tmp_path / "checkpoint-4")])
    assert "incomplete" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# The script: end to end
# ------------------------------------------------------------------------------------------------------------------
def test_run_writes_a_complete_model_folder_and_survives_a_failed_push(run_iml, hub_mock, tmp_path, caplog):
    out = tmp_path / "run"
    hub_mock["fail"] = {1}  # the first (background) push fails
    code = run_iml.main(
        TINY + [
            "--output_dir", str(out), "--num_train_epochs", "2", "--checkpointing_steps", "epoch",
            "--robustness", "jpeg:70", "--push_to_hub", "--hub_model_id", "me/sparsevit-test", "--hub_private_repo",
        ]
    )
    assert code == 0
    # Output folder: weights, config with auto_map, processor, code, card, results, log, checkpoints.
    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors", "config.json", "preprocessor_config.json", "configuration_sparsevit.py",
        "modeling_sparsevit.py", "attention_sparsevit.py", "image_processing_sparsevit.py", "README.md",
        "all_results.json", "log.jsonl",
        "example.jpg", "best_model", "checkpoint-3", "checkpoint-6",
    } <= names
    config = json.loads((out / "config.json").read_text())
    auto_model = config["auto_map"]["AutoModelForSemanticSegmentation"]
    assert auto_model == "modeling_sparsevit.SparseViTForManipulationLocalization"
    assert json.loads((out / "preprocessor_config.json").read_text())["size"] == {"height": 64, "width": 64}
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 6 and results["num_processes"] == 1
    assert results["syn/num_images"] == 5 and 0.0 <= results["syn/pixel_f1"] <= 1.0
    assert "syn@jpeg70/pixel_f1" in results and results["metric_for_best_model"] == "syn/pixel_f1"
    assert results["baselines"]["syn"]["all_authentic"]["pixel_f1"] == 0.0
    assert 0.0 < results["baselines"]["syn"]["all_manipulated"]["pixel_f1"] < 1.0
    # Next to every F1, what ignoring the image scores: the content-free predictor fitted on the training masks
    # (saved with the model for sparsevit-evaluate), the shuffled pairing and the gap, per manipulation kind too.
    from sparsevit_hf.evaluation import BASELINE_FILE, ContentFreePredictor, fit_content_free_on_dataset
    from sparsevit_hf.evaluation import load_evaluation_sets as load_sets

    saved = ContentFreePredictor.load(out)
    assert (out / BASELINE_FILE).is_file() and results["content_free_predictor"]["name"] == saved.name
    train = load_sets({"t": "synthetic:train:num_images=12,size=64"})["t"]
    assert saved.name == fit_content_free_on_dataset(train).name
    assert results["syn/content_gap"] == pytest.approx(
        results["syn/pixel_f1"] - max(results["syn/content_free_f1"], results["syn/shuffled_f1"])
    )
    assert any(key.startswith("syn/per_kind/") and key.endswith("/content_gap") for key in results)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all("content_gap" in e["eval"]["syn"] for e in log if "eval" in e)
    assert [e["step"] for e in log if "train_loss" in e] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in log if "eval" in e] == [3, 6]
    assert (out / "checkpoint-6" / T.COMPLETE_MARKER).is_file()

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-segmentation"
    evaluated = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert evaluated[("syn", "pixel_f1")] == pytest.approx(results["syn/pixel_f1"])
    assert ("syn@jpeg70", "pixel_f1") in evaluated
    assert evaluated[("syn", "content_gap")] == pytest.approx(results["syn/content_gap"])
    assert "content gap" in card.text
    assert "tiny" in card.text and "64 x 64" in card.text

    # Hub: repository created before training; a push per evaluation and a final one; the failure was survived.
    assert hub_mock["created"][0] == {"repo_id": "me/sparsevit-test", "private": True, "exist_ok": True}
    messages = [u["message"] for u in hub_mock["uploads"]]
    assert len(messages) == 3 and messages[-1] == "End of training" and "step 3" in messages[0]
    assert any("Push to the Hub failed" in r.getMessage() for r in caplog.records)
    final = hub_mock["uploads"][-1]
    assert not any(f.startswith(("checkpoint-", "best_model", "log.jsonl", "runs/")) for f in final["files"])
    assert {"model.safetensors", "README.md", "modeling_sparsevit.py", "example.jpg"} <= set(final["files"])

    # What was uploaded loads with trust_remote_code where the package is not installed.
    script = f"""
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
        folder = {str(final['path'])!r}
        model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        from PIL import Image
        inputs = processor(Image.open(folder + "/example.jpg"), return_tensors="pt")
        with torch.no_grad():
            print(type(model).__module__, tuple(model(**inputs).logits.shape))
    """
    stdout = run_without_package(script, tmp_path)
    module, shape = stdout.split(maxsplit=1)
    assert not module.startswith("sparsevit_hf") and shape.strip() == "(1, 1, 4, 4)"


def test_a_failed_final_push_exits_non_zero(run_iml, hub_mock, tmp_path, caplog):
    hub_mock["fail_all"] = True
    out = tmp_path / "run"
    code = run_iml.main(
        TINY + [
            "--output_dir", str(out), "--max_train_steps", "2", "--eval_every_epochs", "0", "--push_to_hub",
            "--with_tracking", "--report_to", "tensorboard",
        ]
    )
    assert code == 1
    assert (out / "model.safetensors").is_file()  # the model is kept locally
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logs through accelerate's tracker
    assert any("final push to the Hub" in r.getMessage() and "hf upload" in r.getMessage() for r in caplog.records)
    assert hub_mock["created"][0]["repo_id"] == "run"


def test_load_best_model_at_end_restores_a_sharded_best_model(run_iml, tmp_path, monkeypatch):
    """With --load_best_model_at_end the run ends with the best evaluated weights, also when the best model was
    saved in shards (as large or FSDP models are): it used to read `model.safetensors` only."""
    save_best_model = loop.save_best_model
    monkeypatch.setattr(
        loop, "save_best_model", lambda *args, **kwargs: save_best_model(*args, max_shard_size="100KB", **kwargs)
    )
    monkeypatch.setattr(loop, "is_better", lambda value, best, greater: best is None)  # the first evaluation wins
    out = tmp_path / "run"
    argv = TINY + ["--output_dir", str(out), "--num_train_epochs", "2", "--load_best_model_at_end"]
    assert run_iml.main(argv) == 0
    best = out / "best_model"
    assert (best / "model.safetensors.index.json").is_file() and not (best / "model.safetensors").exists()
    results = json.loads((out / "all_results.json").read_text())
    assert results["weights"] == "best" and results["best_step"] == 3 and results["train_steps"] == 6
    best_results = json.loads((best / "eval_results.json").read_text())["results"]
    assert results["syn/pixel_f1"] == best_results["syn"]["pixel_f1"]
    final = load_file(out / "model.safetensors")
    reloaded = SparseViTForManipulationLocalization.from_pretrained(best).state_dict()
    assert final.keys() <= reloaded.keys()
    for name, tensor in final.items():
        assert torch.equal(tensor, reloaded[name]), name


class Preempted(Exception):
    pass


def test_resume_continues_exactly(run_iml, tmp_path, monkeypatch):
    """N steps straight == N/2 steps, a crash, and a resume to N: same weights, same logged losses and metrics."""
    argv = tiny_args(
        train_data="synthetic:train:num_images=16,size=64", per_device_train_batch_size=2,
        gradient_accumulation_steps=2, drop_path_rate=0.2, dataloader_num_workers=1, num_train_epochs=2,
        learning_rate=1e-3, warmup_steps=2, checkpointing_steps=3,
    )
    straight = tmp_path / "straight"
    assert run_iml.main(argv + ["--output_dir", str(straight)]) == 0

    resumed = tmp_path / "resumed"
    save_checkpoint = loop.save_checkpoint

    def save_then_crash(accelerator, output_dir, progress, *args, **kwargs):
        path = save_checkpoint(accelerator, output_dir, progress, *args, **kwargs)
        if progress.completed_steps == 3:
            raise Preempted
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(Preempted):
        run_iml.main(argv + ["--output_dir", str(resumed)])
    monkeypatch.setattr(loop, "save_checkpoint", save_checkpoint)
    assert not (resumed / "model.safetensors").exists()
    (resumed / "checkpoint-5.tmp").mkdir()  # a later save that was killed half-way: ignored by `latest`

    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    assert run_iml.main(argv + ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]) == 0

    expected, got = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    log_a = (straight / "log.jsonl").read_text().splitlines()
    log_b = (resumed / "log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in log_b] == [json.loads(line) for line in log_a]
    # The straight run really moved: the weights are not the initial ones.
    initial = SparseViTForManipulationLocalization(SparseViTConfig.from_preset("tiny", drop_path_rate=0.2)).state_dict()
    assert not torch.equal(initial["fusion_head.classifier.weight"], expected["fusion_head.classifier.weight"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_train_evaluate_and_checkpoint(tmp_path):
    """`accelerate launch --config_file examples/accelerate_configs/ddp_cpu_2proc.yaml ... --cpu`: two gloo
    processes; each evaluation image is counted exactly once although 5 images do not split evenly into 2 processes
    x batches of 2, and DDP finds every gradient in its parameter's layout (no "Grad strides do not match bucket
    view strides" warning)."""
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "examples" / "accelerate_configs" / "ddp_cpu_2proc.yaml"),
        "--main_process_port", str(_free_port()), str(SCRIPT),
        *TINY, "--cpu", "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "2",
    ]
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "2 process(es), distributed type DistributedType.MULTI_CPU" in result.stderr
    # DDP copies a gradient whose strides differ from its parameter's every step, and warns once per process.
    assert "Grad strides do not match bucket view strides" not in result.stderr
    results = json.loads((out / "all_results.json").read_text())
    assert results["num_processes"] == 2 and results["train_steps"] == 2
    assert results["syn/num_images"] == 5
    checkpoint = out / "checkpoint-2"
    assert {"random_states_0.pkl", "random_states_1.pkl", T.COMPLETE_MARKER} <= {p.name for p in checkpoint.iterdir()}
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
