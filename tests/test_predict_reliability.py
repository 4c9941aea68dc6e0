"""`sparsevit-predict` on hostile file systems: link loops, control characters in names, FIFOs, output folders that
cannot be written or that are the input, and two runs into one output folder. Each problem is one clear message;
a problem with one entry never stops the others."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_model_folder
from PIL import Image

from sparsevit_hf import SparseViTConfig
from sparsevit_hf.cli import predict
from sparsevit_hf.cli.predict import collect_inputs, main

pytestmark = pytest.mark.usefixtures("one_thread")
SRC = Path(predict.__file__).resolve().parents[2]


@pytest.fixture
def model_dir(tmp_path):
    return save_model_folder(tmp_path / "model", SparseViTConfig.from_preset("tiny"))


def save_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def run_cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "sparsevit_hf.cli.predict", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, **kwargs)


def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the output folder cannot be written")

    monkeypatch.setattr(predict, "load_model", refuse)


def test_a_symlink_loop_is_skipped_and_reported_and_the_rest_processed(model_dir, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    save_image(inputs / "good.png")
    os.symlink("b.jpg", inputs / "a.jpg")
    os.symlink("a.jpg", inputs / "b.jpg")
    os.symlink("missing.jpg", inputs / "broken.jpg")
    out = tmp_path / "out"
    assert main([str(model_dir), str(inputs), str(inputs / "a.jpg"), "-o", str(out), "--quiet"]) == 1
    assert [Path(r["file"]).name for r in records(out)] == ["good.png"]
    err = capsys.readouterr().err
    assert f"{inputs / 'a.jpg'}: a symbolic link loop" in err and f"{inputs / 'b.jpg'}: a symbolic link loop" in err
    assert f"{inputs / 'broken.jpg'}: a broken symbolic link" in err
    assert "no such file" not in err  # the loop named as an argument is a loop, not a missing file


def test_a_newline_in_a_file_name_neither_aborts_the_run_nor_loses_records(model_dir, tmp_path):
    inputs = tmp_path / "inputs"
    for index, name in enumerate(["a.png", "bad\nname.png", "z.png"]):
        save_image(inputs / name, index)
    out = tmp_path / "out"
    assert main([str(model_dir), str(inputs), "-o", str(out), "--quiet"]) == 0
    assert [Path(r["file"]).name for r in records(out)] == ["a.png", "bad\nname.png", "z.png"]
    assert (out / "bad\nname.png.overlay.png").is_file()


def test_any_failure_while_drawing_one_image_is_contained_to_that_image(model_dir, tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "inputs"
    for index, name in enumerate(["a.png", "b.png", "c.png"]):
        save_image(inputs / name, index)
    original = predict.overlay_image

    def fails_on_b(image, probability, threshold, title=None):
        if title == "b.png":
            raise ValueError("can't measure length of multiline text")
        return original(image, probability, threshold, title=title)

    monkeypatch.setattr(predict, "overlay_image", fails_on_b)
    out = tmp_path / "out"
    assert main([str(model_dir), str(inputs), "-o", str(out), "--quiet"]) == 1
    assert [Path(r["file"]).name for r in records(out)] == ["a.png", "c.png"]
    assert "b.png: cannot draw the outputs (ValueError: can't measure length" in capsys.readouterr().err


def test_a_fifo_is_skipped_and_counted_without_being_opened(model_dir, tmp_path):
    inputs = tmp_path / "inputs"
    save_image(inputs / "good.png")
    os.mkfifo(inputs / "pipe.png")  # opening it would block until a writer comes, i.e. forever
    found = collect_inputs([str(inputs)])
    assert [path.name for path in found.files] == ["good.png"]
    assert [(Path(f.path).name, f.reason) for f in found.failures] == [
        ("pipe.png", "a FIFO (named pipe), not a regular file")
    ]
    out = tmp_path / "out"
    try:
        result = run_cli(model_dir, inputs, "-o", out, "--quiet", timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("sparsevit-predict blocked on the FIFO")
    assert result.returncode == 1, result.stderr
    assert "pipe.png: a FIFO (named pipe), not a regular file" in result.stderr
    assert "1 processed, 1 failed" in result.stderr


def unwritable_folder(tmp_path) -> Path:
    """A real directory this process cannot create files in: read-only permissions, or, as root (which ignores
    them), a sysfs folder, where nobody can create files. Skips when neither is available."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    sysfs = Path("/sys/kernel")
    if sysfs.is_dir():
        try:
            tempfile.TemporaryFile(dir=sysfs).close()
        except OSError:
            return sysfs
    pytest.skip("running as root without sysfs: no read-only directory can be made (no mount permission)")


