"""Specification of sparsevit_hf.data.augmentations: the official joint image/mask training augmentations."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from sparsevit_hf.data import augmentations as AUG
from sparsevit_hf.data.augmentations import evaluation_transforms, training_transforms

GEOMETRIC_ONLY = dict(
    copy_move_p=0.0, inpainting_p=0.0, brightness_limit=0.0, contrast_limit=0.0, jpeg_p=0.0, blur_p=0.0
)


def _texture(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _blob_mask(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), dtype=bool)
    for _ in range(3):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        m[y : y + rng.integers(5, 20), x : x + rng.integers(5, 20)] = True
    m[0:3, 0:10] = True  # an asymmetric marker so flips and rotations are visible
    return m


def test_pipeline_follows_the_official_recipe():
    names = [type(t).__name__ for t in training_transforms(512, seed=0).compose.transforms]
    assert names == [
        "RandomScale",
        "RandomCopyMove",
        "RandomInpainting",
        "HorizontalFlip",
        "VerticalFlip",
        "RandomBrightnessContrast",
        "ImageCompression",
        "RandomRotate90",
        "GaussianBlur",
        "Resize",
    ]
    t = {type(x).__name__: x for x in training_transforms(512, seed=0).compose.transforms}
    assert t["RandomScale"].scale_limit == pytest.approx((-0.2, 0.2))
    assert (t["RandomCopyMove"].p, t["RandomInpainting"].p) == (0.1, 0.1)
    assert (t["HorizontalFlip"].p, t["VerticalFlip"].p, t["RandomRotate90"].p) == (0.5, 0.5, 0.5)
    assert t["RandomBrightnessContrast"].brightness_limit == pytest.approx((-0.1, 0.1))
    assert t["RandomBrightnessContrast"].contrast_limit == pytest.approx((-0.1, 0.1))
    assert t["ImageCompression"].quality_range == (70, 100) and t["ImageCompression"].p == 0.2
    assert t["GaussianBlur"].blur_limit == (3, 7) and t["GaussianBlur"].p == 0.2
    assert (t["Resize"].height, t["Resize"].width) == (512, 512)


@pytest.mark.parametrize("shape", [(90, 120), (120, 90), (64, 64)])
def test_output_size_and_mask_conventions(shape):
    h, w = shape
    image, mask = _texture(h, w), _blob_mask(h, w)
    tr = training_transforms(48, seed=1)
    out_img, out_mask = tr(image, mask)
    assert out_img.shape == (48, 48, 3) and out_img.dtype == np.uint8
    assert out_mask.shape == (48, 48) and out_mask.dtype == np.bool_
    _, m255 = tr(image, mask.astype(np.uint8) * 255)
    assert m255.dtype == np.uint8 and set(np.unique(m255)) <= {0, 255}
    _, m01 = tr(image, mask.astype(np.uint8))
    assert m01.dtype == np.uint8 and set(np.unique(m01)) <= {0, 1}
    _, none = tr(image, None)
    assert none.shape == (48, 48) and not none.any()
    with pytest.raises(ValueError, match="does not match"):
        tr(image, mask[:-1])


@pytest.mark.parametrize("seed", range(6))
def test_geometric_transforms_keep_image_and_mask_aligned(seed):
    mask = _blob_mask(seed=seed)
    image = np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2)  # image content == mask x 255
    exact = training_transforms(64, seed=seed, interpolation="nearest", **GEOMETRIC_ONLY)
    for _ in range(5):
        out_img, out_mask = exact(image, mask)
        assert np.array_equal(out_img[:, :, 0], out_mask.astype(np.uint8) * 255)
        assert np.array_equal(out_img[:, :, 1], out_img[:, :, 2])
    smooth = training_transforms(64, seed=seed, **GEOMETRIC_ONLY)  # bilinear image, nearest mask
    for _ in range(5):
        out_img, out_mask = smooth(image, mask)
        assert ((out_img[:, :, 0] > 127) == out_mask).mean() > 0.97  # differ only along edges


def test_same_seed_same_augmentations_full_pipeline():
    image, mask = _texture(), _blob_mask()
    heavy = dict(copy_move_p=0.5, inpainting_p=0.5, jpeg_p=0.5, blur_p=0.5)
    a = training_transforms(64, seed=123, **heavy)
    b = training_transforms(64, seed=123, **heavy)
    c = training_transforms(64, seed=124, **heavy)
    outs_a = [a(image, mask) for _ in range(8)]
    outs_b = [b(image, mask) for _ in range(8)]
    outs_c = [c(image, mask) for _ in range(8)]
    for (ia, ma), (ib, mb) in zip(outs_a, outs_b):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(outs_a, outs_c))
    assert not all(np.array_equal(outs_a[0][0], x) for x, _ in outs_a[1:])  # successive calls vary
    a.set_seed(123)  # restarting the stream replays it
    assert np.array_equal(a(image, mask)[0], outs_a[0][0])


def _orientation(out: np.ndarray, marker: np.ndarray) -> int:
    """Which of the 8 flips/rotations of `marker` `out` is."""
    candidates = []
    for k in range(4):
        r = np.rot90(marker, k)
        candidates += [r, r[:, ::-1]]
    for i, cand in enumerate(candidates):
        if cand.shape == out.shape and np.array_equal(cand, out):
            return i
    raise AssertionError("output is not a flip/rotation of the input")


def test_flips_and_rotations_are_seeded_and_independent():
    image = _texture(32, 32)
    mask = _blob_mask(32, 32)

    def orientations(seed: int) -> list[int]:
        tr = training_transforms(32, seed=seed, scale_range=(1.0, 1.0), interpolation="nearest", **GEOMETRIC_ONLY)
        seen = []
        for _ in range(64):
            out_img, out_mask = tr(image, mask)
            o = _orientation(out_img, image)
            assert _orientation(out_mask, mask) == o  # the mask moved exactly like the image
            seen.append(o)
        return seen

    first = orientations(7)
    assert first == orientations(7)
    assert first != orientations(8)
    # horizontal flip, vertical flip and rotation fire independently: all 8 orientations occur
    assert len(set(first)) == 8


def _with_transform(cls, **kwargs):
    import albumentations as A

    t = cls(p=1.0, **kwargs)
    compose = A.Compose([t], seed=0)
    return t, compose


def test_random_copy_move_marks_the_pasted_box():
    image, mask = _texture(), np.zeros((90, 120), np.uint8)
    t, compose = _with_transform(AUG.RandomCopyMove)
    for _ in range(10):
        out = compose(image=image, mask=mask)
        p = t.get_applied_params()
        (sy, sx), (dy, dx), (bh, bw) = p["src"], p["dst"], p["box"]
        assert (sy, sx) != (dy, dx)
        expected_mask = np.zeros_like(mask)
        expected_mask[dy : dy + bh, dx : dx + bw] = 1
        assert np.array_equal(out["mask"], expected_mask)
        assert np.array_equal(out["image"][dy : dy + bh, dx : dx + bw], image[sy : sy + bh, sx : sx + bw])
        outside = expected_mask == 0
        assert np.array_equal(out["image"][outside], image[outside])
    # an existing 0/255 mask keeps its convention and its other tampered pixels
    prior = np.zeros((90, 120), np.uint8)
    prior[0:5, 0:5] = 255
    out = compose(image=image, mask=prior)
    assert set(np.unique(out["mask"])) == {0, 255} and (out["mask"][prior == 255] == 255).all()


def test_random_inpainting_marks_the_box():
    image, mask = _texture(), np.zeros((90, 120), bool)
    t, compose = _with_transform(AUG.RandomInpainting)
    for _ in range(5):
        out = compose(image=image, mask=mask)
        (y, x), (bh, bw) = t.get_applied_params()["origin"], t.get_applied_params()["box"]
        box = np.zeros((90, 120), bool)
        box[y : y + bh, x : x + bw] = True
        assert np.array_equal(out["mask"], box)
        assert np.array_equal(out["image"][~box], image[~box])
        assert (out["image"][box] != image[box]).any(axis=-1).mean() > 0.5  # noise is replaced by a smooth fill


def test_evaluation_transforms():
    image, mask = _texture(), _blob_mask()
    ident = evaluation_transforms()
    out_img, out_mask = ident(image, mask)
    assert np.array_equal(out_img, image) and np.array_equal(out_mask, mask)
    resized_img, resized_mask = evaluation_transforms(size=(45, 60))(image, mask.astype(np.uint8) * 255)
    assert resized_img.shape == (45, 60, 3) and resized_mask.shape == (45, 60)
    assert set(np.unique(resized_mask)) <= {0, 255}
    np.testing.assert_array_equal(resized_mask > 0, mask[::2, ::2])  # nearest neighbour for the mask


def test_dataloader_workers_get_distinct_reproducible_streams(monkeypatch):
    image, mask = _texture(), _blob_mask()

    def run(worker_seed):
        info = SimpleNamespace(id=0, seed=worker_seed)
        fake_torch = SimpleNamespace(utils=SimpleNamespace(data=SimpleNamespace(get_worker_info=lambda: info)))
        monkeypatch.setitem(sys.modules, "torch", fake_torch)
        tr = training_transforms(32, seed=5)
        return [tr(image, mask)[0] for _ in range(4)]

    w1, w1_again, w2 = run(1000), run(1000), run(1001)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w1_again))
    assert any(not np.array_equal(a, b) for a, b in zip(w1, w2))


def test_missing_albumentations_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)
    with pytest.raises(ImportError, match=r"pip install sparsevit-hf\[train\]"):
        training_transforms(64)


def test_transforms_pickle_for_dataloader_workers():
    import pickle

    image, mask = _texture(), _blob_mask()
    tr = training_transforms(32, seed=3, copy_move_p=1.0, inpainting_p=1.0)
    clone = pickle.loads(pickle.dumps(tr))  # spawn / forkserver workers receive a pickled copy
    for _ in range(3):
        (a, ma), (b, mb) = tr(image, mask), clone(image, mask)
        assert np.array_equal(a, b) and np.array_equal(ma, mb)
