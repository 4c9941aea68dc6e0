"""Specification of sparsevit_hf.data.synthetic: the deterministic synthetic tampering data set."""

from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")
datasets = pytest.importorskip("datasets")

from sparsevit_hf.cli.synthesize import main as synthesize_main  # noqa: E402
from sparsevit_hf.data import load_iml_dataset, load_mask  # noqa: E402
from sparsevit_hf.data import synthetic as S  # noqa: E402

SIZE = 64  # small images keep the tests fast; the generator is size-agnostic
CFG = S.SyntheticTamperingConfig(size=SIZE, seed=5)


def _first_of_each_kind(cfg: S.SyntheticTamperingConfig, limit: int = 80) -> dict[str, S.SyntheticSample]:
    found: dict[str, S.SyntheticSample] = {}
    for i in range(limit):
        s = S.render_sample(i, cfg)
        found.setdefault(s.kind, s)
        if len(found) == len(S.KINDS):
            break
    return found


def test_source_photographs_ship_with_scikit_image_and_splits_are_disjoint():
    assert set(S.available_photos()) == set(S.SOURCE_PHOTOS)  # all inside the wheel: no download
    train, test = set(S.SPLIT_PHOTOS["train"]), set(S.SPLIT_PHOTOS["test"])
    assert not train & test
    assert len(test) >= 2 and len(train) >= 2
    assert train | test == set(S.SOURCE_PHOTOS)
    for name in S.SOURCE_PHOTOS:
        photo = S.load_photo(name)
        assert photo.mode == "RGB" and min(photo.size) >= 256


@pytest.mark.parametrize("split", ["train", "test"])
def test_samples_only_use_their_split_photographs(split):
    allowed = set(S.SPLIT_PHOTOS[split])
    for i in range(25):
        s = S.render_sample(i, CFG, split=split)
        assert s.host in allowed
        if s.kind == "splicing":
            assert s.donor in allowed and s.donor != s.host  # spliced from another photograph
        else:
            assert s.donor is None


def test_generate_sample_api():
    image, mask, kind = S.generate_sample(3, CFG)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (SIZE, SIZE)
    assert mask.dtype == np.bool_ and mask.shape == (SIZE, SIZE)
    assert kind in S.KINDS
    assert mask.any() == (kind != "authentic")
    image2, _, _ = S.generate_sample(3, size=SIZE, seed=5)  # keyword overrides of the default config
    assert np.array_equal(np.asarray(image), np.asarray(image2))


def test_deterministic_per_index_whatever_the_number_of_images():
    a = S.render_sample(7, CFG)
    b = S.render_sample(7, CFG)
    assert a.jpeg == b.jpeg and np.array_equal(a.mask, b.mask) and a.kind == b.kind
    small = S.synthetic_dataset("train", num_images=3, size=SIZE, seed=5)
    large = S.synthetic_dataset("train", num_images=6, size=SIZE, seed=5)
    raw_small = small.cast_column("image", datasets.Image(decode=False))
    raw_large = large.cast_column("image", datasets.Image(decode=False))
    for i in range(3):
        assert raw_small[i]["image"]["bytes"] == raw_large[i]["image"]["bytes"]
        assert small[i]["kind"] == large[i]["kind"]
    assert S.render_sample(2, CFG).jpeg == raw_small[2]["image"]["bytes"]
    # different seeds, indices and splits give different images
    assert S.render_sample(7, CFG, seed=6).jpeg != a.jpeg
    assert S.render_sample(8, CFG).jpeg != a.jpeg
    assert S.render_sample(7, CFG, split="test").jpeg != a.jpeg


# Reference digests of the final JPEG files, recorded with the pinned test environment
# (requirements-test.txt). Same package versions must give the same bytes on any machine.
_PINNED = {"pillow": "13.0.0", "numpy": "2.4.6", "scikit-image": "0.26.0"}
_GOLDEN: dict[tuple[str, int], str] = {  # (split, index) -> sha256; size 64, seed 0; no OpenCV involved
    ("train", 1): "9b4bb6a89569733a7aefb6aa8a47774cbc19b3574cbed503def17c4af2ef5916",  # splicing
    ("train", 3): "448b899b83c3877c51f94c192e4d413d092cbfb06f9677922080fce693544a7a",  # copy-move
    ("train", 6): "1adea7f1707573bed8bffc62e5b73fab94edd18f8b696bde811e0320c2630bac",  # authentic
    ("test", 3): "59683a9c9b6f78462d989e60e8b3cbdbffd81db31114fddbe28cb2054546dc58",  # copy-move
}


