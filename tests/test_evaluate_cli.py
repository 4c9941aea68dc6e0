"""Specification of `sparsevit-evaluate` (`sparsevit_hf.cli.evaluate`): a model on named test sets, next to the
baselines that ignore the image, with the same numbers as `iml_metrics` on the model's maps, the same in one and in
two processes, and clear errors for bad input."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save_model_folder
from PIL import Image

from sparsevit_hf.cli.evaluate import main
from sparsevit_hf.evaluation import BASELINE_FILE, ContentFreePredictor, iml_metrics
from sparsevit_hf.inference import Predictor, load_model

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = "synthetic:test:num_images=6,size=64"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model_dir(tiny_config, tmp_path):
    tiny_config.layer_scale_init_value = 0.3
    return save_model_folder(tmp_path / "model", tiny_config)


def write_folder(root: Path, sizes, corrupt: bool = False) -> Path:
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    rng = np.random.default_rng(1)
    for index, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "Tp" / f"im{index}.png")
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[height // 4 : height // 2, width // 3 : 2 * width // 3] = 255
        Image.fromarray(mask).save(root / "Gt" / f"im{index}.png")
    if corrupt:
        (root / "Tp" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "Gt" / "broken.png")
    return root


def run(*args) -> int:
    return main([str(a) for a in args])


def test_results_pictures_and_card_on_a_synthetic_set_and_the_shared_samples(model_dir, tmp_path, capsys, shared_dir):
    samples = shared_dir / "samples"
    out = tmp_path / "eval"
    code = run(model_dir, "--data", f"syn={SYNTHETIC}", f"samples={samples}", "--output-dir", out,
               "--robustness", "jpeg:70", "--baseline-data", "synthetic:train:num_images=20,size=64",
               "--update-card", model_dir, "--batch-size", "2")
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["package"]["name"] == "sparsevit-hf" and len(results["model"]["weights_sha256"]) == 64
    assert results["settings"]["mode"] == "resize" and results["settings"]["protocol"] == "exact"
    syn = results["sets"]["syn"]
    assert syn["metrics"]["num_images"] == 6 and "jpeg70" in syn["robustness"]
    assert syn["baselines"]["content_free"] and syn["per_kind"]
    assert syn["content_gap"] == pytest.approx(
        syn["metrics"]["pixel_f1"] - max(syn["baselines"]["content_free_f1"], syn["baselines"]["shuffled_f1"])
    )
    assert len(syn["threshold_curve"]["pixel_f1"]) == len(syn["threshold_curve"]["thresholds"])
    assert results["sets"]["samples"]["metrics"]["num_tampered"] == 3
    for name in ("results.md", "threshold_curves.png", "robustness.png", "examples_syn.png", "examples_samples.png"):
        assert (out / name).is_file(), name
    table = (out / "results.md").read_text()
    assert "| syn |" in table and "content gap" in table.lower()
    card = (model_dir / "README.md").read_text()
    assert "content_gap" in card and "pixel_f1" in card

    # The metrics are those of `iml_metrics` on the model's maps (the processor's resize, back to each image's size).
    model, processor = load_model(model_dir, device="cpu")
    maps, masks = [], []
    for image in sorted((samples / "Tp").iterdir()):
        mask_path = next((samples / "Gt").glob(f"{image.stem}*"))
        masks.append(np.asarray(Image.open(mask_path).convert("L")) > 127.5)
        maps.extend(Predictor(model, processor, "resize").predict([Image.open(image).convert("RGB")]))
    expected = iml_metrics(maps, masks)
    got = results["sets"]["samples"]["metrics"]
    for key, value in expected.items():  # results.json writes NaN as null
        assert (float("nan") if got[key] is None else got[key]) == pytest.approx(value, 1e-5, 1e-6, nan_ok=True), key


def test_the_baseline_saved_with_the_model_is_used(model_dir, tmp_path, capsys):
    masks = [np.pad(np.ones((20, 20), bool), 22) for _ in range(3)]
    from sparsevit_hf.evaluation import fit_content_free

    fit_content_free(masks).save(model_dir)
    assert (model_dir / BASELINE_FILE).is_file()
    out = tmp_path / "eval"
    code = run(model_dir, "--data", f"syn={SYNTHETIC}", "--output-dir", out, "--protocol", "imdlbenco")
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["content_free_predictor"]["name"] == ContentFreePredictor.load(model_dir).name
    # IMDLBenCo's rule: authentic images count in the pixel metrics.
    assert results["settings"]["protocol"] == "imdlbenco" and results["settings"]["include_authentic"] is True
    metrics = results["sets"]["syn"]["metrics"]
    assert metrics["num_pixel_auc_images"] == metrics["num_images"] == 6


@pytest.mark.parametrize("mode", ["native", "tiled"])
def test_native_and_tiled_modes_score_each_image_at_its_own_size(model_dir, tmp_path, mode, capsys):
    data = write_folder(tmp_path / "mixed", [(64, 96), (80, 64)])
    out = tmp_path / mode
    extra = ["--tile-size", "64", "--tile-overlap", "16"] if mode == "tiled" else []
    assert run(model_dir, "--data", f"mixed={data}", "--output-dir", out, "--mode", mode, *extra) == 0
    results = json.loads((out / "results.json").read_text())
    model, processor = load_model(model_dir, device="cpu")
    predictor = Predictor(model, processor, mode, **({"tile_size": 64, "tile_overlap": 16} if extra else {}))
    images = [Image.open(data / "Tp" / f"im{i}.png").convert("RGB") for i in range(2)]
    masks = [np.asarray(Image.open(data / "Gt" / f"im{i}.png")) > 127 for i in range(2)]
    expected = iml_metrics(predictor.predict(images), masks)
    assert results["sets"]["mixed"]["metrics"]["pixel_f1"] == pytest.approx(expected["pixel_f1"], abs=1e-6)
    assert results["settings"]["mode"] == mode


def test_bad_input_exits_2_naming_the_problem(model_dir, tmp_path, capsys, monkeypatch):
    import sparsevit_hf.inference as inference

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a bad data set")

    with monkeypatch.context() as patch:
        patch.setattr(inference, "load_model", no_model)
        assert run(model_dir, "--data", f"gone={tmp_path / 'missing'}", "--output-dir", tmp_path / "o") == 2
        assert "missing" in capsys.readouterr().err
        empty = tmp_path / "empty"
        (empty / "Tp").mkdir(parents=True)
        (empty / "Gt").mkdir()
        assert run(model_dir, "--data", f"empty={empty}", "--output-dir", tmp_path / "o") == 2
        assert "empty" in capsys.readouterr().err
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert run(model_dir, "--data", f"syn={SYNTHETIC}", "--output-dir", afile) == 2
    assert "not a folder" in capsys.readouterr().err

    broken = write_folder(tmp_path / "broken", [(64, 64), (64, 64)], corrupt=True)
    assert run(model_dir, "--data", f"b={broken}", "--output-dir", tmp_path / "b") == 2
    assert "broken.png" in capsys.readouterr().err
    out = tmp_path / "skipped"
    assert run(model_dir, "--data", f"b={broken}", "--output-dir", out, "--skip-corrupt") == 0
    entry = json.loads((out / "results.json").read_text())["sets"]["b"]
    assert entry["skipped_corrupt"] == 1 and entry["metrics"]["num_images"] == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_give_the_one_process_results(model_dir, tmp_path):
    """5 images over 2 processes with batches of 2: uneven shards, each image counted once."""
    data = "syn=synthetic:test:num_images=5,size=64"
    common = [str(model_dir), "--data", data, "--batch-size", "2", "--device", "cpu",
              "--baseline-data", "synthetic:train:num_images=10,size=64"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "sparsevit_hf.cli.evaluate"]
    result = subprocess.run([*launch, *common, "--output-dir", str(tmp_path / "two")], capture_output=True,
                            text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert run(*common, "--output-dir", tmp_path / "one") == 0
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert two["settings"]["num_processes"] == 2 and one["settings"]["num_processes"] == 1
    for key, value in one["sets"]["syn"]["metrics"].items():
        assert two["sets"]["syn"]["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    for kind, row in one["sets"]["syn"]["per_kind"].items():
        assert two["sets"]["syn"]["per_kind"][kind] == pytest.approx(row, nan_ok=True), kind
