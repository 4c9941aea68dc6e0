"""What the evaluation report writes: strict JSON, Markdown tables, curves and picture grids."""

import json
import math

import numpy as np
from PIL import Image

from sparsevit_hf.evaluation.report import (
    example_grid,
    plot_robustness,
    plot_threshold_curves,
    results_markdown,
    write_json,
)


def metrics(f1, auc=0.8):
    return {
        "pixel_f1": f1, "pixel_f1_dataset": f1, "pixel_f1_permuted": f1, "pixel_iou": f1 / 2, "pixel_auc": auc,
        "image_auc": float("nan"), "image_accuracy": 1.0, "image_f1": 1.0, "num_images": 10, "num_authentic": 2,
        "num_tampered": 8, "num_pixel_auc_images": 8,
    }


def results():
    def one_set(f1):
        return {
            "spec": "synthetic:test",
            "metrics": metrics(f1),
            "baselines": {
                "trivial": {"all_manipulated": metrics(0.2), "all_authentic": metrics(0.0)},
                "content_free_f1": 0.25, "content_free": "centred disc of radius 0.300", "shuffled_f1": 0.1,
                "note": "",
            },
            "content_gap": f1 - 0.25,
            "per_kind": {"splice": {"num_tampered": 5, "pixel_f1": 0.6, "content_free_f1": 0.2, "shuffled_f1": 0.1,
                                    "content_gap": 0.4}},
            "threshold_curve": {"thresholds": [0.25, 0.5, 0.75], "pixel_f1": [0.3, f1, 0.2]},
            "robustness": {
                "jpeg90": {"kind": "jpeg", "value": 90, "metrics": metrics(f1 - 0.05)},
                "jpeg70": {"kind": "jpeg", "value": 70, "metrics": metrics(f1 - 0.1)},
                "blur3": {"kind": "blur", "value": 3, "metrics": metrics(f1 - 0.2)},
            },
        }

    return {
        "model": {"name_or_path": "my-model"},
        "package": {"name": "sparsevit-hf", "version": "0.1.0"},
        "settings": {"protocol": "exact", "mode": "resize", "threshold": 0.5, "image_score": "max"},
        "sets": {"casia": one_set(0.5), "columbia": one_set(0.7)},
    }


def test_results_markdown_has_the_metrics_baselines_kinds_and_robustness_tables():
    text = results_markdown(results())
    assert "| casia | 10 | 8 | **0.500** | 0.800 | 0.250 | n/a | 1.000 | 0.250 | 0.100 | **+0.250** |" in text
    assert "| columbia | 0.700 | 0.200 | 0.000 | 0.250 (centred disc of radius 0.300) | 0.100 |" in text
    assert "| casia | splice | 5 | 0.600 | 0.200 | 0.100 | +0.400 |" in text
    assert "| set | clean | JPEG 90 | JPEG 70 | blur 3 |" in text
    assert "| columbia | 0.700 | 0.650 | 0.600 | 0.500 |" in text


def test_results_json_is_strict_json_with_nan_as_null(tmp_path):
    path = write_json(tmp_path / "results.json", results())
    loaded = json.loads(path.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert loaded["sets"]["casia"]["metrics"]["image_auc"] is None
    assert loaded["sets"]["casia"]["metrics"]["pixel_f1"] == 0.5
    assert not list(tmp_path.glob(".*tmp"))


def test_curves_are_written_as_pictures(tmp_path):
    robustness = plot_robustness(results(), tmp_path / "robustness.png")
    threshold = plot_threshold_curves(results(), tmp_path / "threshold.png")
    for path in (robustness, threshold):
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width > 300
            # Something was drawn beyond the white background.
            assert np.asarray(picture.convert("L")).std() > 10
    plain = results()
    for entry in plain["sets"].values():
        entry["robustness"] = {}
    assert plot_robustness(plain, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_example_grid_tiles_rows_of_panels_at_one_height(tmp_path):
    red, blue = Image.new("RGB", (40, 20), "red"), Image.new("RGB", (10, 10), "blue")
    path = example_grid([("worst: a.png F1 0.00", [red, blue]), ("best: b.png F1 0.97", [blue])],
                        tmp_path / "grid.png", headers=["image", "map"], height=30)
    with Image.open(path) as grid:
        pixels = np.asarray(grid.convert("RGB"))
    # Row 1: the red panel scaled to 60 x 30 then the blue one at 30 x 30.
    assert (pixels == [255, 0, 0]).all(axis=-1).sum() == 60 * 30
    assert (pixels == [0, 0, 255]).all(axis=-1).sum() == 2 * 30 * 30
    assert not math.isnan(pixels.mean())