@pytest.mark.skipif(not _GOLDEN, reason="no reference digests recorded")
def test_bytes_identical_to_reference_for_pinned_versions():
    from importlib.metadata import version

    if any(version(dist) != v for dist, v in _PINNED.items()):
        pytest.skip("reference digests were recorded with other package versions")
    cfg = S.SyntheticTamperingConfig(size=SIZE, seed=0)
    for (split, index), digest in _GOLDEN.items():
        assert hashlib.sha256(S.render_sample(index, cfg, split=split).jpeg).hexdigest() == digest, (split, index)


def test_every_kind_is_produced_and_the_final_image_is_the_jpeg():
    found = _first_of_each_kind(CFG)
    assert set(found) == set(S.KINDS)
    for s in found.values():
        decoded = np.asarray(Image.open(io.BytesIO(s.jpeg)).convert("RGB"))
        assert np.array_equal(np.asarray(s.image), decoded)


def test_authentic_fraction_controls_authentic_samples():
    assert {S.render_sample(i, CFG, authentic_fraction=0.0).kind for i in range(12)} <= {
        "splicing",
        "copy_move",
        "removal",
    }
    assert {S.render_sample(i, CFG, authentic_fraction=1.0).kind for i in range(5)} == {"authentic"}
    only_removal = S.SyntheticTamperingConfig(size=SIZE, authentic_fraction=0.0, kind_weights=(0, 0, 1))
    assert {S.render_sample(i, only_removal).kind for i in range(5)} == {"removal"}


@pytest.mark.parametrize("split", ["train", "test"])
def test_masks_are_exact(split):
    """Outside the mask the manipulated image is bit-identical to the pristine rendition; inside, pixels changed."""
    cfg = S.SyntheticTamperingConfig(size=96, seed=11, split=split)
    for i in range(30):
        s = S.render_sample(i, cfg)
        assert s.mask.shape == (96, 96) and s.mask.dtype == np.bool_
        assert np.array_equal(s.manipulated[~s.mask], s.pristine[~s.mask]), (i, s.kind)
        if s.kind == "authentic":
            assert not s.mask.any() and np.array_equal(s.manipulated, s.pristine)
            continue
        changed = (s.manipulated != s.pristine).any(axis=2)
        assert s.mask.any() and changed[s.mask].mean() >= 0.5, (i, s.kind)
        assert 0.005 < s.mask.mean() < 0.6


def test_copy_move_pastes_content_of_the_same_image():
    cfg = S.SyntheticTamperingConfig(
        size=96, seed=2, authentic_fraction=0.0, kind_weights=(0, 1, 0), boundary_blur_p=0.0
    )
    s = S.render_sample(0, cfg)
    assert s.kind == "copy_move" and s.donor is None
    # every pasted colour is close to some colour of the untouched image (no foreign content)
    pasted = s.manipulated[s.mask].astype(int)
    palette = s.pristine.reshape(-1, 3).astype(int)
    nearest = np.abs(pasted[:, None, :] - palette[None, ::7, :]).sum(axis=2).min(axis=1)
    assert np.median(nearest) < 30


def test_traces_are_visible_but_subtle():
    """The final JPEG is close to the pristine image outside the mask and differs more inside it."""
    cfg = S.SyntheticTamperingConfig(size=128, seed=3, authentic_fraction=0.0)
    inside, outside = [], []
    for i in range(12):
        s = S.render_sample(i, cfg)
        diff = np.abs(np.asarray(s.image, dtype=int) - s.pristine.astype(int)).mean(axis=2)
        inside.append(diff[s.mask].mean())
        outside.append(diff[~s.mask].mean())
    assert np.mean(outside) < 6  # global post-processing only (JPEG, rare slight blur)
    assert np.mean(inside) > 2 * np.mean(outside)


