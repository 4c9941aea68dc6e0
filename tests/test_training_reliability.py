"""`examples/run_iml.py` when the user gets it wrong or stops it: resuming with another run shape or model, an output
folder that is a file, a run folder given as a checkpoint, fine-tuning a folder with missing weights, a truncated
checkpoint, and Ctrl-C. Each ends with one clear message and a non-zero status, before anything is loaded."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file, save_file
from test_training import REPO, SCRIPT, TINY, load_script, tiny_args

from sparsevit_hf import training as T

# A run of 2 steps that leaves checkpoint-2 (complete) in its output folder.
TWO_STEPS = {"max_train_steps": 2, "checkpointing_steps": 2, "eval_every_epochs": 0}


def reset_accelerate():
    """Reset accelerate's process-wide singletons, so that runs in one process do not share them."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture
def run_iml():
    """The script as a module, with accelerate's state reset around each in-process run."""
    reset_accelerate()
    yield load_script()
    reset_accelerate()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The output folder of a finished tiny run with checkpoint-2 (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    reset_accelerate()
    assert load_script().main(tiny_args(output_dir=out, **TWO_STEPS)) == 0
    reset_accelerate()
    assert (out / "checkpoint-2" / T.COMPLETE_MARKER).is_file()
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails the test if a checkpoint's state is loaded."""
    from accelerate import Accelerator

    def refuse(self, *args, **kwargs):
        raise AssertionError("the checkpoint was loaded despite the mismatch")

    monkeypatch.setattr(Accelerator, "load_state", refuse)


def resume(out, **overrides) -> list[str]:
    options = {**TWO_STEPS, "max_train_steps": 4, **overrides}
    return tiny_args(output_dir=out, resume_from_checkpoint="latest", **options)


def error_messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]


def test_the_run_shape_is_stored_in_every_checkpoint(finished_run):
    shape = T.load_training_state(finished_run / "checkpoint-2").run_shape
    assert {key: shape[key] for key in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                        "num_processes", "seed", "image_size", "model")} == {
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_processes": 1, "seed": 0,
        "image_size": 64, "model": "preset tiny",
    }
    assert shape["model_config"]["hidden_sizes"] == [8, 16, 32, 64] and len(shape["model_config_digest"]) == 16


@pytest.mark.parametrize(
    "overrides, difference",
    [
        ({"per_device_train_batch_size": 2}, "per_device_train_batch_size 4 -> 2"),
        ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps 1 -> 2"),
        ({"seed": 1}, "seed 0 -> 1"),
    ],
)
def test_resuming_with_another_run_shape_is_refused_listing_what_differs(
    overrides, difference, run_iml, run_copy, nothing_loaded, caplog
):
    assert run_iml.main(resume(run_copy, **overrides)) == 2
    (message,) = error_messages(caplog)
    assert "checkpoint-2 was written by a run of another shape" in message and difference in message
    assert "--allow_resume_mismatch" in message


def test_resuming_with_another_process_count_is_refused(run_iml, run_copy, nothing_loaded, caplog):
    state_file = run_copy / "checkpoint-2" / T.TRAINING_STATE_NAME
    state = json.loads(state_file.read_text())
    state["run_shape"]["num_processes"] = 2  # as written by `accelerate launch --num_processes 2`
    state_file.write_text(json.dumps(state))
    assert run_iml.main(resume(run_copy)) == 2
    assert "num_processes 2 -> 1" in error_messages(caplog)[0]


