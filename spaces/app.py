"""hf-counterfactual Space: FIDO saliency, PAT multi-label predictions, CGN counterfactuals, robust FT.

    python spaces/app.py                                   # the bundled checkpoints in spaces/checkpoints/
    python spaces/app.py --checkpoints DIR --port 7860
    python spaces/app.py --model fido=ORG/classifier --classifier mine=path/to/classifier

Models load with `from_pretrained`, so each may be a folder or a Hub id. Slots (folder names under the
checkpoint directory by default, overridable by `--model SLOT=SOURCE` or `SPACE_MODEL_<SLOT>`):
fido (an image classifier with an image processor), pat_plain (a multi-label classifier), pat_t (PAT-T),
cgn (a `CounterfactualGenerativeNetwork`). The robust-FT tab compares any two image classifiers: the
bundled single-label ones plus `--classifier NAME=SOURCE` (or `SPACE_CLASSIFIERS="a=SRC,b=SRC"`).
The checkpoint directory is `--checkpoints`, else `SPACE_CHECKPOINTS`, else checkpoints/ next to this file;
`python spaces/make_checkpoints.py` writes it.

Each request is bounded: uploads larger than `MAX_SIDE` are downscaled and ones over `MAX_PIXELS` (or
smaller than `MIN_SIDE`) refused; FIDO runs at most `MAX_FIDO_STEPS` steps, the CGN at most
`MAX_CGN_IMAGES` images. A bad upload is a `gr.Error` with a message, not a traceback.
"""

import argparse
import functools
import json
import os
import tempfile
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import pandas as pd
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hf_counterfactual  # noqa: F401 (registers PAT, CGN with the Auto classes)
import hf_counterfactual.robust  # noqa: F401 (registers ClipImageClassifier)
from hf_counterfactual.bench.fido import FAST_FIDO, fast_fido_settings
from hf_counterfactual.data.transforms import _to_rgb
from hf_counterfactual.explain import FidoConfig, FidoExplainer, infiller_for_image_size, save_overlay
from hf_counterfactual.models.adapters import classifier_logits
from hf_counterfactual.models.cgn import CounterfactualGenerativeNetwork, class_names, to_uint8
from hf_counterfactual.models.pat import PatchingInference

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_SIDE = 512  # longer uploads are downscaled to this side
MIN_SIDE = 8
MAX_PIXELS = 40_000_000  # larger uploads are refused before decoding
MAX_FILE_SIZE = "25mb"  # Gradio refuses larger uploads before they reach a callback
MAX_FIDO_STEPS = 150
MAX_CGN_IMAGES = 16
DISPLAY_SIDE = 256  # overlays and CGN samples are shown at this side
# tiny models, one image per request: one intra-op thread is fastest (two on a busy 2-core machine: 50x slower)
TORCH_THREADS = int(os.environ.get("SPACE_TORCH_THREADS", "1"))
INFILLS = ("blur", "mean", "noise", "local")
PREDICTED = "predicted class"
SLOTS = {"fido": "fido_classifier", "pat_plain": "pat_plain", "pat_t": "pat_t", "cgn": "cgn_colored"}
ROBUST_DEFAULTS = ("robust_vanilla_ft", "robust_masked_cf")
MAKE = "run `python spaces/make_checkpoints.py`"


@dataclass
class Classifier:
    """An image classifier in eval mode and the processor that prepares its inputs."""

    model: torch.nn.Module
    processor: object
    source: str

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label.get(i, str(i)) for i in range(self.model.config.num_labels)]

    def pixel_values(self, image: PIL.Image.Image) -> torch.Tensor:
        return self.processor(image, return_tensors="pt")["pixel_values"]


@dataclass
class SpaceModels:
    """Everything the tabs run; `classifiers` maps the robust-FT tab's choices to their sources."""

    fido: Classifier
    pat_plain: Classifier
    pat_t: Classifier
    cgn: CounterfactualGenerativeNetwork
    classifiers: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def load_classifier(source: str) -> Classifier:
    """`AutoModelForImageClassification` + `AutoImageProcessor` from a folder or Hub id."""
    try:
        model = AutoModelForImageClassification.from_pretrained(source).eval()
        processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise gr.Error(f"cannot load {source} as an image classifier with an image processor: {e}") from e
    return Classifier(model, processor, source)


