"""The Inference Endpoints handler (`handler.py` at the root of every model folder): what it accepts, what it returns,
that it works where the package is not installed, and that it predicts what the package predicts."""

import base64
import importlib.util
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from conftest import run_without_package, save_tiny_localizer
from huggingface_hub import ImageSegmentationOutputElement
from PIL import Image
from reference_sparsevit import official_shapes, random_official_state_dict
from transformers import pipeline

from sparsevit_hf.cli.convert import main as convert_main
from sparsevit_hf.hub.endpoint import HANDLER_SOURCE
from sparsevit_hf.inference import predict_probabilities

pytestmark = pytest.mark.usefixtures("one_thread")


def noise_image(height, width, seed=0, mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode=mode)


def encoded(image, format="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def load_handler_module(folder):
    spec = importlib.util.spec_from_file_location("endpoint_handler_under_test", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_mask(text) -> np.ndarray:
    mask = Image.open(io.BytesIO(base64.b64decode(text)))
    assert mask.mode == "L" and mask.format == "PNG"
    return np.asarray(mask)


def check_output(output, probability, threshold=0.5):
    """The image-segmentation format; masks are the thresholded map; scores are mean label probabilities."""
    elements = ImageSegmentationOutputElement.parse_obj_as_list(output)
    assert [element.label for element in elements] == [
        label for label, present in (("authentic", (probability <= threshold).any()),
                                     ("manipulated", (probability > threshold).any())) if present
    ]
    for element in elements:
        manipulated = element.label == "manipulated"
        region = probability > threshold if manipulated else probability <= threshold
        mask = decode_mask(element.mask)
        assert mask.shape == probability.shape and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, region)
        label_probability = probability if manipulated else 1.0 - probability
        assert isinstance(element.score, float) and 0.0 <= element.score <= 1.0
        assert element.score == pytest.approx(float(label_probability[region].mean()), abs=1e-6)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny model whose probabilities straddle 0.5 (both labels present), saved with its Endpoint files."""
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model, processor = save_tiny_localizer(folder)
    return folder, model, processor


@pytest.fixture(scope="module")
def handler_module(tiny_folder):
    return load_handler_module(tiny_folder[0])


@pytest.fixture(scope="module")
def handler(tiny_folder, handler_module):
    return handler_module.EndpointHandler(str(tiny_folder[0]))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A folder written by `sparsevit-convert` from a (random) official checkpoint: the published model."""
    root = tmp_path_factory.mktemp("converted")
    official = random_official_state_dict(official_shapes([64, 128, 320, 512], [5, 8, 20, 7], (4, 2)), seed=3)
    torch.save({"model": official}, root / "sparsevit.pth")
    assert convert_main(["--checkpoint", str(root / "sparsevit.pth"), "--output-dir", str(root / "out")]) == 0
    return root / "out"


def test_sparsevit_convert_writes_the_handler_and_its_requirements(converted):
    assert (converted / "handler.py").read_bytes() == HANDLER_SOURCE.read_bytes()
    requirements = (converted / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("transformers") and ">=5.24" in line for line in requirements)
    assert any(line.startswith("torch") and ">=2.13" in line for line in requirements)


def test_every_input_form_and_mode_without_the_package(converted, tmp_path):
    """The acceptance check: a converted folder served where only transformers, torch and safetensors exist."""
    image = noise_image(96, 160, seed=5)  # small, so that the native mode is cheap on the 50 M-parameter model
    image.save(tmp_path / "photo.png")
    stdout = run_without_package(
        f"""
        import base64, importlib.util, io, json, sys
        from PIL import Image

        spec = importlib.util.spec_from_file_location("handler", {str(converted / "handler.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = module.EndpointHandler({str(converted)!r})
        raw = open({str(tmp_path / "photo.png")!r}, "rb").read()
        text = base64.b64encode(raw).decode()
        native = {{"mode": "native"}}
        requests = {{
            "pil": {{"inputs": Image.open(io.BytesIO(raw)), "parameters": native}},
            "bytes": {{"inputs": raw, "parameters": native}},
            "data-url": {{"inputs": "data:image/png;base64," + text, "parameters": {{**native, "threshold": 0.5}}}},
            "resize": {{"inputs": text, "parameters": {{"threshold": 0.3}}}},
            "tiled": {{"inputs": raw, "parameters": {{"mode": "tiled"}}}},
        }}
        outputs = {{name: handler(request) for name, request in requests.items()}}
        assert "sparsevit_hf" not in sys.modules
        modules = [module.__name__ for module in (handler.decoding, handler.localization)]
        print(json.dumps({{"module": type(handler.model).__module__, "code": modules, "outputs": outputs}}))
        """,
        tmp_path,
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    assert not result["module"].startswith("sparsevit_hf")  # the folder's own code
    assert all(name.startswith("transformers_modules.") for name in result["code"])
    outputs = result["outputs"]
    for name, output in outputs.items():
        elements = ImageSegmentationOutputElement.parse_obj_as_list(output)
        assert elements and {element.label for element in elements} <= {"authentic", "manipulated"}, name
        union = np.zeros((96, 160), dtype=bool)
        for element in elements:
            assert isinstance(element.score, float) and 0.0 <= element.score <= 1.0, name
            mask = decode_mask(element.mask)
            assert mask.shape == (96, 160) and set(np.unique(mask)) <= {0, 255}, name
            assert not (union & (mask == 255)).any()
            union |= mask == 255
        assert union.all(), name
    assert outputs["pil"] == outputs["bytes"] == outputs["data-url"]
    assert outputs["tiled"] == outputs["bytes"]  # an image that fits in one tile: the native prediction

    # The same result as the package's own prediction.
    from sparsevit_hf.inference import load_model

    model, processor = load_model(converted)
    [probability] = predict_probabilities(model, processor, [image], mode="native")
    check_output(outputs["bytes"], probability)


@pytest.mark.parametrize("mode", ["resize", "native", "tiled"])
def test_the_handler_predicts_what_the_package_predicts(tiny_folder, handler, mode):
    _, model, processor = tiny_folder
    image = noise_image(560, 700, seed=2)  # 4 overlapping tiles in the tiled mode
    [expected] = predict_probabilities(model, processor, [image], mode=mode)
    got = handler.probabilities(image, mode)
    assert got.dtype == np.float32 and got.shape == (560, 700)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    check_output(handler({"inputs": encoded(image), "parameters": {"mode": mode}}), expected)


def test_scores_are_those_of_the_pipeline(tiny_folder, handler):
    folder, _, _ = tiny_folder
    image = noise_image(70, 90)
    segments = pipeline("image-segmentation", model=str(folder))(image)
    output = handler({"inputs": image})
    assert [(s["label"], pytest.approx(s["score"], abs=1e-6)) for s in segments] == [
        (element["label"], element["score"]) for element in output
    ]
    assert {element["label"] for element in output} == {"authentic", "manipulated"}


def test_threshold_and_its_other_names(tiny_folder, handler):
    _, model, processor = tiny_folder
    image = noise_image(70, 90)
    [probability] = predict_probabilities(model, processor, [image])
    check_output(handler({"inputs": image, "parameters": {"threshold": 0.3}}), probability, threshold=0.3)
    check_output(handler({"inputs": image, "parameters": {"mask_threshold": 0.7}}), probability, threshold=0.7)
    same = handler({"inputs": image, "parameters": {"threshold": 0.4, "mask_threshold": 0.4, "subtask": "semantic"}})
    check_output(same, probability, threshold=0.4)
    nothing_above = handler({"inputs": image, "parameters": {"threshold": 1.0}})
    assert [element["label"] for element in nothing_above] == ["authentic"]
    assert nothing_above[0]["score"] == pytest.approx(float((1.0 - probability).mean()), abs=1e-6)


def test_images_are_read_upright_and_as_rgb(handler):
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 40 x 70 file is a 70 x 40 picture.
    image = noise_image(40, 70, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6
    [element, *_] = handler({"inputs": encoded(image, "JPEG", exif=exif)})
    assert decode_mask(element["mask"]).shape == (70, 40)
    pictures = (noise_image(48, 64, mode="RGBA"), noise_image(48, 64).convert("P"), noise_image(48, 64).convert("L"))
    for picture in pictures:
        [element, *_] = handler({"inputs": encoded(picture)})
        assert decode_mask(element["mask"]).shape == (48, 64), picture.mode
    sixteen_bit = Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16))
    assert decode_mask(handler({"inputs": encoded(sixteen_bit)})[0]["mask"]).shape == (48, 64)


def test_the_handler_reads_files_as_the_package_does(tiny_folder, handler, tmp_path):
    """One decoder: a 32-bit integer TIFF holding 8-bit values is 8-bit data (an own decoder once divided it by 257,
    so that the handler saw a black photo where training and `sparsevit-predict` saw the picture)."""
    _, model, processor = tiny_folder
    values = np.random.default_rng(6).integers(0, 256, (48, 64)).astype(np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "eight_bit.tif")
    raw = (tmp_path / "eight_bit.tif").read_bytes()
    np.testing.assert_array_equal(np.asarray(handler.decode_image(raw)), np.repeat(values[..., None], 3, axis=-1))
    [expected] = predict_probabilities(model, processor, [tmp_path / "eight_bit.tif"], mode="native")
    check_output(handler({"inputs": raw, "parameters": {"mode": "native"}}), expected)


def test_decoding_and_the_modes_come_with_the_model_code(handler):
    """The handler holds no image decoding and no resolution mode of its own: it runs the processor's sibling modules
    (here the installed package's; without it, the folder's code files)."""
    assert handler.decoding.__name__.endswith(".image_decoding_sparsevit")
    assert handler.localization.__name__.endswith(".localization_sparsevit")
    assert handler.modes == ("resize", "native", "tiled")
    source = HANDLER_SOURCE.read_text()
    assert "exif" not in source.lower() and "tile_starts" not in source and "interpolate" not in source


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"inputs": b""}, "request body is empty"),
        ({"inputs": b"GIF89a but not really"}, "not an image file"),
        ({"inputs": encoded(noise_image(64, 64), "JPEG")[:200]}, "The request body: cannot open the image"),
        ({"inputs": ""}, "empty string"),
        ({"inputs": "not base64 at all!"}, "not valid base64"),
        ({"inputs": base64.b64encode(b"hello").decode()}, "not an image file"),
        ({"inputs": "data:image/png,iVBORw0KGgo="}, "without base64"),
        ({"inputs": "https://example.org/photo.jpg"}, "does not download"),
        ({"inputs": [1, 2, 3]}, "got list"),
        ({"image": "abc"}, '"inputs"'),
        ({"inputs": encoded(noise_image(20, 64))}, "64 x 20 pixels"),
        ({"inputs": b"x", "parameters": {"threshold": 1.5}}, "'threshold' must be a number in \\[0, 1\\]"),
        ({"inputs": b"x", "parameters": {"threshold": "0.5"}}, "'threshold' must be a number"),
        ({"inputs": b"x", "parameters": {"threshold": True}}, "'threshold' must be a number"),
        ({"inputs": b"x", "parameters": {"threshold": 0.3, "mask_threshold": 0.4}}, "name the same setting"),
        ({"inputs": b"x", "parameters": {"mode": "fast"}}, "'mode' must be one of resize, native, tiled"),
        ({"inputs": b"x", "parameters": {"subtask": "instance"}}, "'subtask' must be one of"),
        ({"inputs": b"x", "parameters": {"overlap_mask_area_threshold": 0.5}}, "Unknown parameter"),
        ({"inputs": b"x", "parameters": [0.5]}, '"parameters" must be a JSON object'),
    ],
)
def test_bad_requests_raise_value_errors_that_name_the_problem(handler, request_, message):
    with pytest.raises(ValueError, match=message):
        handler(request_)


