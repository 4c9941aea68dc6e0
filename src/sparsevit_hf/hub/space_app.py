"""SparseViT image manipulation localization in the browser: the Gradio app of a SparseViT Space.

`sparsevit-space MODEL --output-dir DIR` copies this file to `DIR/app.py` with `MODEL` filled in, next to
`handler.py` (the model repository's Inference Endpoints handler), which loads the model (through its own code
files, so the Space does not need the sparsevit-hf package) and predicts, and `visualization.py` (the package's
picture code, NumPy and Pillow only), which outlines the region. The model is loaded once, when the app
starts; the `SPARSEVIT_MODEL` environment variable overrides `MODEL` (a Hub model id, or a model folder).

Upload a photo: the app shows the per-pixel probability of manipulation over the photo, the region above the
threshold outlined, a before/after slider, and an image-level score (the maximum probability). Its API endpoint
`/localize` takes the image, the threshold and the resolution mode, and returns the same outputs.

Run it locally with `python app.py`; `GRADIO_SERVER_NAME` and `GRADIO_SERVER_PORT` choose the address.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

MODEL = None  # sparsevit-space writes the model (a Hub id, or a folder next to app.py) here
HERE = Path(__file__).resolve().parent
DEFAULT_THRESHOLD = 0.5
# Pictures are shown at most this many pixels wide or high; the prediction itself runs at the mode's resolution.
DISPLAY_SIDE = 1600
# The heatmap: one annotation per probability band, coloured from violet (low) to yellow (high), each pixel as
# opaque as its probability; pixels below the first band are left clear.
HEATMAP_BANDS = (
    (0.1, 0.3, "#5b2a86"),
    (0.3, 0.5, "#b8327a"),
    (0.5, 0.7, "#e8573c"),
    (0.7, 0.9, "#f89a1c"),
    (0.9, 1.0, "#f9e14b"),
)
PICTURE_HEIGHT = 340
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MODE_HELP = (
    "resize: 512 x 512, the official protocol (fast). native: the whole photo at its resolution (keeps the fine "
    "traces of small edits; up to 4096 x 4096). tiled: overlapping 512-pixel tiles at full resolution, any size."
)


def load_module(name: str):
    """`name.py` beside this file, imported by path (the Space folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"sparsevit_space_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve_model(name: str | os.PathLike) -> Path:
    """A local model folder (as given, or relative to this file), else a Hub model id, downloaded once."""
    for candidate in (Path(name).expanduser(), HERE / name):
        if candidate.is_dir():
            return candidate
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(os.fspath(name)))


def example_images(model_folder: Path) -> list[str]:
    """The photos of `examples/` beside this file, and the model repository's widget example."""
    found = sorted(path for path in (HERE / "examples").glob("*") if path.suffix.lower() in EXAMPLE_SUFFIXES)
    found += [model_folder / f"example{suffix}" for suffix in EXAMPLE_SUFFIXES]
    return [str(path) for path in found if path.is_file()]


def band_label(low: float, high: float) -> str:
    return f"p {low:.1f}-{high:.1f}"


def heatmap_annotations(probability: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """`gr.AnnotatedImage` annotations of a probability map: per band of `HEATMAP_BANDS`, the probabilities of its
    pixels (the annotation's opacity) and 0 elsewhere; bands without pixels are left out."""
    annotations = []
    for low, high, _ in HEATMAP_BANDS:
        inside = (probability >= low) & ((probability < high) if high < 1.0 else (probability <= high))
        if inside.any():
            annotations.append((np.where(inside, probability, 0.0), band_label(low, high)))
    return annotations


def for_display(image: Image.Image, probability: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The photo and its probability map at most `DISPLAY_SIDE` pixels on a side."""
    scale = DISPLAY_SIDE / max(image.size)
    if scale >= 1:
        return image, probability
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = Image.fromarray(probability.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    return image.resize(size, Image.Resampling.LANCZOS), np.clip(np.asarray(small), 0.0, 1.0)


def build_demo(model: str | os.PathLike | None = None) -> gr.Blocks:
    """Load the model once and build the app (not launched)."""
    if model is None:
        raise ValueError("No model: set MODEL in app.py or the SPARSEVIT_MODEL environment variable.")
    handler_module, visualization = load_module("handler"), load_module("visualization")
    folder = resolve_model(model)
    handler = handler_module.EndpointHandler(os.fspath(folder))
    modes = list(handler.modes)

    def localize(image, threshold, mode):
        if image is None:
            raise gr.Error("Upload a photo first.")
        try:
            threshold, mode = handler_module.parse_parameters({"threshold": threshold, "mode": mode}, handler.modes)
            image = handler.decode_image(image)
            probability = handler.probabilities(image, mode)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        score = float(probability.max())
        fraction = float(np.mean(probability > threshold))
        shown, shown_probability = for_display(image, probability)
        region = visualization.outlined_image(shown, shown_probability, threshold)
        heatmap = (shown, heatmap_annotations(shown_probability))
        return heatmap, region, (shown, region), round(score, 4), round(fraction, 4)

    with gr.Blocks(title="SparseViT: image manipulation localization") as demo:
        gr.Markdown(
            f"# SparseViT: where was this photo manipulated?\n"
            f"Model: `{model}`. For every pixel, the probability that it was spliced in, copy-moved or removed. "
            "A high probability is evidence for a closer look, not proof; a low one does not certify a photo."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="pil", label="Photo", sources=["upload", "clipboard"], height=PICTURE_HEIGHT, elem_id="photo"
                )
                threshold = gr.Slider(
                    0.0, 1.0, DEFAULT_THRESHOLD, step=0.01, label="Threshold", elem_id="threshold",
                    info="A pixel is manipulated when its probability is above this value.",
                )
                mode = gr.Radio(modes, value=modes[0], label="Resolution mode", info=MODE_HELP, elem_id="mode")
                button = gr.Button("Localize manipulations", variant="primary", elem_id="localize")
                examples = example_images(folder)
                if examples:
                    gr.Examples([[path, DEFAULT_THRESHOLD, modes[0]] for path in examples], [image, threshold, mode])
            with gr.Column():
                with gr.Row():
                    score = gr.Number(
                        label="Image-level score (maximum probability)", precision=4, interactive=False, elem_id="score"
                    )
                    fraction = gr.Number(
                        label="Fraction of pixels above the threshold", precision=4, interactive=False,
                        elem_id="fraction",
                    )
                heatmap = gr.AnnotatedImage(
                    label="Probability heatmap (hover a band to highlight it)", format="png", elem_id="heatmap",
                    color_map={band_label(low, high): color for low, high, color in HEATMAP_BANDS},
                    height=PICTURE_HEIGHT,
                )
                with gr.Row():
                    region = gr.Image(
                        label="Region above the threshold", format="png", height=PICTURE_HEIGHT, elem_id="region"
                    )
                    before_after = gr.ImageSlider(
                        label="Before / after", format="png", max_height=PICTURE_HEIGHT, elem_id="before-after"
                    )
        button.click(
            localize,
            [image, threshold, mode],
            [heatmap, region, before_after, score, fraction],
            api_name="localize",
            api_description="Per-pixel manipulation probabilities of a photo: heatmap, outlined region, score.",
        )
    return demo


if __name__ == "__main__":
    build_demo(os.environ.get("SPARSEVIT_MODEL") or MODEL).launch()