def _is_single_label_classifier(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        os.path.isfile(os.path.join(folder, "preprocessor_config.json"))
        and config.get("model_type") not in ("pat", "cgn")
        and config.get("problem_type") != "multi_label_classification"
    )


def resolve_sources(
    checkpoints: str, overrides: dict[str, str] | None = None, classifiers: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(slot -> source, robust-tab name -> source); a missing default folder is an error saying what to run."""
    overrides = overrides or {}
    unknown = set(overrides) - set(SLOTS)
    if unknown:
        raise ValueError(f"unknown model slot(s) {sorted(unknown)}; slots are {sorted(SLOTS)}.")
    sources = {}
    for slot, folder in SLOTS.items():
        sources[slot] = overrides.get(slot) or os.path.join(checkpoints, folder)
        if slot not in overrides and not os.path.isfile(os.path.join(sources[slot], "config.json")):
            raise FileNotFoundError(
                f"checkpoint {sources[slot]} is missing: {MAKE}, or point --checkpoints / SPACE_CHECKPOINTS "
                f"at a folder that has it, or set SPACE_MODEL_{slot.upper()} to a folder or Hub id."
            )
    bundled = {}
    if os.path.isdir(checkpoints):
        first = {name: i for i, name in enumerate(ROBUST_DEFAULTS)}
        names = sorted(os.listdir(checkpoints), key=lambda n: (first.get(n, len(first)), n))
        bundled = {
            n: os.path.join(checkpoints, n)
            for n in names
            if _is_single_label_classifier(os.path.join(checkpoints, n))
        }
    choices = {**bundled, **(classifiers or {})}
    if len(choices) < 2:
        raise FileNotFoundError(
            f"the robust-FT tab needs two image classifiers; found {sorted(choices)} in {checkpoints}: {MAKE} "
            "or add --classifier NAME=SOURCE."
        )
    return sources, choices


def load_models(
    checkpoints: str, overrides: dict[str, str] | None = None, classifiers: dict[str, str] | None = None
) -> SpaceModels:
    """Load every model the tabs need (see `resolve_sources`)."""
    sources, choices = resolve_sources(checkpoints, overrides, classifiers)
    cgn = CounterfactualGenerativeNetwork.from_pretrained(sources["cgn"]).eval()
    return SpaceModels(
        fido=load_classifier(sources["fido"]),
        pat_plain=load_classifier(sources["pat_plain"]),
        pat_t=load_classifier(sources["pat_t"]),
        cgn=cgn,
        classifiers=choices,
    )


def load_upload(upload) -> tuple[PIL.Image.Image, str]:
    """An RGB image from an upload (path, Gradio file payload, PIL image or array) and a note on its size.

    Images over `MAX_PIXELS` or under `MIN_SIDE` are refused, ones over `MAX_SIDE` downscaled; anything
    PIL cannot decode is a `gr.Error` naming the file.
    """
    if isinstance(upload, dict):  # the raw payload of a gr.Image (events run with preprocess=False)
        upload = upload.get("path")
    if upload is None:
        raise gr.Error("Upload an image first.")
    name = os.path.basename(upload) if isinstance(upload, str) else "the upload"
    unreadable = f"{name} is not an image that can be read (PNG, JPEG, WebP, ...)"
    try:
        if isinstance(upload, np.ndarray):
            upload = PIL.Image.fromarray(upload)
        image = upload if isinstance(upload, PIL.Image.Image) else PIL.Image.open(upload)
        w, h = image.size
        if w * h > MAX_PIXELS:
            raise gr.Error(f"{name} is {w} x {h} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels.")
        if min(w, h) < MIN_SIDE:
            raise gr.Error(f"{name} is {w} x {h} pixels; each side needs at least {MIN_SIDE}.")
        image.load()
        image = _to_rgb(PIL.ImageOps.exif_transpose(image))
    except PIL.Image.DecompressionBombError as e:
        raise gr.Error(f"{name} is too large: the limit is {MAX_PIXELS // 1_000_000} megapixels.") from e
    except PIL.UnidentifiedImageError as e:
        raise gr.Error(f"{unreadable}.") from e
    except (OSError, ValueError, TypeError, SyntaxError) as e:  # truncated or corrupt pixel data, odd arrays
        detail = str(e).replace(upload, name) if isinstance(upload, str) else str(e)
        raise gr.Error(f"{unreadable}: {detail}") from e
    note = f"{w} x {h}"
    if max(w, h) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), PIL.Image.Resampling.LANCZOS)
        note += f", downscaled to {image.width} x {image.height}"
    return image, note


def _int(value, name: str, low: int, high: int | None = None) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number, got {value!r}.") from None
    if number != int(number) or number < low or (high is not None and number > high):
        raise gr.Error(
            f"{name} must be a whole number in [{low}, {high if high is not None else 'inf'}], got {value}."
        )
    return int(number)


def _probabilities(scores: torch.Tensor, labels: list[str]) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, scores.tolist(), strict=True)}


@torch.no_grad()
def _scores(classifier: Classifier, pixel_values: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    logits = classifier_logits(classifier.model, pixel_values)[0]
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def _overlay(image: PIL.Image.Image, saliency: torch.Tensor) -> PIL.Image.Image:
    """The saliency map over the image as the model sees it (squashed to a square), at `DISPLAY_SIDE`."""
    shown = image.resize((DISPLAY_SIDE, DISPLAY_SIDE), PIL.Image.Resampling.BILINEAR)
    heat = F.interpolate(saliency[None, None].float(), size=(DISPLAY_SIDE, DISPLAY_SIDE), mode="bilinear")[
        0, 0
    ]
    with tempfile.TemporaryDirectory() as tmp:
        overlay = PIL.Image.open(save_overlay(shown, heat, os.path.join(tmp, "overlay.png")))
        overlay.load()
    return overlay


def explain_fido(models: SpaceModels, upload, target=PREDICTED, infill="blur", steps=60, seed=0):
    """(SSR overlay, SDR overlay, class probabilities, status) for the target (default: the predicted class)."""
    start = time.perf_counter()
    image, note = load_upload(upload)
    steps = _int(steps, "FIDO steps", 1, MAX_FIDO_STEPS)
    seed = _int(seed, "seed", 0)
    if infill not in INFILLS:
        raise gr.Error(f"infill must be one of {', '.join(INFILLS)}, got {infill!r}.")
    classifier = models.fido
    labels = classifier.labels
    if target not in (None, PREDICTED, *labels):
        raise gr.Error(f"unknown class {target!r}; choose one of {', '.join(labels)}.")
    pixel_values = classifier.pixel_values(image)
    size = pixel_values.shape[-1]
    probs = _scores(classifier, pixel_values)
    t = int(probs.argmax()) if target in (None, PREDICTED) else labels.index(target)
    overlays = []
    for objective in ("ssr", "sdr"):
        settings = fast_fido_settings(size, steps=steps, ramp_steps=min(FAST_FIDO["ramp_steps"], steps))
        config = FidoConfig.for_image_size(size, objective=objective, seed=seed, **settings)
        explainer = FidoExplainer(classifier.model, config, infiller_for_image_size(infill, size))
        overlays.append(_overlay(image, explainer.explain(pixel_values, torch.tensor([t])).saliency[0]))
    status = (
        f"Explained **{labels[t]}** (p = {probs[t]:.2f}; predicted: {labels[int(probs.argmax())]}) with "
        f"{steps} FIDO steps, {infill} infill, at {size} px; upload {note}; {time.perf_counter() - start:.1f} s."
    )
    return overlays[0], overlays[1], _probabilities(probs, labels), status


def predict_pat(models: SpaceModels, upload, threshold=0.5):
    """(score table, plain, plain + PAT-I, PAT-T label dicts, status): sigmoid scores per class."""
    image, note = load_upload(upload)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise gr.Error(f"threshold must be a number in [0, 1], got {threshold!r}.") from None
    if not 0 <= threshold <= 1:
        raise gr.Error(f"threshold must be in [0, 1], got {threshold}.")
    plain, pat_t = models.pat_plain, models.pat_t
    grid_size = getattr(pat_t.model.config, "grid_size", 2)
    pixel_values = plain.pixel_values(image)
    with torch.no_grad():
        pat_i = PatchingInference(plain.model, grid_size)(pixel_values).logits[0].sigmoid()
    scores = {
        "plain": _scores(plain, pixel_values, multi_label=True),
        "plain + PAT-I": pat_i,
        "PAT-T": _scores(pat_t, pat_t.pixel_values(image), multi_label=True),
    }
    labels = plain.labels
    table = pd.DataFrame({"class": labels, **{k: [round(float(s), 3) for s in v] for k, v in scores.items()}})
    found = {
        k: ", ".join(label for label, s in zip(labels, v.tolist(), strict=True) if s >= threshold)
        or "nothing"
        for k, v in scores.items()
    }
    status = (
        "; ".join(f"**{k}** finds {v}" for k, v in found.items())
        + f" (score >= {threshold:g}; upload {note})."
    )
    return (table, *(_probabilities(v, labels) for v in scores.values()), status)


def _class_index(value, names: list[str], what: str) -> int:
    if isinstance(value, str) and value in names:
        return names.index(value)
    index = _int(value, f"{what} class", 0, len(names) - 1)
    return index


def _display(images: np.ndarray) -> list[PIL.Image.Image]:
    """uint8 (B, H, W, 3) arrays as PIL images at `DISPLAY_SIDE` (nearest neighbour: the pixels stay visible)."""
    side = DISPLAY_SIDE // 2
    return [PIL.Image.fromarray(a).resize((side, side), PIL.Image.Resampling.NEAREST) for a in images]


def sample_cgn(models: SpaceModels, shape=0, texture=0, background=0, num_images=8, seed=0):
    """(gallery of counterfactuals, the first one's mask | foreground | background | image strip, status)."""
    start = time.perf_counter()
    cgn = models.cgn
    names = class_names(cgn)
    labels = [
        _class_index(v, names, w)
        for v, w in ((shape, "shape"), (texture, "texture"), (background, "background"))
    ]
    n = _int(num_images, "number of images", 1, MAX_CGN_IMAGES)
    seed = _int(seed, "seed", 0)
    out = cgn.generate(*([c] * n for c in labels), seed=seed)
    images = _display(to_uint8(out.images))
    parts = [out.mask[:1] * 2 - 1, out.foreground[:1], out.background[:1], out.images[:1]]
    strip = np.concatenate([to_uint8(p)[0] for p in parts], axis=1)
    strip = PIL.Image.fromarray(strip).resize(
        (4 * DISPLAY_SIDE // 2, DISPLAY_SIDE // 2), PIL.Image.Resampling.NEAREST
    )
    shape_name, texture_name, background_name = (names[c] for c in labels)
    status = (
        f"{n} images: shape of **{shape_name}**, texture of **{texture_name}**, background of "
        f"**{background_name}** (seed {seed}; {time.perf_counter() - start:.2f} s)."
    )
    return images, strip, status


def compare_classifiers(models: SpaceModels, upload, first=None, second=None):
    """(first model's top classes, second's, probability table, status) on one upload."""
    image, note = load_upload(upload)
    chosen = []
    for name in (first, second):
        if name not in models.classifiers:
            raise gr.Error(f"unknown classifier {name!r}; choose one of {', '.join(models.classifiers)}.")
        chosen.append(load_classifier(models.classifiers[name]))
    probs = [_scores(c, c.pixel_values(image)) for c in chosen]
    results = [_probabilities(p, c.labels) for p, c in zip(probs, chosen, strict=True)]
    top = [max(r, key=r.get) for r in results]
    rows = sorted(
        set(results[0]) | set(results[1]), key=lambda k: -max(results[0].get(k, 0), results[1].get(k, 0))
    )
    table = (
        pd.DataFrame(
            {
                "class": rows,
                first: [round(results[0].get(k, 0.0), 3) for k in rows],
                second: [round(results[1].get(k, 0.0), 3) for k in rows],
            }
        )
        if first != second
        else pd.DataFrame({"class": rows, first: [round(results[0][k], 3) for k in rows]})
    )
    verdict = "agree" if top[0] == top[1] else "disagree"
    status = (
        f"**{first}**: {top[0]} ({results[0][top[0]]:.2f}); **{second}**: {top[1]} ({results[1][top[1]]:.2f}); "
        f"they {verdict} (upload {note})."
    )
    return results[0], results[1], table, status


def _examples(prefix: str) -> list[str]:
    folder = os.path.join(HERE, "examples")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(".png")
    )


def _image_input(elem_id: str, prefix: str) -> gr.Image:
    image = gr.Image(
        label="image", type="filepath", sources=["upload", "clipboard"], elem_id=elem_id, height=260
    )
    if examples := _examples(prefix):
        gr.Examples(examples, inputs=image, label="examples from the benchmark")
    return image


def _bind(callback, models: SpaceModels):
    """`callback(models, *inputs)` as a Gradio event function that runs with `TORCH_THREADS` threads."""

    def run(*inputs):
        torch.set_num_threads(TORCH_THREADS)  # in the worker thread Gradio runs events in
        return callback(models, *inputs)

    return run


def build_demo(models: SpaceModels) -> gr.Blocks:
    """The Blocks app: one tab per method. Image events run with preprocess=False, so `load_upload` (not
    Gradio) decodes uploads and a bad file gets its own message."""
    fido_labels = [PREDICTED, *models.fido.labels]
    cgn_names = class_names(models.cgn)
    cgn_choices = [(name, i) for i, name in enumerate(cgn_names)]
    robust = list(models.classifiers)
    with gr.Blocks(title="hf-counterfactual") as demo:
        gr.Markdown(
            "# hf-counterfactual\nCounterfactual explanations and robustness for Hugging Face vision models: "
            "FIDO saliency, PAT multi-label prediction, CGN counterfactual images and masked-image "
            "counterfactual fine-tuning. The bundled models are tiny ones trained on the library's embedded "
            "benchmarks (Fashion-MNIST items on synthetic canvases), so photos are far from what they know."
        )
        with gr.Tab("FIDO saliency", id="fido"):
            gr.Markdown(
                "Which pixels does the classifier need? **SSR** keeps the smallest region that preserves the "
                "class, **SDR** removes the smallest region that destroys it; removed pixels are infilled "
                "(Chang et al., arXiv 1807.08024)."
            )
            with gr.Row():
                with gr.Column():
                    fido_image = _image_input("fido-image", "fido")
                    fido_target = gr.Dropdown(fido_labels, value=PREDICTED, label="class to explain")
                    fido_infill = gr.Dropdown(list(INFILLS), value="blur", label="infill")
                    fido_steps = gr.Slider(
                        1, MAX_FIDO_STEPS, value=60, step=1, label="FIDO steps", elem_id="fido-steps"
                    )
                    fido_seed = gr.Number(0, precision=0, label="seed", minimum=0)
                    fido_run = gr.Button("Explain", variant="primary", elem_id="fido-run")
                with gr.Column():
                    with gr.Row():
                        fido_ssr = gr.Image(label="SSR (keep)", elem_id="fido-ssr", format="png")
                        fido_sdr = gr.Image(label="SDR (remove)", elem_id="fido-sdr", format="png")
                    fido_probs = gr.Label(
                        num_top_classes=5, label="class probabilities", elem_id="fido-probs"
                    )
                    fido_status = gr.Markdown(elem_id="fido-status")
            fido_run.click(
                _bind(explain_fido, models),
                [fido_image, fido_target, fido_infill, fido_steps, fido_seed],
                [fido_ssr, fido_sdr, fido_probs, fido_status],
                preprocess=False,
            )
        with gr.Tab("PAT multi-label", id="pat"):
            gr.Markdown(
                "Multi-label scores of a plain model, of the same model with patching-based inference "
                "(**PAT-I**, no retraining) and of a model trained with patching (**PAT-T**), which lean less "
                "on co-occurring objects (Xie et al., arXiv 2404.06287)."
            )
            with gr.Row():
                with gr.Column():
                    pat_image = _image_input("pat-image", "pat")
                    pat_threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="score threshold")
                    pat_run = gr.Button("Predict", variant="primary", elem_id="pat-run")
                with gr.Column():
                    pat_table = gr.Dataframe(label="sigmoid scores", elem_id="pat-table")
                    with gr.Row():
                        pat_plain = gr.Label(num_top_classes=3, label="plain", elem_id="pat-plain")
                        pat_i = gr.Label(num_top_classes=3, label="plain + PAT-I", elem_id="pat-i")
                        pat_t = gr.Label(num_top_classes=3, label="PAT-T", elem_id="pat-t")
                    pat_status = gr.Markdown(elem_id="pat-status")
            pat_run.click(
                _bind(predict_pat, models),
                [pat_image, pat_threshold],
                [pat_table, pat_plain, pat_i, pat_t, pat_status],
                preprocess=False,
            )
        with gr.Tab("CGN counterfactuals", id="cgn"):
            gr.Markdown(
                "A counterfactual generative network composes an image from three independent mechanisms: "
                "the **shape** (mask) of one class, the **texture** of another and the **background** of a "
                "third (Sauer & Geiger, arXiv 2101.06046)."
            )
            with gr.Row():
                with gr.Column():
                    cgn_shape = gr.Dropdown(cgn_choices, value=0, label="shape", elem_id="cgn-shape")
                    cgn_texture = gr.Dropdown(cgn_choices, value=min(1, len(cgn_names) - 1), label="texture")
                    cgn_background = gr.Dropdown(
                        cgn_choices, value=min(2, len(cgn_names) - 1), label="background"
                    )
                    cgn_n = gr.Slider(1, MAX_CGN_IMAGES, value=8, step=1, label="images", elem_id="cgn-n")
                    cgn_seed = gr.Number(0, precision=0, label="seed", minimum=0)
                    cgn_run = gr.Button("Generate", variant="primary", elem_id="cgn-run")
                with gr.Column():
                    cgn_gallery = gr.Gallery(
                        label="counterfactuals", columns=4, elem_id="cgn-gallery", format="png"
                    )
                    cgn_strip = gr.Image(
                        label="first image: mask | texture | background | composite",
                        elem_id="cgn-strip",
                        format="png",
                    )
                    cgn_status = gr.Markdown(elem_id="cgn-status")
            cgn_run.click(
                _bind(sample_cgn, models),
                [cgn_shape, cgn_texture, cgn_background, cgn_n, cgn_seed],
                [cgn_gallery, cgn_strip, cgn_status],
            )
        with gr.Tab("Robust fine-tuning", id="robust"):
            gr.Markdown(
                "Compare two classifiers on one image. The bundled pair was fine-tuned from the same "
                "pre-trained model on data where the background gives the class away: **vanilla FT** learns the "
                "background, **masked-image counterfactual FT** distils the pre-trained features on images whose "
                "object is masked and refilled (Xiao et al., arXiv 2303.03052). Try the examples: their "
                "backgrounds are shuffled."
            )
            with gr.Row():
                with gr.Column():
                    robust_image = _image_input("robust-image", "robust")
                    robust_a = gr.Dropdown(robust, value=robust[0], label="classifier A", elem_id="robust-a")
                    robust_b = gr.Dropdown(robust, value=robust[1], label="classifier B", elem_id="robust-b")
                    robust_run = gr.Button("Compare", variant="primary", elem_id="robust-run")
                with gr.Column():
                    with gr.Row():
                        robust_label_a = gr.Label(num_top_classes=3, label="A", elem_id="robust-label-a")
                        robust_label_b = gr.Label(num_top_classes=3, label="B", elem_id="robust-label-b")
                    robust_table = gr.Dataframe(label="probabilities", elem_id="robust-table")
                    robust_status = gr.Markdown(elem_id="robust-status")
            robust_run.click(
                _bind(compare_classifiers, models),
                [robust_image, robust_a, robust_b],
                [robust_label_a, robust_label_b, robust_table, robust_status],
                preprocess=False,
            )
    return demo


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{flag} takes NAME=SOURCE, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", default=os.environ.get("SPACE_CHECKPOINTS", os.path.join(HERE, "checkpoints"))
    )
    parser.add_argument("--model", action="append", help=f"SLOT=FOLDER_OR_HUB_ID; slots: {', '.join(SLOTS)}.")
    parser.add_argument("--classifier", action="append", help="NAME=FOLDER_OR_HUB_ID for the robust-FT tab.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    overrides = {
        slot: os.environ[f"SPACE_MODEL_{slot.upper()}"]
        for slot in SLOTS
        if os.environ.get(f"SPACE_MODEL_{slot.upper()}")
    }
    overrides.update(_pairs(args.model, "--model"))
    env_classifiers = [c for c in os.environ.get("SPACE_CLASSIFIERS", "").split(",") if c.strip()]
    classifiers = _pairs(env_classifiers + (args.classifier or []), "--classifier")
    try:
        models = load_models(args.checkpoints, overrides, classifiers)
    except (FileNotFoundError, ValueError, gr.Error) as e:
        raise SystemExit(str(e)) from None
    build_demo(models).queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE
    )


if __name__ == "__main__":
    main()