def test_allow_resume_mismatch_resumes_anyway_with_a_warning(run_iml, run_copy, caplog):
    argv = resume(run_copy, per_device_train_batch_size=2) + ["--allow_resume_mismatch"]
    assert run_iml.main(argv) == 0
    assert any("per_device_train_batch_size 4 -> 2" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")
    assert json.loads((run_copy / "all_results.json").read_text())["train_steps"] == 4


def test_resuming_with_another_preset_names_both_before_anything_is_loaded(run_iml, run_copy, nothing_loaded, caplog):
    argv = resume(run_copy, model_preset="small", image_size=64)
    argv += ["--allow_resume_mismatch"]  # does not help: the weights cannot fit
    assert run_iml.main(argv) == 2
    (message,) = error_messages(caplog)
    assert "was written by preset tiny (hidden_sizes [8, 16, 32, 64]" in message
    assert "this run builds preset small (hidden_sizes [32, 64, 128, 256]" in message
    assert "size mismatch" not in caplog.text


def test_a_truncated_checkpoint_names_the_file(run_iml, run_copy, nothing_loaded, caplog):
    weights = run_copy / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert run_iml.main(resume(run_copy)) == 2
    assert f"{weights}: the weights file cannot be read" in error_messages(caplog)[0]


def test_fine_tuning_a_folder_with_missing_weights_is_refused(run_iml, run_copy, tmp_path, caplog):
    weights = load_file(run_copy / "model.safetensors")
    dropped = sorted(weights)[:5]
    save_file({k: v for k, v in weights.items() if k not in dropped}, run_copy / "model.safetensors",
              metadata={"format": "pt"})
    argv = [arg for arg in tiny_args(output_dir=tmp_path / "fine-tuned", **TWO_STEPS)]
    index = argv.index("--model_preset")
    del argv[index : index + 2]
    assert run_iml.main(argv + ["--model_name_or_path", str(run_copy)]) == 2
    (message,) = error_messages(caplog)
    assert "5 weights missing" in message and dropped[0] in message


def test_an_output_dir_that_is_a_file_is_an_argument_error(run_iml, tmp_path, capsys):
    (tmp_path / "results.txt").write_text("")
    for output_dir in (tmp_path / "results.txt", tmp_path / "results.txt" / "run"):
        with pytest.raises(SystemExit) as exit_info:
            run_iml.parse_args(["--output_dir", str(output_dir)])
        assert exit_info.value.code == 2
        assert f"{tmp_path / 'results.txt'} is a file, not a folder" in capsys.readouterr().err


def test_the_output_folder_given_as_a_checkpoint_suggests_latest(run_iml, finished_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_iml.parse_args(["--output_dir", str(finished_run), "--resume_from_checkpoint", str(finished_run)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not a checkpoint but a run's output folder; did you mean `latest`" in err
    assert str(finished_run / "checkpoint-2") in err and "interrupted" not in err


def test_an_interrupt_swallowed_during_shutdown_still_exits_130(run_iml, tmp_path, monkeypatch, capsys):
    """A KeyboardInterrupt raised where something swallows it (a destructor during DataLoader worker shutdown) must
    not turn into a successful exit."""

    def run_that_swallows(args, accelerator):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        return 0

    monkeypatch.setattr(run_iml, "run", run_that_swallows)
    assert run_iml.main(tiny_args(output_dir=tmp_path / "run")) == 130
    assert "interrupted; no complete checkpoint" in capsys.readouterr().err


def test_ctrl_c_prints_the_last_checkpoint_and_the_resume_command_and_exits_130(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [*TINY, "--output_dir", str(out), "--max_train_steps", "100000", "--checkpointing_steps", "1",
            "--eval_every_epochs", "0"]
    process = subprocess.Popen([sys.executable, str(SCRIPT), *argv], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while T.latest_checkpoint(out) is None:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    checkpoint = T.latest_checkpoint(out)
    assert last.startswith(f"run_iml: interrupted; the last complete checkpoint is {checkpoint}; resume with: python ")
    assert last.endswith(f"--output_dir {out} --max_train_steps 100000 --checkpointing_steps 1 --eval_every_epochs 0 "
                         "--resume_from_checkpoint latest")


def test_help_shows_the_cpu_try_out_form_that_accelerate_accepts():
    """`accelerate launch --multi_gpu --num_processes 2 --cpu` is refused by Accelerate (its `--cpu` excludes
    `--multi_gpu`); the working form puts the script's own `--cpu` after the script, as
    `test_training.py::test_two_cpu_processes_train_evaluate_and_checkpoint` runs it."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "accelerate launch --multi_gpu --num_processes N examples/run_iml.py --cpu" in help_text
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "accelerate launch --multi_gpu --num_processes 2 examples/run_iml.py --cpu" in readme


def test_the_resume_command_replaces_any_earlier_resume_argument(monkeypatch):
    from sparsevit_hf.training.interruption import resume_command

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for given in (["--resume_from_checkpoint", "out/checkpoint-2"], ["--resume_from_checkpoint=out/checkpoint-2"]):
        command = resume_command("run_iml.py", ["--output_dir", "out", *given, "--seed", "3"], num_processes=1)
        assert command == "python run_iml.py --output_dir out --seed 3 --resume_from_checkpoint latest"
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resume_command("run_iml.py", ["--cpu"], num_processes=2).startswith(
        "accelerate launch --multi_gpu --num_processes 2 run_iml.py --cpu"
    )
