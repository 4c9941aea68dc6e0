"""Specification of sparsevit_hf.data: data set specs, pairing, decoding, validation, balanced sampling."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")

from sparsevit_hf.data import (  # noqa: E402
    BalancedSampler,
    CorruptImageError,
    IMLDatasetError,
    MaskSizeMismatchError,
    MissingFilesError,
    UnpairedImagesError,
    balanced_epoch_indices,
    load_example,
    load_image,
    load_iml_bundle,
    load_iml_dataset,
    load_mask,
    validate_dataset,
    with_decoding,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


# ----------------------------------------------------------------------------- helpers
def _rgb(h: int = 24, w: int = 32, value: int = 0) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 24, w: int = 32, box=(4, 12, 5, 20)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 255
    return m


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _make_folder(root: Path, *, au: int = 0) -> Path:
    """Tp/Gt folder with pairs in every naming convention the loader accepts."""
    _save(root / "Tp" / "a.jpg", _rgb(value=1))
    _save(root / "Gt" / "a.png", _mask())  # same stem, other extension
    _save(root / "Tp" / "b.png", _rgb(value=2))
    _save(root / "Gt" / "b_gt.png", _mask())  # _gt suffix
    _save(root / "Tp" / "c.tif", _rgb(value=3))
    _save(root / "Gt" / "c_mask.bmp", _mask())  # _mask suffix, yet another extension
    (root / "Tp" / "notes.txt").write_text("not an image")
    (root / "Tp" / "Thumbs.db").write_bytes(b"\x00" * 16)
    (root / "Gt" / ".DS_Store").write_bytes(b"\x00")
    for i in range(au):
        _save(root / "Au" / f"au{i}.jpg", _rgb(value=10 + i))
    return root


def _paths(ds, column: str) -> list:
    raw = ds.cast_column(column, datasets.Image(decode=False))
    return [None if v is None else Path(v["path"]).name for v in raw[column]]


# ----------------------------------------------------------------------------- Tp/Gt folders
def test_folder_pairs_by_stem_across_extensions_and_suffixes(tmp_path):
    ds = load_iml_dataset(_make_folder(tmp_path))
    assert set(ds.column_names) == {"image", "mask", "label"}
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["mask"], datasets.Image)
    assert ds.features["label"].names == ["authentic", "tampered"]
    pairs = dict(zip(_paths(ds, "image"), _paths(ds, "mask")))
    assert pairs == {"a.jpg": "a.png", "b.png": "b_gt.png", "c.tif": "c_mask.bmp"}  # .txt / Thumbs.db ignored
    assert list(ds["label"]) == [1, 1, 1]
    row = ds[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (32, 24)


def test_folder_with_authentic_au_folder(tmp_path):
    ds = load_iml_dataset(_make_folder(tmp_path, au=2))
    assert len(ds) == 5
    labels = list(ds["label"])
    masks = _paths(ds, "mask")
    assert labels.count(0) == 2
    assert [m for m, lab in zip(masks, labels) if lab == 0] == [None, None]
    assert ds[4]["mask"] is None


def test_unpaired_images_are_an_error_listing_them(tmp_path):
    _make_folder(tmp_path)
    for i in range(13):
        _save(tmp_path / "Tp" / f"lonely{i:02d}.png", _rgb())
    with pytest.raises(UnpairedImagesError) as info:
        load_iml_dataset(tmp_path)
    msg = str(info.value)
    assert "13 of 16" in msg and str(tmp_path / "Tp") in msg
    assert "lonely00.png" in msg and "lonely09.png" in msg
    assert "lonely12.png" not in msg and "3 more" in msg  # first ten listed, then a count
    assert "authentic_unpaired=True" in msg


def test_authentic_unpaired_treats_maskless_images_as_authentic(tmp_path):
    _make_folder(tmp_path)
    _save(tmp_path / "Tp" / "z.png", _rgb())
    ds = load_iml_dataset(tmp_path, authentic_unpaired=True)
    rows = dict(zip(_paths(ds, "image"), zip(_paths(ds, "mask"), ds["label"])))
    assert rows["z.png"] == (None, 0)
    assert rows["a.jpg"] == ("a.png", 1)


def test_subfolders_are_mirrored_between_tp_and_gt(tmp_path):
    _save(tmp_path / "Tp" / "cam1" / "x.jpg", _rgb())
    _save(tmp_path / "Gt" / "cam1" / "x_gt.png", _mask())
    _save(tmp_path / "Tp" / "cam2" / "x.jpg", _rgb())
    _save(tmp_path / "Gt" / "cam2" / "x.png", _mask())
    ds = load_iml_dataset(tmp_path)
    raw = ds.cast_column("mask", datasets.Image(decode=False))
    assert sorted(Path(v["path"]).parent.name + "/" + Path(v["path"]).name for v in raw["mask"]) == [
        "cam1/x_gt.png",
        "cam2/x.png",
    ]


@pytest.mark.parametrize("missing", ["Tp", "Gt"])
def test_missing_tp_or_gt_folder_is_a_clear_error(tmp_path, missing):
    _make_folder(tmp_path)
    for f in (tmp_path / missing).iterdir():
        f.unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(MissingFilesError) as info:
        load_iml_dataset(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and f"missing {missing}/" in msg
    assert "Tp/ (tampered images)" in msg and "Gt/" in msg


def test_empty_tp_folder_is_a_clear_error(tmp_path):
    (tmp_path / "Tp").mkdir()
    (tmp_path / "Gt").mkdir()
    (tmp_path / "Tp" / "readme.txt").write_text("nothing here")
    with pytest.raises(IMLDatasetError, match="no image files in .*Tp"):
        load_iml_dataset(tmp_path)


def test_nonexistent_path_is_a_clear_error(tmp_path):
    with pytest.raises(MissingFilesError, match="not found"):
        load_iml_dataset(tmp_path / "nope")
    with pytest.raises(MissingFilesError, match="not found"):
        load_iml_dataset(str(tmp_path / "nope.json"))


# ----------------------------------------------------------------------------- JSON pair lists
def test_json_pairs_relative_absolute_and_negative(tmp_path):
    _save(tmp_path / "imgs" / "t.jpg", _rgb())
    _save(tmp_path / "masks" / "t.png", _mask())
    _save(tmp_path / "imgs" / "au.jpg", _rgb(value=5))
    elsewhere = _save(tmp_path / "other" / "abs.png", _rgb(value=6))
    abs_mask = _save(tmp_path / "other" / "abs_m.png", _mask())
    spec = tmp_path / "lists" / "pairs.json"
    spec.parent.mkdir()
    spec.write_text(
        json.dumps(
            [
                ["../imgs/t.jpg", "../masks/t.png"],  # relative to the JSON file's folder
                ["../imgs/au.jpg", "Negative"],
                [str(elsewhere), str(abs_mask)],  # absolute
            ]
        )
    )
    ds = load_iml_dataset(spec)
    assert list(ds["label"]) == [1, 0, 1]
    assert _paths(ds, "mask") == ["t.png", None, "abs_m.png"]
    image, mask = load_example(ds[1])
    assert image.shape == (24, 32, 3) and mask.shape == (24, 32) and not mask.any()


def test_json_missing_files_are_named(tmp_path):
    _save(tmp_path / "t.jpg", _rgb())
    spec = tmp_path / "pairs.json"
    spec.write_text(json.dumps([["t.jpg", "gone.png"], ["gone.jpg", "Negative"]]))
    with pytest.raises(MissingFilesError) as info:
        load_iml_dataset(spec)
    assert "gone.png" in str(info.value) and "gone.jpg" in str(info.value) and "2 file(s)" in str(info.value)


def test_json_malformed_entry_is_reported(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps([["a.jpg", "b.png", "c"]]))
    with pytest.raises(IMLDatasetError, match="entry 0"):
        load_iml_dataset(spec)


# ----------------------------------------------------------------------------- combined data sets
def _combined(tmp_path: Path) -> Path:
    _make_folder(tmp_path / "setA", au=1)  # 4 rows
    for i in range(2):
        _save(tmp_path / "setB" / f"i{i}.jpg", _rgb(value=i))
        _save(tmp_path / "setB" / f"m{i}.png", _mask())
    (tmp_path / "setB" / "pairs.json").write_text(json.dumps([[f"i{i}.jpg", f"m{i}.png"] for i in range(2)]))
    spec = tmp_path / "combined.json"
    spec.write_text(json.dumps([["ManiDataset", "setA"], ["JsonDataset", "setB/pairs.json"]]))  # IMDLBenCo kinds
    return spec


def test_combined_json_concatenates_parts_and_reports_sizes(tmp_path):
    bundle = load_iml_bundle(_combined(tmp_path))
    assert bundle.sizes == (4, 2)
    assert bundle.offsets == (0, 4)
    assert len(bundle.dataset) == 6
    assert bundle.names[0].endswith("setA") and bundle.names[1].endswith("pairs.json")
    assert list(bundle.dataset["label"]) == [1, 1, 1, 0, 1, 1]
    assert len(load_iml_dataset(_combined(tmp_path))) == 6


def test_combined_accepts_kind_aliases_and_python_lists(tmp_path):
    _combined(tmp_path)
    spec = tmp_path / "c2.json"
    spec.write_text(
        json.dumps([["folder", "setA"], ["json", "setB/pairs.json"], ["synthetic", "test:num_images=3,size=64"]])
    )
    bundle = load_iml_bundle(spec)
    assert bundle.sizes == (4, 2, 3)
    assert bundle.dataset.column_names == ["image", "mask", "label"]
    bundle2 = load_iml_bundle([tmp_path / "setA", ("JsonDataset", str(tmp_path / "setB" / "pairs.json"))])
    assert bundle2.sizes == (4, 2)


def test_balanced_indices_counts_per_part():
    sizes = [5000, 300, 2000]
    idx = balanced_epoch_indices(sizes, 1840, epoch=0, seed=42)
    assert len(idx) == 3 * 1840
    part = np.searchsorted(np.cumsum(sizes), idx, side="right")
    assert np.bincount(part).tolist() == [1840, 1840, 1840]
    big = idx[part == 0]
    assert len(np.unique(big)) == 1840  # enough rows: without replacement
    small = idx[part == 1]
    assert small.min() >= 5000 and small.max() < 5300  # too few rows: with replacement, in range
    assert len(np.unique(small)) <= 300


def test_balanced_indices_deterministic_and_vary_by_epoch():
    a = balanced_epoch_indices([100, 50], 40, epoch=3, seed=7)
    b = balanced_epoch_indices([100, 50], 40, epoch=3, seed=7)
    c = balanced_epoch_indices([100, 50], 40, epoch=4, seed=7)
    d = balanced_epoch_indices([100, 50], 40, epoch=3, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    grouped = balanced_epoch_indices([100, 50], [10, 20], epoch=0, seed=0, shuffle=False)
    assert (grouped[:10] < 100).all() and (grouped[10:] >= 100).all() and len(grouped) == 30


def test_balanced_sampler_follows_epochs():
    sampler = BalancedSampler([10, 3], per_dataset=6, seed=1)
    assert len(sampler) == 12
    first = list(sampler)
    assert first == list(sampler)  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert first == balanced_epoch_indices([10, 3], 6, epoch=0, seed=1).tolist()
    with pytest.raises(ValueError):
        BalancedSampler([10, 0])


# ----------------------------------------------------------------------------- datasets data sets
def test_save_to_disk_folder_with_custom_columns_and_derived_labels(tmp_path):
    img = [str(_save(tmp_path / f"src/i{i}.png", _rgb(value=i))) for i in range(3)]
    empty = np.zeros((24, 32), np.uint8)
    msk = [str(_save(tmp_path / "src/m0.png", _mask())), str(_save(tmp_path / "src/m1.png", empty)), None]
    raw = datasets.Dataset.from_dict(
        {"photo": img, "gt": msk, "note": ["x", "y", "z"]},
        features=datasets.Features(photo=datasets.Image(), gt=datasets.Image(), note=datasets.Value("string")),
    )
    raw.save_to_disk(tmp_path / "saved")
    ds = load_iml_dataset(tmp_path / "saved", image_column="photo", mask_column="gt")
    assert {"image", "mask", "label"} <= set(ds.column_names)
    assert list(ds["label"]) == [1, 0, 0]  # from mask emptiness: empty mask and no mask are authentic
    with pytest.raises(IMLDatasetError, match="no image column 'image'"):
        load_iml_dataset(tmp_path / "saved")


def test_save_to_disk_dataset_dict_needs_a_split(tmp_path):
    img = str(_save(tmp_path / "i.png", _rgb()))
    part = datasets.Dataset.from_dict(
        {"image": [img], "mask": [None], "label": [0]},
        features=datasets.Features(image=datasets.Image(), mask=datasets.Image(), label=datasets.Value("int64")),
    )
    datasets.DatasetDict(validation=part, test=part).save_to_disk(tmp_path / "dd")
    with pytest.raises(IMLDatasetError, match="pass split="):
        load_iml_dataset(tmp_path / "dd")
    ds = load_iml_dataset(tmp_path / "dd", split="test")
    assert len(ds) == 1 and ds.features["label"].names == ["authentic", "tampered"]


def test_imagefolder_with_mask_file_name_metadata(tmp_path):
    folder = tmp_path / "imf"
    rows = []
    for i in range(3):
        _save(folder / f"im{i}.png", _rgb(value=i))
        if i < 2:
            _save(folder / "masks" / f"im{i}.png", _mask() if i == 0 else np.zeros((24, 32), np.uint8))
            rows.append({"file_name": f"im{i}.png", "mask_file_name": f"masks/im{i}.png"})
        else:
            rows.append({"file_name": f"im{i}.png", "mask_file_name": None})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_iml_dataset(folder, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3
    assert sorted(ds["label"]) == [0, 0, 1]


@pytest.mark.skipif(os.environ.get("HF_DATASETS_OFFLINE") != "1", reason="only checked offline (HF_DATASETS_OFFLINE=1)")
def test_hub_id_offline_error_is_explained(tmp_path):
    with pytest.raises(IMLDatasetError) as info:
        load_iml_dataset("someone/some-iml-dataset", cache_dir=str(tmp_path / "cache"))
    msg = str(info.value)
    assert "Hugging Face Hub" in msg and "offline" in msg and "someone/some-iml-dataset" in msg


def test_synthetic_spec_is_served_in_memory():
    ds = load_iml_dataset("synthetic:test:num_images=4,size=64,seed=3")
    assert len(ds) == 4 and set(ds.column_names) == {"image", "mask", "label", "kind"}
    assert ds[0]["image"].size == (64, 64)
    ds2 = load_iml_dataset("synthetic", split="test", synthetic_options={"num_images": 2, "size": 64, "seed": 3})
    assert ds2[1]["kind"] == ds[1]["kind"]
    with pytest.raises(IMLDatasetError, match="unknown synthetic"):
        load_iml_dataset("synthetic:colour=red")


# ----------------------------------------------------------------------------- decoding
def test_load_mask_binarises_the_official_way(tmp_path):
    gray = _mask()
    rgb = np.stack([gray, gray // 2, gray], axis=2)  # mean 212.5 inside, 0 outside
    dim = np.stack([gray, gray // 4, gray // 4], axis=2)  # mean 127.5 inside: NOT tampered (strict >)
    pal = Image.fromarray(gray).convert("P")
    paths = {
        "L": _save(tmp_path / "l.png", gray),
        "RGB": _save(tmp_path / "rgb.png", rgb),
        "P": tmp_path / "p.png",
        "JPEG": _save(tmp_path / "j.jpg", gray, quality=60),
        "RGBA": tmp_path / "rgba.png",
        "16": tmp_path / "g16.png",
        "01": _save(tmp_path / "01.png", (gray > 0).astype(np.uint8)),
    }
    pal.save(paths["P"])
    Image.fromarray(np.dstack([rgb, np.full_like(gray, 255)])).save(paths["RGBA"])
    Image.fromarray(gray.astype(np.uint16) * 257).save(paths["16"])
    expected = gray > 0
    for name, p in paths.items():
        m = load_mask(p)
        assert m.dtype == np.bool_ and m.shape == (24, 32), name
        assert np.array_equal(m, expected), name
    assert not load_mask(_save(tmp_path / "dim.png", dim)).any()
    assert np.array_equal(load_mask(rgb), expected) and np.array_equal(load_mask(expected), expected)


def test_16bit_images_are_scaled_not_clipped(tmp_path):
    g = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    np.testing.assert_allclose(out[..., 0], g / 257.0, atol=1)
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.stack([g, g[::-1], 65535 - g], axis=2)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    out = load_image(tmp_path / "rgb16.png")
    np.testing.assert_allclose(out.astype(float), rgb16 / 257.0, atol=1.5)


def test_cmyk_images_convert_to_rgb(tmp_path):
    rgb = _rgb(value=9)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert np.array_equal(load_image(tmp_path / "c.tif"), rgb)
    jpg = load_image(tmp_path / "c.jpg")
    assert jpg.shape == rgb.shape and np.abs(jpg.astype(int) - rgb).mean() < 20


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared real samples not available")
@pytest.mark.parametrize("stem", ["sample_1", "sample_2", "sample_3"])
def test_real_sample_masks_binarise_to_the_image_size(stem):
    image_path = SAMPLES / "Tp" / f"{stem}.jpg"
    mask_path = next((SAMPLES / "Gt").glob(f"{stem}.*"))
    image, mask = load_example({"image": str(image_path), "mask": str(mask_path)})
    assert mask.dtype == np.bool_ and mask.shape == image.shape[:2]
    assert 0 < mask.mean() < 1


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared real samples not available")
def test_real_sample_folder_loads_and_validates():
    ds = load_iml_dataset(SAMPLES)
    assert len(ds) == 3 and list(ds["label"]) == [1, 1, 1]
    assert validate_dataset(ds).ok


# ----------------------------------------------------------------------------- validation and errors
def _mismatched(tmp_path: Path) -> Path:
    _save(tmp_path / "Tp" / "ok.png", _rgb())
    _save(tmp_path / "Gt" / "ok.png", _mask())
    _save(tmp_path / "Tp" / "big.jpg", _rgb(40, 50))
    _save(tmp_path / "Gt" / "big_gt.png", _mask())
    return tmp_path


def test_mask_size_mismatch_names_both_files_and_sizes(tmp_path):
    ds = load_iml_dataset(_mismatched(tmp_path))  # building does not read headers: lazy
    with pytest.raises(MaskSizeMismatchError) as info:
        validate_dataset(ds)
    msg = str(info.value)
    assert "big.jpg" in msg and "big_gt.png" in msg and "32x24" in msg and "50x40" in msg
    report = validate_dataset(ds, raise_on_error=False)
    assert not report.ok and report.num_checked == 2 and report.bad_rows == [0]
    # training-time reading raises the same error
    with pytest.raises(MaskSizeMismatchError, match="big_gt.png"):
        load_example(
            ds.cast_column("image", datasets.Image(decode=False)).cast_column("mask", datasets.Image(decode=False))[0]
        )
    with pytest.raises(MaskSizeMismatchError, match="big.jpg"):
        with_decoding(ds)[0]


def test_validate_reads_headers_only(tmp_path, monkeypatch):
    ds = load_iml_dataset(_make_folder(tmp_path))
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(1))
    assert validate_dataset(ds).num_checked == 3
    assert loads == []


def _with_corrupt(tmp_path: Path) -> tuple[Path, Path, Path]:
    _make_folder(tmp_path)
    good = tmp_path / "Tp" / "a.jpg"
    truncated = tmp_path / "Tp" / "trunc.jpg"
    _save(truncated, _rgb(64, 64, value=4), quality=95)
    truncated.write_bytes(truncated.read_bytes()[:400])
    _save(tmp_path / "Gt" / "trunc.png", _mask(64, 64))
    garbage = tmp_path / "Tp" / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    _save(tmp_path / "Gt" / "garbage.png", _mask())
    return good, truncated, garbage


def test_corrupt_and_truncated_images_are_errors_naming_the_file(tmp_path):
    _, truncated, garbage = _with_corrupt(tmp_path)
    with pytest.raises(CorruptImageError, match="trunc.jpg"):
        load_image(truncated)
    with pytest.raises(CorruptImageError, match="garbage.png"):
        load_image(garbage)
    ds = load_iml_dataset(tmp_path)  # lazy: nothing is decoded yet
    assert len(ds) == 5
    with pytest.raises(CorruptImageError, match="garbage.png"):
        validate_dataset(ds)  # headers catch unidentifiable files
    report = validate_dataset(ds, decode=True, raise_on_error=False)  # decoding catches truncation too
    assert len(report.corrupt) == 2 and any("trunc.jpg" in m for _, m in report.corrupt)
    decoded = with_decoding(ds)
    bad_row = _paths(ds, "image").index("trunc.jpg")
    with pytest.raises(CorruptImageError, match="trunc.jpg"):
        decoded[bad_row]


def test_skip_corrupt_drops_and_counts(tmp_path, caplog):
    _, truncated, garbage = _with_corrupt(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sparsevit_hf.data.loaders"):
        bundle = load_iml_bundle(tmp_path, skip_corrupt=True)
    assert len(bundle.dataset) == 3
    assert sorted(Path(p).name for p in bundle.skipped) == ["garbage.png", "trunc.jpg"]
    assert "skipped 2 sample(s)" in caplog.text
    assert len(load_iml_dataset(tmp_path, skip_corrupt=True)) == 3


def test_with_decoding_applies_a_transform(tmp_path):
    ds = load_iml_dataset(_make_folder(tmp_path, au=1))
    seen = []

    def transform(image, mask):
        seen.append((image.shape, mask.dtype))
        return image[:8, :8], mask[:8, :8]

    row = with_decoding(ds, transform)[0]
    assert row["image"].shape == (8, 8, 3) and row["mask"].shape == (8, 8) and row["label"] == 1
    assert seen == [((24, 32, 3), np.dtype(bool))]
    authentic = with_decoding(ds)[3]
    assert authentic["label"] == 0 and not authentic["mask"].any()


# ----------------------------------------------------------------------------- laziness
def test_building_from_2000_paths_opens_no_image(tmp_path, monkeypatch):
    tp, gt = tmp_path / "big" / "Tp", tmp_path / "big" / "Gt"
    tp.mkdir(parents=True)
    gt.mkdir(parents=True)
    pairs = []
    for i in range(1000):  # empty files: any attempt to decode them would fail
        (tp / f"{i:05d}.jpg").touch()
        (gt / f"{i:05d}_gt.png").touch()
        pairs.append([f"big/Tp/{i:05d}.jpg", f"big/Gt/{i:05d}_gt.png"])
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    start = time.perf_counter()
    ds = load_iml_dataset(tmp_path / "big")
    ds_json = load_iml_dataset(tmp_path / "pairs.json")
    elapsed = time.perf_counter() - start
    assert len(ds) == 1000 and len(ds_json) == 1000
    assert opened == []
    assert elapsed < 10


def test_decoded_views_pickle_for_dataloader_workers(tmp_path):
    import pickle

    # spawn / forkserver DataLoader workers receive a pickled copy of the data set and its decoder
    plain = pickle.loads(pickle.dumps(with_decoding(load_iml_dataset(_make_folder(tmp_path)))))
    image, mask = plain[0]["image"], plain[0]["mask"]
    assert image.shape == (24, 32, 3) and mask.dtype == np.bool_