def test_the_native_mode_refuses_images_above_its_limit(handler, monkeypatch):
    monkeypatch.setattr(handler, "max_pixels", 64 * 64)
    with pytest.raises(ValueError, match="use mode 'tiled'"):
        handler({"inputs": noise_image(65, 64), "parameters": {"mode": "native"}})
    assert handler({"inputs": noise_image(65, 64), "parameters": {"mode": "tiled"}})


def test_huggingface_hub_inference_client_reads_what_the_handler_returns(tiny_folder, handler, monkeypatch):
    """`InferenceClient.image_segmentation` against the handler behind a stand-in for the endpoint toolkit on
    127.0.0.1 (an `image/*` body becomes a PIL image; a JSON body is passed as it is; a ValueError is a 400)."""
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    class Toolkit(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Type", "").startswith("application/json"):
                data = json.loads(body)
            else:
                data = {"inputs": Image.open(io.BytesIO(body))}
            try:
                status, answer = 200, handler(data)
            except ValueError as error:
                status, answer = 400, {"error": str(error)}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    _, model, processor = tiny_folder
    image = noise_image(70, 90)
    [probability] = predict_probabilities(model, processor, [image])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the server is this process, on loopback
    server = ThreadingHTTPServer(("127.0.0.1", 0), Toolkit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = InferenceClient(model=f"http://127.0.0.1:{server.server_port}")
        for threshold in (None, 0.3):  # raw image bytes without parameters, base64 JSON with them
            segments = client.image_segmentation(encoded(image), threshold=threshold)
            expected = handler({"inputs": image, "parameters": {"threshold": threshold or 0.5}})
            assert [(s.label, s.score) for s in segments] == [(e["label"], e["score"]) for e in expected]
            for segment, element in zip(segments, expected, strict=True):
                assert segment.mask.size == (90, 70)
                np.testing.assert_array_equal(np.asarray(segment.mask), decode_mask(element["mask"]))
        with pytest.raises(Exception, match="64 x 20 pixels"):
            client.image_segmentation(encoded(noise_image(20, 64)))
    finally:
        server.shutdown()
        thread.join()
    check_output(expected, probability, threshold=0.3)
