"""The Gradio Space that `sparsevit-space` writes: its files, its push (at the huggingface_hub API boundary), the app
through its API (`gradio_client`, `/localize`), in a real headless browser (Debian's chromium and chromium-driver,
driven with selenium), and run as `python app.py` where the package is not installed.

The browser test saves a screenshot; `SPARSEVIT_SCREENSHOT=docs/space.png` saves it there too (the README's picture),
and `SPARSEVIT_SPACE_MODEL=<model folder>` runs these tests on that model instead of a tiny random one.
"""

import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WITHOUT_PACKAGE, save_tiny_localizer
from huggingface_hub import SpaceCard
from PIL import Image

import sparsevit_hf.hub.space as hub_space
import sparsevit_hf.inference.visualization as visualization
from sparsevit_hf.cli.space import main as space_main
from sparsevit_hf.hub import GRADIO_VERSION, push_space, write_space
from sparsevit_hf.hub.endpoint import HANDLER_SOURCE

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio = pytest.importorskip("gradio", reason="the `space` extra (gradio) is not installed")
gradio_client = pytest.importorskip("gradio_client")

pytestmark = pytest.mark.usefixtures("one_thread")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1360,1160",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_app(space_dir: Path):
    spec = importlib.util.spec_from_file_location("space_app_under_test", space_dir / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """The model the Space serves: a tiny one with both labels present, or `SPARSEVIT_SPACE_MODEL`."""
    chosen = os.environ.get("SPARSEVIT_SPACE_MODEL")
    if chosen:
        return Path(chosen).resolve()
    folder = tmp_path_factory.mktemp("space-model") / "model"
    save_tiny_localizer(folder)
    return folder


@pytest.fixture(scope="module")
def space_dir(model_folder, tmp_path_factory):
    return write_space(model_folder, tmp_path_factory.mktemp("space") / "space")


@pytest.fixture(scope="module")
def predict(space_dir):
    """What the app must show, computed with the Space's own handler: the probability map of a file, per mode."""
    handler_module = load_app(space_dir).load_module("handler")
    handler = handler_module.EndpointHandler(str(space_dir / "model"))

    def probability(path, mode="resize"):
        return handler.probabilities(handler.decode_image(Path(path).read_bytes()), mode)

    return probability


@pytest.fixture(scope="module")
def app_url(space_dir, tmp_path_factory):
    """The app of the written Space, launched in this process on 127.0.0.1 (the model loaded once)."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    app = load_app(space_dir)
    demo = app.build_demo(app.MODEL)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return gradio_client.Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def example(space_dir) -> Path:
    """The Space's first example: a spliced photo."""
    return sorted((space_dir / "examples").glob("*.jpg"))[0]


def band_masks(annotations: list[tuple[np.ndarray, str]]) -> dict[str, np.ndarray]:
    """Annotation label -> alpha channel (uint8) of its mask picture."""
    return {label: np.asarray(picture.convert("RGBA"))[..., 3] for picture, label in annotations}


def check_heatmap(base: Image.Image, masks: dict[str, np.ndarray], probability: np.ndarray, app) -> None:
    """The heatmap shows the photo under one mask per probability band, each pixel as opaque as its probability."""
    assert base.size == (probability.shape[1], probability.shape[0])
    expected = {app.band_label(low, high): (low, high) for low, high, _ in app.HEATMAP_BANDS}
    assert masks and set(masks) <= set(expected)
    covered = np.zeros(probability.shape, dtype=bool)
    for label, alpha in masks.items():
        low, high = expected[label]
        inside = (probability >= low) & ((probability < high) if high < 1.0 else (probability <= high))
        assert alpha.shape == probability.shape
        np.testing.assert_allclose(alpha[inside], probability[inside] * 255, atol=1.01)
        assert (alpha[~inside] == 0).all()
        covered |= inside
    assert (covered == (probability >= expected[min(expected)][0])).all()


# ------------------------------------------------------------------------------------------------------------------
# The Space's files
# ------------------------------------------------------------------------------------------------------------------
def test_a_local_model_becomes_a_complete_space(space_dir, model_folder):
    names = {path.relative_to(space_dir).as_posix() for path in space_dir.rglob("*") if path.is_file()}
    assert {"app.py", "handler.py", "requirements.txt", "README.md", "model/model.safetensors", "model/config.json",
            "model/preprocessor_config.json", "model/modeling_sparsevit.py"} <= names
    examples = sorted(name for name in names if name.startswith("examples/"))
    assert [name.split("-")[2] for name in examples] == ["splicing", "copy_move", "removal"]  # one of each kind
    assert "model/README.md" not in names
    assert (space_dir / "handler.py").read_bytes() == HANDLER_SOURCE.read_bytes()
    # The app's pictures are the package's: its own copy of the visualization module, not a rewrite of it.
    assert (space_dir / "visualization.py").read_bytes() == Path(visualization.__file__).read_bytes()
    assert "def grow" not in (space_dir / "app.py").read_text()
    assert "\nMODEL = 'model'\n" in (space_dir / "app.py").read_text()
    requirements = (space_dir / "requirements.txt").read_text()
    assert "transformers" in requirements and "torch" in requirements and "gradio" not in requirements

    data = SpaceCard.load(space_dir / "README.md").data
    assert data.sdk == "gradio" and data.app_file == "app.py"
    assert data.sdk_version == GRADIO_VERSION == gradio.__version__  # the Space runs the Gradio the tests ran
    assert data.models is None  # the model is inside the Space
    assert data.title == f"SparseViT: {model_folder.name}" and len(data.short_description) <= 60


def test_a_hub_model_is_named_in_the_space_metadata(tmp_path):
    folder = write_space("forensics-lab/sparsevit-casia", tmp_path / "space", title="Forgery finder")
    data = SpaceCard.load(folder / "README.md").data
    assert data.models == ["forensics-lab/sparsevit-casia"] and data.title == "Forgery finder"
    assert "\nMODEL = 'forensics-lab/sparsevit-casia'\n" in (folder / "app.py").read_text()
    assert not (folder / "model").exists()
    assert "https://huggingface.co/forensics-lab/sparsevit-casia" in (folder / "README.md").read_text()


def test_a_model_name_is_a_folder_or_a_hub_id_by_the_rule_of_load_model(tmp_path):
    # `sparsevit_hf.utils.is_local_path`: a Hub id may lack an owner (as load_model accepts), a path may not be one.
    folder = write_space("sparsevit-casia", tmp_path / "space")
    assert "\nMODEL = 'sparsevit-casia'\n" in (folder / "app.py").read_text()
    for name in ("./sparsevit-casia", "a/b/c", "pairs.json", str(tmp_path / "missing")):
        with pytest.raises(ValueError, match="neither a model folder nor a Hub model id"):
            write_space(name, tmp_path / "other")


def test_the_command_line(model_folder, tmp_path, capsys):
    assert space_main([str(model_folder), "--output-dir", str(tmp_path / "space"), "--title", "Demo"]) == 0
    assert f"python {tmp_path / 'space' / 'app.py'}" in capsys.readouterr().out
    (tmp_path / "not-a-model").mkdir()
    assert space_main([str(tmp_path / "not-a-model"), "--output-dir", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert space_main(["./missing-folder", "--output-dir", str(tmp_path / "x")]) == 2
    assert "neither a model folder nor a Hub model id" in capsys.readouterr().err
    assert space_main(["a/b", "--output-dir", str(tmp_path / "x"), "--short-description", "x" * 61]) == 2
    assert "61 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        space_main(["a/b", "--output-dir", str(tmp_path / "x"), "--private"])
    assert "need --push" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# Pushing
# ------------------------------------------------------------------------------------------------------------------
class FakeHfApi:
    """Records what push_space asks of huggingface_hub; never touches the network."""

    instances = []

    def __init__(self, token=None, **kwargs):
        self.token = token
        self.calls = []
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "commit-info"


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.instances = []
    monkeypatch.setattr(hub_space, "HfApi", FakeHfApi)
    return FakeHfApi


def test_push_creates_the_gradio_space_and_uploads_the_folder(fake_api, space_dir, tmp_path):
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = tmp_path / "space"
    shutil.copytree(space_dir, folder)
    for junk in ("__pycache__/app.cpython-311.pyc", ".gradio/flagged/log.csv", "flagged/data.csv"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("junk")
    assert push_space(folder, "forensics-lab/sparsevit-demo", token="hf_test", private=True) == "commit-info"
    (api,) = fake_api.instances
    (create, upload) = api.calls
    assert api.token == "hf_test"
    assert create == ("create_repo", "forensics-lab/sparsevit-demo",
                      {"repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True})
    kwargs = upload[2]
    assert kwargs["repo_type"] == "space" and Path(kwargs["folder_path"]) == folder
    names = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    patterns = kwargs["ignore_patterns"] + list(DEFAULT_IGNORE_PATTERNS)
    uploaded = set(filter_repo_objects(names, ignore_patterns=patterns))
    assert {"app.py", "handler.py", "requirements.txt", "README.md", "model/model.safetensors"} <= uploaded
    assert not any("pycache" in name or "flagged" in name or "gradio" in name for name in uploaded)

    # The command line pushes the same way; a folder that is not a Space is refused before any Hub call.
    assert space_main([str(space_dir / "model"), "--output-dir", str(tmp_path / "again"), "--push", "me/demo"]) == 0
    assert fake_api.instances[-1].calls[0][1] == "me/demo"
    calls_before = len(fake_api.instances)
    (folder / "app.py").unlink()
    with pytest.raises(ValueError, match="app.py"):
        push_space(folder, "forensics-lab/sparsevit-demo")
    assert len(fake_api.instances) == calls_before


# ------------------------------------------------------------------------------------------------------------------
# The app: API, browser, python app.py
# ------------------------------------------------------------------------------------------------------------------
def test_the_localize_api(client, space_dir, predict):
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {"/localize"}
    photo = example(space_dir)
    heatmap, region, before_after, score, fraction = client.predict(
        gradio_client.handle_file(str(photo)), 0.3, "native", api_name="/localize"
    )
    probability = predict(photo, "native")
    assert score == pytest.approx(round(float(probability.max()), 4), abs=1e-4)
    assert fraction == pytest.approx(round(float((probability > 0.3).mean()), 4), abs=1e-4)
    app = load_app(space_dir)
    annotations = [(Image.open(entry["image"]), entry["label"]) for entry in heatmap["annotations"]]
    check_heatmap(Image.open(heatmap["image"]), band_masks(annotations), probability, app)
    original = np.asarray(Image.open(photo).convert("RGB"))
    outlined = np.asarray(Image.open(region).convert("RGB"))
    assert outlined.shape == original.shape
    changed = (outlined != np.asarray(Image.open(before_after[0]).convert("RGB"))).any(axis=-1)
    assert changed.any() == bool((probability > 0.3).any())  # the tinted, outlined region
    assert Path(before_after[1]).read_bytes() == Path(region).read_bytes()


def test_the_api_explains_bad_input(client, tmp_path):
    Image.new("RGB", (20, 40)).save(tmp_path / "thumbnail.png")
    with pytest.raises(Exception, match="32 x 32"):
        client.predict(gradio_client.handle_file(str(tmp_path / "thumbnail.png")), 0.5, "resize", api_name="/localize")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()


def fetch_image(url: str) -> Image.Image:
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as response:
        return Image.open(io.BytesIO(response.read()))


def test_a_person_uploads_a_photo_in_a_real_browser(browser, app_url, space_dir, predict, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = example(space_dir)
    browser.get(app_url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))[0]
    upload.send_keys(str(photo))
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#photo img"))
    browser.find_element(By.CSS_SELECTOR, "#localize").click()
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#region img"))
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#heatmap img")) >= 2)

    probability = predict(photo)
    score = wait.until(lambda page: page.find_element(By.CSS_SELECTOR, "#score input").get_attribute("value"))
    assert float(score) == pytest.approx(round(float(probability.max()), 4), abs=1e-4)
    fraction = browser.find_element(By.CSS_SELECTOR, "#fraction input").get_attribute("value")
    assert float(fraction) == pytest.approx(round(float((probability > 0.5).mean()), 4), abs=1e-4)

    # The heatmap as the page shows it: the photo, then one mask picture per band, named in the legend.
    pictures = browser.find_elements(By.CSS_SELECTOR, "#heatmap img")
    base, *masks = [fetch_image(picture.get_attribute("src")) for picture in pictures]
    legend = [item.text.strip() for item in browser.find_elements(By.CSS_SELECTOR, "#heatmap .legend-item")]
    assert len(legend) == len(masks)
    app = load_app(space_dir)
    check_heatmap(base, band_masks(list(zip(masks, legend))), probability, app)

    screenshot = tmp_path / "space.png"
    browser.save_screenshot(str(screenshot))
    picture = Image.open(screenshot)
    assert picture.size[0] >= 1000 and np.asarray(picture.convert("L")).std() > 10  # a rendered page, not blank
    target = os.environ.get("SPARSEVIT_SCREENSHOT")
    if target:  # the README's picture: 256 colours keep it small
        picture.convert("RGB").quantize(256).save(target, optimize=True)


def test_python_app_py_serves_without_the_package(space_dir, model_folder, tmp_path):
    """`python app.py` where sparsevit_hf is not installed, on the address of GRADIO_SERVER_NAME/PORT, with
    SPARSEVIT_MODEL overriding the model written into app.py (here: the same model with a shifted bias)."""
    from sparsevit_hf.inference import load_model, predict_probabilities

    model, processor = load_model(model_folder)
    with torch.no_grad():
        model.fusion_head.classifier.bias += 1.0
    other = tmp_path / "other-model"
    model.save_pretrained(other)
    processor.save_pretrained(other)
    photo = example(space_dir)
    [expected] = predict_probabilities(model, processor, [Image.open(photo).convert("RGB")])

    port = free_port()
    script = WITHOUT_PACKAGE + textwrap.dedent(
        f"""
        import runpy
        runpy.run_path({str(space_dir / "app.py")!r}, run_name="__main__")
        """
    )
    env = {
        **os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "SPARSEVIT_MODEL": str(other),
        "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "OMP_NUM_THREADS": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": "", "HF_HUB_OFFLINE": "1",
    }
    log = open(tmp_path / "app.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, (tmp_path / "app.log").read_text()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the app did not start:\n" + (tmp_path / "app.log").read_text()
            time.sleep(0.5)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path))
        *_, score, _ = client.predict(gradio_client.handle_file(str(photo)), 0.5, "resize", api_name="/localize")
        assert score == pytest.approx(round(float(expected.max()), 4), abs=1e-4)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
