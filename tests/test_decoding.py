"""One decoder: every path that reads an image or a mask file gets the same pixels and the same mask.

A corpus of awkward files is generated here (EXIF-rotated JPEG, 16-bit PNG, mode-I TIFF and PGM, float TIFF,
palette, CMYK JPEG, RGBA, LA, bilevel and 0/1 masks, RGB masks with one channel set, a lossy JPEG mask, a mask with
the same EXIF rotation as its image). Each file goes through the data loaders, the training and evaluation data sets,
the inference loading and prediction, and the image processor given the path and given the PIL image; all must agree,
and agree with the rules written out independently below.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparsevit_hf import SparseViTForManipulationLocalization, SparseViTImageProcessor, inference
from sparsevit_hf import image_decoding_sparsevit as decoder

datasets = pytest.importorskip("datasets")

from sparsevit_hf import data  # noqa: E402

HEIGHT, WIDTH = 48, 64  # every image and mask of the corpus, upright
ORIENTATION = 0x0112
BOX = (slice(10, 30), slice(8, 40))  # the manipulated region of the masks, upright


def _gradient(channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth (JPEG-friendly) 8-bit content that differs between channels."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    planes = [(x * (3 + c) + y * (5 - c) + 40 * seed) % 256 for c in range(channels)]
    return np.rint(np.stack(planes, axis=-1)).astype(np.uint8)


def _box_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[BOX] = True
    return mask


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif


def _upright_from_orientation_6(stored: np.ndarray) -> np.ndarray:
    """Orientation 6 means: rotate the stored pixels 90 degrees clockwise for display."""
    return np.rot90(stored, k=-1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, dict]:
    """`{name: {"image": path, "mask": path, "expected_image": array or None, "expected_mask": array}}`."""
    root = tmp_path_factory.mktemp("corpus")
    rgb = _gradient()
    box = _box_mask()
    entries: dict[str, dict] = {}

    def add(name, image_path, mask_path, expected_image, expected_mask=box):
        entries[name] = {
            "image": image_path,
            "mask": mask_path,
            "expected_image": expected_image,
            "expected_mask": expected_mask,
        }

    # EXIF-rotated JPEG, with a PNG mask stored the same way and carrying the same orientation: read upright, both
    # stay aligned. The stored pixels are the upright ones rotated back.
    stored_image = np.ascontiguousarray(np.rot90(rgb, k=1))
    stored_image[np.rot90(box, k=1)] = 255  # the manipulated region is white in the image too
    Image.fromarray(stored_image).save(root / "exif6.jpg", quality=95, exif=_exif(6))
    Image.fromarray(np.rot90(box, k=1).astype(np.uint8) * 255).save(root / "exif6_mask.png", exif=_exif(6))
    with Image.open(root / "exif6.jpg") as stored:
        expected = _upright_from_orientation_6(np.asarray(stored.convert("RGB")))
    add("exif-rotated jpeg + rotated mask", root / "exif6.jpg", root / "exif6_mask.png", expected)

    # 16-bit PNG (I;16): scaled to 8 bits, round(v / 257); its mask is a 16-bit 0/1 label map.
    gray16 = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 21).astype(np.uint16)
    Image.fromarray(gray16).save(root / "gray16.png")
    Image.fromarray(box.astype(np.uint16)).save(root / "mask16_zero_one.png")
    expected = np.repeat(np.rint(gray16 / 257.0).astype(np.uint8)[..., None], 3, axis=-1)
    add("16-bit png + 16-bit 0/1 mask", root / "gray16.png", root / "mask16_zero_one.png", expected)

    # Mode "I" TIFF holding 8-bit values: read as 8-bit (max 255, not 1 or 1/255); its mask is a mode "I" 0/1 map.
    gray8 = _gradient(1)[..., 0]
    gray8[0, 0] = 255
    Image.fromarray(gray8.astype(np.int32)).save(root / "mode_i_8bit.tif")
    Image.fromarray(box.astype(np.int32)).save(root / "mask_mode_i.tif")
    expected = np.repeat(gray8[..., None], 3, -1)
    add("mode I tiff, 8-bit values", root / "mode_i_8bit.tif", root / "mask_mode_i.tif", expected)

    # 16-bit PGM (opens as mode "I" with values above 255): 16-bit data.
    Image.fromarray(gray16).save(root / "gray16.pgm")
    with Image.open(root / "gray16.pgm") as check:
        assert check.mode == "I"
    expected = entries["16-bit png + 16-bit 0/1 mask"]["expected_image"]
    add("16-bit pgm (mode I)", root / "gray16.pgm", root / "mask16_zero_one.png", expected)

    # Float TIFF (mode F) in [0, 1]: round(255 v); its mask is a float TIFF too (mean > 0.5).
    unit = _gradient(1)[..., 0].astype(np.float32) / 255.0
    Image.fromarray(unit).save(root / "float.tif")
    float_mask = np.where(box, np.float32(0.75), np.float32(0.25))
    Image.fromarray(float_mask).save(root / "mask_float.tif")
    expected = np.repeat(np.rint(unit * 255)[..., None], 3, -1).astype(np.uint8)
    add("float tiff", root / "float.tif", root / "mask_float.tif", expected)

    # Palette image with a palette mask (white and pure red entries: red has mean 85, authentic).
    palette_image = Image.fromarray(rgb).quantize(colors=32)
    palette_image.save(root / "palette.png")
    indices = np.where(box, 1, 0).astype(np.uint8)
    indices[0, :4] = 2  # pure red: not manipulated under the official rule
    palette_mask = Image.frombytes("P", (WIDTH, HEIGHT), indices.tobytes())
    palette_mask.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (253 * 3))
    palette_mask.save(root / "mask_palette.png")
    expected = np.asarray(palette_image.convert("RGB"))
    add("palette png + palette mask", root / "palette.png", root / "mask_palette.png", expected)

    # CMYK JPEG (Pillow's conversion) with a lossy greyscale JPEG mask (the official mean > 127.5).
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    Image.fromarray(box.astype(np.uint8) * 255).save(root / "mask_lossy.jpg", quality=40)
    with Image.open(root / "cmyk.jpg") as stored:
        assert stored.mode == "CMYK"
        expected = np.asarray(stored.convert("RGB"))
    with Image.open(root / "mask_lossy.jpg") as lossy:
        lossy_values = np.asarray(lossy.convert("RGB")).astype(np.float64)
        assert not set(np.unique(lossy_values).tolist()) <= {0.0, 255.0}  # really lossy
        expected_lossy = lossy_values.mean(axis=-1) > 127.5
    add("cmyk jpeg + lossy jpeg mask", root / "cmyk.jpg", root / "mask_lossy.jpg", expected, expected_lossy)

    # RGBA (alpha dropped, not composited) with an RGB mask where one channel alone is set outside the box.
    alpha = np.linspace(0, 255, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(root / "rgba.png")
    rgb_mask = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb_mask[box] = 255
    rgb_mask[40:, :, 0] = 255  # red only: mean 85, authentic
    Image.fromarray(rgb_mask).save(root / "mask_rgb_one_channel.png")
    add("rgba png + rgb mask with one channel set", root / "rgba.png", root / "mask_rgb_one_channel.png", rgb)

    # LA (grey replicated, alpha dropped) with an RGB 0/1 mask with one channel set outside the box (a label map
    # read like its 0/255 version: authentic there).
    grey = _gradient(1, seed=2)[..., 0]
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(root / "la.png")
    rgb01 = (rgb_mask > 0).astype(np.uint8)
    Image.fromarray(rgb01).save(root / "mask_rgb_zero_one.png")
    add("LA png + rgb 0/1 mask", root / "la.png", root / "mask_rgb_zero_one.png", np.repeat(grey[..., None], 3, -1))

    # A plain RGB PNG with a bilevel (boolean, mode "1") mask and a TGA copy (an extension every path scans).
    Image.fromarray(rgb).save(root / "plain.tga")
    Image.fromarray(box).save(root / "mask_bool.png")
    with Image.open(root / "mask_bool.png") as check:
        assert check.mode == "1"
    add("tga + bilevel mask", root / "plain.tga", root / "mask_bool.png", rgb)
    return entries


@pytest.fixture(scope="module")
def processor():
    return SparseViTImageProcessor(size={"height": 64, "width": 64})


def _open(path: Path) -> Image.Image:
    """A PIL image as a user opens it (lazily, its EXIF tags still there)."""
    return Image.open(path)


# ------------------------------------------------------------------------------------------------------------------
# The rules, written out
# ------------------------------------------------------------------------------------------------------------------
def test_the_decoder_follows_the_documented_rules(corpus):
    for name, entry in corpus.items():
        image = decoder.decode_image(entry["image"])
        assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3), name
        np.testing.assert_array_equal(image, entry["expected_image"], err_msg=name)
        assert image.flags.writeable and image.flags.c_contiguous, name  # transforms may write to it
        mask = decoder.decode_mask(entry["mask"])
        assert mask.dtype == np.bool_ and mask.shape == (HEIGHT, WIDTH), name
        np.testing.assert_array_equal(mask, entry["expected_mask"], err_msg=name)


def test_an_exif_rotated_image_stays_aligned_with_its_mask(corpus):
    entry = corpus["exif-rotated jpeg + rotated mask"]
    image, mask = data.load_example({"image": str(entry["image"]), "mask": str(entry["mask"])})
    # The white region of the image is where the mask is (up to JPEG ringing at its edges).
    assert np.median(image[mask]) >= 250 and np.median(image[~mask]) < 200
    assert data.image_size(str(entry["image"])) == (WIDTH, HEIGHT)  # upright size, from the header
    assert data.validate_dataset(_dataset(corpus)).ok


def test_mode_i_8_bit_values_read_as_8_bit_everywhere(corpus, processor):
    # Before one decoder: 255 in the data loaders, 1 in prediction, 1/255 in the processor.
    path = corpus["mode I tiff, 8-bit values"]["image"]
    assert data.load_image(path).max() == 255
    assert np.asarray(inference.load_image(path)).max() == 255
    from_path = processor(str(path), do_resize=False, do_normalize=False, return_tensors="np")["pixel_values"]
    assert from_path.max() == pytest.approx(1.0)


def test_an_rgb_boolean_mask_with_one_channel_set_is_authentic_everywhere(processor):
    # Read like its 0/255 version under the official rule (mean 85 < 127.5); the loaders used to say manipulated.
    mask = np.zeros((HEIGHT, WIDTH, 3), dtype=bool)
    mask[..., 0] = True
    assert not data.load_mask(mask).any()
    assert not data.load_mask((mask * 255).astype(np.uint8)).any()
    labels = processor(np.zeros((HEIGHT, WIDTH, 3), np.uint8), segmentation_maps=mask, return_tensors="np")["labels"]
    assert labels.sum() == 0
    assert data.load_mask(np.ones((HEIGHT, WIDTH, 3), dtype=bool)).all()


def test_one_extension_list_everywhere(tmp_path):
    from sparsevit_hf.inference import files as predict_files  # what sparsevit-predict scans folders with

    assert data.IMAGE_EXTENSIONS is inference.IMAGE_EXTENSIONS is decoder.IMAGE_EXTENSIONS
    assert predict_files.IMAGE_EXTENSIONS is decoder.IMAGE_EXTENSIONS
    assert {".jpg", ".png", ".tif", ".bmp", ".webp", ".jp2", ".tga", ".pgm", ".pbm"} <= decoder.IMAGE_EXTENSIONS
    for suffix in (".jp2", ".tga", ".pbm"):  # scanned by the data loaders as by sparsevit-predict
        folder = tmp_path / suffix[1:]
        (folder / "Tp").mkdir(parents=True)
        (folder / "Gt").mkdir()
        Image.fromarray(_gradient()).convert("1" if suffix == ".pbm" else "RGB").save(folder / "Tp" / f"a{suffix}")
        Image.fromarray(_box_mask()).save(folder / "Gt" / "a.png")
        assert len(data.load_iml_dataset(folder)) == 1, suffix


def test_decoding_errors_name_the_file(tmp_path, monkeypatch):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    with pytest.raises(data.CorruptImageError, match="garbage.png"):
        data.load_image(garbage)
    with pytest.raises(inference.ImageLoadError, match="garbage.png"):
        inference.load_image(garbage)
    with pytest.raises(ValueError, match="garbage.png"):
        SparseViTImageProcessor()(str(garbage))
    with pytest.raises(data.MissingFilesError, match="missing.png"):
        data.load_image(tmp_path / "missing.png")
    wide = np.full((HEIGHT, WIDTH), 70000, dtype=np.int32)
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    with pytest.raises(decoder.ImageDecodingError, match=r"wide.tif.*\[70000, 70000\]"):
        decoder.decode_image(tmp_path / "wide.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", HEIGHT * WIDTH // 4)  # the image is over twice the limit
    with pytest.raises(decoder.ImageDecodingError, match=r"wide.tif.*decompression bomb.*MAX_IMAGE_PIXELS"):
        decoder.decode_image(tmp_path / "wide.tif")
    monkeypatch.undo()
    Image.fromarray(np.full((HEIGHT, WIDTH), 3.0, dtype=np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(data.CorruptImageError, match=r"hdr.tif.*must be in \[0, 1\]"):
        data.load_image(tmp_path / "hdr.tif")


# ------------------------------------------------------------------------------------------------------------------
# Every path gives the same pixels and masks
# ------------------------------------------------------------------------------------------------------------------
def _dataset(corpus):
    pairs = [[str(entry["image"]), str(entry["mask"])] for entry in corpus.values()]
    spec = Path(next(iter(corpus.values()))["image"]).parent / "pairs.json"
    spec.write_text(json.dumps(pairs))
    return data.load_iml_dataset(spec)


def test_every_data_path_decodes_the_same(corpus):
    rows = data.with_decoding(_dataset(corpus))
    for index, (name, entry) in enumerate(corpus.items()):
        expected_image, expected_mask = entry["expected_image"], entry["expected_mask"]
        for image, mask in (
            (data.load_image(entry["image"]), data.load_mask(entry["mask"])),
            (data.load_image(str(entry["image"])), data.load_mask(_open(entry["mask"]))),
            (
                data.load_image(Path(entry["image"]).read_bytes()),
                data.load_mask({"path": None, "bytes": Path(entry["mask"]).read_bytes()}),
            ),
            (rows[index]["image"], rows[index]["mask"]),
        ):
            np.testing.assert_array_equal(image, expected_image, err_msg=name)
            np.testing.assert_array_equal(mask, expected_mask, err_msg=name)
        # `datasets.Image` decoding (what `ds[i]["image"]` gives) read through the decoder is the same too.
        np.testing.assert_array_equal(data.load_image(_dataset(corpus)[index]["image"]), expected_image, err_msg=name)


def test_the_processor_reads_paths_and_pil_images_like_the_loaders(corpus, processor):
    for name, entry in corpus.items():
        image, mask = entry["expected_image"], entry["expected_mask"]
        expected = processor(image, segmentation_maps=mask, return_tensors="np")
        for image_input, mask_input in (
            (str(entry["image"]), str(entry["mask"])),
            (entry["image"], entry["mask"]),
            (_open(entry["image"]), _open(entry["mask"])),
        ):
            got = processor(image_input, segmentation_maps=mask_input, return_tensors="np")
            np.testing.assert_array_equal(got["pixel_values"], expected["pixel_values"], err_msg=name)
            np.testing.assert_array_equal(got["labels"], expected["labels"], err_msg=name)
        unpadded = {"do_resize": False, "do_normalize": False, "do_pad": False, "return_tensors": "np"}
        native = processor(_open(entry["image"]), **unpadded)["pixel_values"][0]
        np.testing.assert_allclose(native, image.transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-7, err_msg=name)


def test_training_and_evaluation_data_sets_match_the_processor(corpus, processor):
    from sparsevit_hf.evaluation import IMLEvaluationDataset
    from sparsevit_hf.training import IMLTrainingDataset

    dataset = _dataset(corpus)
    train = IMLTrainingDataset(dataset, processor, image_size=64, augment=False)
    evaluation = IMLEvaluationDataset(dataset, processor)
    for index, (name, entry) in enumerate(corpus.items()):
        expected = processor(entry["expected_image"], segmentation_maps=entry["expected_mask"], return_tensors="pt")
        for item in (train[index], evaluation[index]):
            torch.testing.assert_close(item["pixel_values"], expected["pixel_values"][0], rtol=0, atol=0, msg=name)
            torch.testing.assert_close(item["labels"], expected["labels"][0], rtol=0, atol=0, msg=name)
        np.testing.assert_array_equal(evaluation[index]["mask"], entry["expected_mask"], err_msg=name)


def test_prediction_reads_paths_pil_images_and_arrays_alike(corpus, processor, tiny_config):
    torch.manual_seed(0)
    tiny_config.layer_scale_init_value = 0.3
    model = SparseViTForManipulationLocalization(tiny_config).eval()
    torch.set_num_threads(1)
    predictor = inference.Predictor(model, processor, "resize")
    for name, entry in corpus.items():
        for loaded in (inference.load_image(entry["image"]), inference.to_rgb(_open(entry["image"]))):
            np.testing.assert_array_equal(np.asarray(loaded), entry["expected_image"], err_msg=name)
        maps = predictor.predict([entry["image"], _open(entry["image"]), entry["expected_image"]])
        assert maps[0].shape == (HEIGHT, WIDTH), name
        for other in maps[1:]:
            np.testing.assert_array_equal(other, maps[0], err_msg=name)
        with torch.no_grad():
            logits = model(**processor(entry["expected_image"], return_tensors="pt")).logits
        expected = processor.post_process_semantic_segmentation(logits, [(HEIGHT, WIDTH)], return_probabilities=True)
        np.testing.assert_allclose(maps[0], expected[0]["probabilities"].numpy(), atol=1e-6, err_msg=name)


def test_decoding_logs_nothing(corpus, processor, caplog):
    with caplog.at_level(logging.DEBUG, logger="sparsevit_hf"):
        for entry in corpus.values():
            data.load_example({"image": str(entry["image"]), "mask": str(entry["mask"])})
            processor(str(entry["image"]), segmentation_maps=str(entry["mask"]))
    assert not caplog.records


def test_the_real_samples_decode_alike_everywhere(shared_dir, processor):
    # Three real tampered photos; their masks are a grey PNG, an RGB PNG and a lossy JPEG.
    for image_path in sorted((shared_dir / "samples" / "Tp").glob("*.jpg")):
        mask_path = next((shared_dir / "samples" / "Gt").glob(f"{image_path.stem}.*"))
        image, mask = data.load_example({"image": str(image_path), "mask": str(mask_path)})
        with Image.open(mask_path) as official:
            np.testing.assert_array_equal(mask, np.asarray(official.convert("RGB"), np.float64).mean(-1) > 127.5)
        np.testing.assert_array_equal(np.asarray(inference.load_image(image_path)), image)
        expected = processor(image, segmentation_maps=mask, return_tensors="np")
        for image_input, mask_input in ((str(image_path), str(mask_path)), (_open(image_path), _open(mask_path))):
            got = processor(image_input, segmentation_maps=mask_input, return_tensors="np")
            np.testing.assert_array_equal(got["pixel_values"], expected["pixel_values"])
            np.testing.assert_array_equal(got["labels"], expected["labels"])
