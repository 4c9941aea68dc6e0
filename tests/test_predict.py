"""The `sparsevit-predict` command line, end to end on tiny random models."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_model_folder
from PIL import Image, ImageOps

from sparsevit_hf.cli.predict import collect_inputs, main, output_names

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model_dir(tiny_config, tmp_path):
    tiny_config.layer_scale_init_value = 0.3
    return save_model_folder(tmp_path / "model", tiny_config)


def rgb_array(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_inputs(root: Path) -> dict[str, tuple[int, int] | None]:
    """A folder of awkward inputs; returns file -> expected (width, height), or None if it must fail."""
    expected = {}
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(rgb_array(48, 64, 1)).save(root / "a" / "photo.jpg", quality=92)
    expected["a/photo.jpg"] = (64, 48)
    Image.fromarray(rgb_array(40, 56, 2)).save(root / "b" / "photo.jpg", quality=92)  # same stem, other folder
    expected["b/photo.jpg"] = (56, 40)
    Image.fromarray(rgb_array(40, 56, 3)).save(root / "b" / "photo.png")  # same stem, same folder
    expected["b/photo.png"] = (56, 40)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb_array(40, 70, 4)).save(root / "rotated.jpg", exif=exif)  # stored 70 x 40, shown 40 x 70
    expected["rotated.jpg"] = (40, 70)
    Image.fromarray(rgb_array(36, 44, 5)).convert("CMYK").save(root / "cmyk.jpg")
    expected["cmyk.jpg"] = (44, 36)
    Image.fromarray(rgb_array(50, 40, 6)[..., 0].astype(np.uint16) * 257).save(root / "gray16.png")
    expected["gray16.png"] = (40, 50)
    Image.fromarray(rgb_array(33, 65, 7)).convert("RGBA").save(root / "rgba.png")
    expected["rgba.png"] = (65, 33)
    Image.fromarray(rgb_array(40, 40, 8)).convert("P").save(root / "palette.gif")
    expected["palette.gif"] = (40, 40)
    Image.fromarray(rgb_array(1, 1, 9)).save(root / "pixel.png")
    expected["pixel.png"] = None
    Image.fromarray(rgb_array(80, 80, 10)).save(root / "corrupt.jpg")
    (root / "corrupt.jpg").write_bytes((root / "corrupt.jpg").read_bytes()[:300])
    expected["corrupt.jpg"] = None
    (root / "text.png").write_text("not an image\n")  # an image extension, text inside
    expected["text.png"] = None
    (root / "notes.txt").write_text("folder scans skip files without an image extension\n")
    (root / ".hidden.png").write_text("hidden files are skipped\n")
    return expected


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_on_a_folder_of_awkward_inputs(model_dir, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    expected = make_inputs(inputs)
    out = tmp_path / "out"

    status = main([str(model_dir), str(inputs), "--output-dir", str(out), "--threshold", "0.5"])

    assert status == 1  # some inputs failed
    stderr = capsys.readouterr().err
    good = {name: size for name, size in expected.items() if size is not None}
    bad = sorted(name for name, size in expected.items() if size is None)
    assert f"{len(good)} processed, {len(bad)} failed" in stderr
    for name in bad:
        assert str(inputs / name) in stderr
    assert "32 x 32" in stderr  # the 1-pixel image says why

    records = {
        Path(record["file"]).relative_to(inputs).as_posix(): record for record in read_jsonl(out / "predictions.jsonl")
    }
    assert set(records) == set(good)
    for name, (width, height) in good.items():
        record = records[name]
        assert (record["width"], record["height"]) == (width, height)
        assert record["mode"] == "resize" and record["threshold"] == 0.5
        assert 0.0 <= record["score"] <= 1.0 and 0.0 <= record["manipulated_fraction"] <= 1.0
        outputs = {kind: out / path for kind, path in record["outputs"].items()}
        assert outputs["mask"] == out / f"{name}.mask.png"  # the output scheme: relative path + extension kept
        mask = Image.open(outputs["mask"])
        heatmap = Image.open(outputs["heatmap"])
        overlay = Image.open(outputs["overlay"])
        assert mask.mode == "L" and mask.size == (width, height)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert np.mean(np.asarray(mask) > 0) == pytest.approx(record["manipulated_fraction"], abs=1e-6)
        assert heatmap.mode == "RGB" and heatmap.size == (width, height)
        assert overlay.mode == "RGB" and overlay.width >= 3 * width and overlay.height > height
    # Nothing else: no outputs for failed inputs, no temporary files.
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == sorted(
        [".sparsevit-predict.lock", "predictions.jsonl"]
        + [f"{n}.{k}.png" for n in good for k in ("mask", "heatmap", "overlay")]
    )


def test_the_overlay_outlines_the_manipulated_region(tmp_path):
    from sparsevit_hf.inference.visualization import OUTLINE_COLOR, overlay_image

    image = Image.fromarray(np.full((100, 120, 3), 128, dtype=np.uint8))
    probability = np.zeros((100, 120), dtype=np.float32)
    probability[30:60, 40:90] = 0.9
    overlay = np.asarray(overlay_image(image, probability, 0.5))
    caption = overlay.shape[0] - 100
    right = overlay[caption:, -120:]
    assert (right == OUTLINE_COLOR).all(axis=-1).any()  # the outline is drawn
    assert (right[0, 0] == 128).all() and (right[45, 65] != 128).any()  # outside untouched, inside tinted
    np.testing.assert_array_equal(overlay[caption:, :120], np.asarray(image))  # left panel: the image itself


@pytest.mark.parametrize("width", [1, 2, 5])
def test_the_outline_is_pillows_max_filter_dilation_minus_the_region(width):
    from PIL import ImageFilter

    from sparsevit_hf.inference.visualization import outline

    rng = np.random.default_rng(width)
    mask = rng.random((37, 53)) > 0.97
    mask[10:20, 5:30] = True
    mask[0, :4] = mask[:, -1] = True  # regions on the border
    dilated = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * width + 1))
    np.testing.assert_array_equal(outline(mask, width), (np.asarray(dilated) > 0) & ~mask)


def test_a_library_warning_is_one_line_that_names_the_program(model_dir, tmp_path, monkeypatch, capsys):
    """bf16 on a CPU without native bf16 products: the Predictor's warning, shown as the program's own message."""
    from sparsevit_hf.inference import loading

    monkeypatch.setattr(loading, "cpu_has_fast_matmul", lambda dtype: dtype == torch.float32)
    Image.fromarray(rgb_array(40, 40)).save(tmp_path / "image.png")
    assert main([str(model_dir), str(tmp_path / "image.png"), "-o", str(tmp_path / "out"), "--dtype", "bf16"]) == 0
    stderr = capsys.readouterr().err
    assert "sparsevit-predict: warning: This CPU has no native bf16 matrix products" in stderr
    assert "UserWarning" not in stderr and "predictor.py" not in stderr
    assert warnings.showwarning is not None and warnings.showwarning.__module__ != "sparsevit_hf.cli.messages"


@pytest.mark.parametrize("mode, extra", [("native", []), ("tiled", ["--tile-size", "64", "--tile-overlap", "16"])])
def test_native_and_tiled_modes_and_bf16(model_dir, tmp_path, mode, extra):
    Image.fromarray(rgb_array(70, 100)).save(tmp_path / "image.png")
    out = tmp_path / "out"
    status = main(
        [
            str(model_dir),
            str(tmp_path / "image.png"),
            "-o",
            str(out),
            "--mode",
            mode,
            "--dtype",
            "bf16",
            "--batch-size",
            "4",
            "--quiet",
            "--trust-remote-code",  # the installed classes serve the model either way
            *extra,
        ]
    )
    assert status == 0
    (record,) = read_jsonl(out / "predictions.jsonl")
    assert record["mode"] == mode and (record["width"], record["height"]) == (100, 70)
    assert Image.open(out / "image.png.mask.png").size == (100, 70)
    if mode == "tiled":
        assert (record["tile_size"], record["tile_overlap"]) == (64, 16)


def test_native_pixel_limit_is_a_failure_that_suggests_tiled(model_dir, tmp_path, capsys):
    Image.fromarray(rgb_array(64, 64)).save(tmp_path / "image.png")
    status = main(
        [
            str(model_dir),
            str(tmp_path / "image.png"),
            "-o",
            str(tmp_path / "out"),
            "--mode",
            "native",
            "--max-pixels",
            "1000",
            "--quiet",
        ]
    )
    assert status == 1
    assert "--mode tiled" in capsys.readouterr().err


def test_model_errors_exit_2_before_processing(tmp_path, capsys):
    Image.fromarray(rgb_array(64, 64)).save(tmp_path / "image.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "missing-model"), str(tmp_path / "image.png"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
    assert main([str(other), str(tmp_path / "image.png"), "-o", str(out)]) == 2
    assert "not a SparseViT model" in capsys.readouterr().err
    assert not out.exists()  # nothing was written


def test_usage_errors_exit_2(model_dir, tmp_path, capsys):
    Image.fromarray(rgb_array(64, 64)).save(tmp_path / "image.png")
    image, out = str(tmp_path / "image.png"), str(tmp_path / "out")
    assert main([str(model_dir), image, "-o", out, "--threshold", "1.5"]) == 2
    assert main([str(model_dir), image, "-o", out, "--mode", "tiled", "--tile-size", "100"]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(model_dir), str(tmp_path / "empty"), "-o", out]) == 2
    assert "no image files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main([str(model_dir), image])  # --output-dir is required
    assert error.value.code == 2


def test_writes_are_atomic(model_dir, tmp_path, monkeypatch, capsys):
    """If writing one picture fails, none of that image's pictures appear, and no temporary file is left."""
    Image.fromarray(rgb_array(64, 64, 1)).save(tmp_path / "good.png")
    Image.fromarray(rgb_array(64, 64, 2)).save(tmp_path / "unlucky.png")
    out = tmp_path / "out"
    original_save = Image.Image.save

    def flaky_save(self, fp, *args, **kwargs):
        if "unlucky.png.overlay.png" in os.fspath(fp):
            original_save(self, fp, *args, **kwargs)  # the temporary file exists when the disk "fills up"
            raise OSError(28, "No space left on device")
        return original_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    status = main(
        [str(model_dir), str(tmp_path / "good.png"), str(tmp_path / "unlucky.png"), "-o", str(out), "--quiet"]
    )
    assert status == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".sparsevit-predict.lock", "predictions.jsonl", "good.png.mask.png", "good.png.heatmap.png",
         "good.png.overlay.png"]
    )
    assert [Path(r["file"]).name for r in read_jsonl(out / "predictions.jsonl")] == ["good.png"]