def test_an_unwritable_output_folder_is_one_line_and_exit_2_before_any_work(model_dir, tmp_path, monkeypatch, capsys):
    save_image(tmp_path / "image.png")
    no_model_loading(monkeypatch)
    read_only = unwritable_folder(tmp_path)
    try:
        for out in (read_only, read_only / "new-subfolder"):
            assert main([str(model_dir), str(tmp_path / "image.png"), "-o", str(out), "--quiet"]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"cannot write into {read_only}" in err
    finally:
        if read_only.is_relative_to(tmp_path):
            read_only.chmod(0o755)


def test_an_output_folder_under_a_file_is_one_line_and_exit_2_before_any_work(model_dir, tmp_path, monkeypatch,
                                                                               capsys):
    save_image(tmp_path / "image.png")
    (tmp_path / "a-file").write_text("")
    no_model_loading(monkeypatch)
    assert main([str(model_dir), str(tmp_path / "image.png"), "-o", str(tmp_path / "a-file" / "out")]) == 2
    assert f"{tmp_path / 'a-file'} exists and is not a folder" in capsys.readouterr().err


def test_an_output_folder_equal_to_the_input_folder_is_explained(model_dir, tmp_path, monkeypatch, capsys):
    save_image(tmp_path / "photos" / "image.png")
    no_model_loading(monkeypatch)
    assert main([str(model_dir), str(tmp_path / "photos"), "-o", str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err
    assert "is the --output-dir" in err and "no image files found" not in err


# A real `sparsevit-predict` run that stops before reading `b.png` until the file `go` appears (after writing
# `ready`): a run caught in the middle of its work.
PAUSED_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sparsevit_hf.cli import predict

    signals = Path(sys.argv[1])
    load_image = predict.load_image

    def paused(path):
        if path.name == "b.png":
            (signals / "ready").write_text("")
            while not (signals / "go").exists():
                time.sleep(0.05)
        return load_image(path)

    predict.load_image = paused
    sys.exit(predict.main(sys.argv[2:]))
    """
)


def test_a_second_run_into_a_busy_output_folder_is_refused_and_no_record_is_lost(model_dir, tmp_path):
    inputs = tmp_path / "inputs"
    for index, name in enumerate(["a.png", "b.png", "c.png", "d.png"]):
        save_image(inputs / name, index)
    out, signals = tmp_path / "out", tmp_path / "signals"
    signals.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(signals), str(model_dir), str(inputs), "-o", str(out), "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (signals / "ready").exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run never reached b.png"
            time.sleep(0.1)
        second = run_cli(model_dir, inputs, "-o", out, "--quiet")
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"sparsevit-predict: error: another sparsevit-predict run is writing into {out}"
        )
        assert "Traceback" not in second.stderr
    finally:
        (signals / "go").write_text("")
        _, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err
    assert [Path(r["file"]).name for r in records(out)] == ["a.png", "b.png", "c.png", "d.png"]
    # Once the first run is over, the folder is free again.
    assert run_cli(model_dir, inputs, "-o", out, "--quiet").returncode == 0
    assert len(records(out)) == 4