def test_synthetic_dataset_columns():
    ds = S.synthetic_dataset("test", num_images=8, size=SIZE, seed=1, authentic_fraction=0.5)
    assert len(ds) == 8 and ds.column_names == ["image", "mask", "label", "kind"]
    assert ds.features["label"].names == ["authentic", "tampered"]
    for row, i in zip(ds, range(8)):
        s = S.render_sample(i, S.SyntheticTamperingConfig(size=SIZE, seed=1, split="test", authentic_fraction=0.5))
        assert row["kind"] == s.kind and row["label"] == int(s.kind != "authentic")
        if s.kind == "authentic":
            assert row["mask"] is None
        else:
            assert np.array_equal(load_mask(row["mask"]), s.mask)


def test_config_validation():
    with pytest.raises(ValueError, match="split"):
        S.SyntheticTamperingConfig(split="val")
    with pytest.raises(ValueError, match="authentic_fraction"):
        S.SyntheticTamperingConfig(authentic_fraction=1.5)
    with pytest.raises(ValueError, match="size"):
        S.SyntheticTamperingConfig(size=8)


def test_writer_layout_reads_back(tmp_path):
    counts = S.write_synthetic_dataset(tmp_path / "syn", num_images=10, size=SIZE, seed=4, split="test", progress=False)
    assert counts["total"] == 10 and counts["tampered"] + counts["authentic"] == 10
    assert counts["splicing"] + counts["copy_move"] + counts["removal"] == counts["tampered"]
    tp = sorted(p.name for p in (tmp_path / "syn" / "Tp").iterdir())
    gt = sorted(p.name for p in (tmp_path / "syn" / "Gt").iterdir())
    au = sorted(p.name for p in (tmp_path / "syn" / "Au").iterdir())
    assert len(tp) == counts["tampered"] and len(au) == counts["authentic"]
    assert [n.replace(".jpg", ".png") for n in tp] == gt
    assert all(n.startswith("test_") for n in tp + au)
    mask_img = Image.open(tmp_path / "syn" / "Gt" / gt[0])
    assert mask_img.mode == "L" and set(np.unique(np.asarray(mask_img))) <= {0, 255}
    manifest = json.loads((tmp_path / "syn" / "synthetic_manifest.json").read_text())
    assert manifest["config"]["seed"] == 4 and len(manifest["files"]) == 10

    ds = load_iml_dataset(tmp_path / "syn")
    assert len(ds) == 10 and sum(ds["label"]) == counts["tampered"]
    # the written files are the in-memory samples, byte for byte
    index = int(tp[0][len("test_") : -len(".jpg")])
    s = S.render_sample(index, S.SyntheticTamperingConfig(size=SIZE, seed=4, split="test"))
    assert (tmp_path / "syn" / "Tp" / tp[0]).read_bytes() == s.jpeg
    assert np.array_equal(load_mask(tmp_path / "syn" / "Gt" / gt[0]), s.mask)


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = synthesize_main(
        [
            "--output-dir",
            str(out),
            "--num-images",
            "6",
            "--size",
            str(SIZE),
            "--seed",
            "1",
            "--split",
            "test",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote 6 images" in text and "tampered" in text and "authentic" in text
    assert len(list((out / "Tp").iterdir())) + len(list((out / "Au").iterdir())) == 6
    with pytest.raises(SystemExit):
        synthesize_main(["--output-dir", str(out), "--split", "validation"])


def test_parallel_generation_gives_the_same_samples():
    one = S.synthetic_dataset("train", num_images=4, size=SIZE, seed=9)
    many = S.synthetic_dataset("train", num_images=4, size=SIZE, seed=9, num_workers=2)
    a = one.cast_column("image", datasets.Image(decode=False))["image"]
    b = many.cast_column("image", datasets.Image(decode=False))["image"]
    assert [x["bytes"] for x in a] == [x["bytes"] for x in b]


def test_generation_is_fast():
    cfg = S.SyntheticTamperingConfig(size=256, seed=0)
    S.render_sample(0, cfg)  # photographs are cached after first use
    start = time.perf_counter()
    for i in range(20):
        S.render_sample(i, cfg)
    assert time.perf_counter() - start < 5.0  # > 4 images/s even on a slow CI machine (about 50/s on one core)