def test_inputs_globs_and_output_names(tmp_path):
    for relative in ("x/1.jpg", "x/deep/2.png", "y/1.jpg", "y/notes.txt", "out/old.jpg"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found = collect_inputs(
        [
            str(tmp_path / "x"),
            str(tmp_path / "**" / "*.jpg"),
            str(tmp_path / "y" / "notes.txt"),
            str(tmp_path / "missing.jpg"),
            str(tmp_path / "z*.png"),
        ],
        exclude=tmp_path / "out",
    )
    relative = [path.relative_to(tmp_path).as_posix() for path in found.files]
    assert relative == ["x/1.jpg", "x/deep/2.png", "y/1.jpg", "y/notes.txt"]  # deduplicated, outputs excluded
    assert [failure.path for failure in found.failures] == [str(tmp_path / "missing.jpg"), str(tmp_path / "z*.png")]
    names = output_names(found.files)
    assert sorted(names.values()) == ["x/1.jpg", "x/deep/2.png", "y/1.jpg", "y/notes.txt"]
    assert output_names([tmp_path / "x" / "1.jpg"]) == {tmp_path / "x" / "1.jpg": "1.jpg"}


def test_rerunning_into_an_output_folder_inside_the_inputs(model_dir, tmp_path):
    Image.fromarray(rgb_array(40, 40)).save(tmp_path / "image.png")
    out = tmp_path / "results"
    for _ in range(2):
        assert main([str(model_dir), str(tmp_path), "-o", str(out), "--quiet"]) == 0
        assert len(read_jsonl(out / "predictions.jsonl")) == 1  # the outputs of the first run are not inputs


def test_module_entry_point_on_the_real_samples(model_dir, tmp_path):
    samples = sorted((SAMPLES / "Tp").glob("*.jpg"))
    if not samples:
        pytest.skip(f"no samples in {SAMPLES}")
    out = tmp_path / "out"
    import sparsevit_hf

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(sparsevit_hf.__file__).resolve().parents[1]),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsevit_hf.cli.predict",
            str(model_dir),
            *map(str, samples),
            "-o",
            str(out),
            "--batch-size",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(samples)} processed, 0 failed" in result.stderr
    for sample in samples:
        with Image.open(sample) as original:
            size = ImageOps.exif_transpose(original).size
        assert Image.open(out / f"{sample.name}.overlay.png").height > size[1]
        assert Image.open(out / f"{sample.name}.mask.png").size == size
