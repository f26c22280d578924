"""Explain image files with a trained or Hub classifier: overlays + a JSON of map statistics.

Backs `hf-counterfactual explain`. Images are prepared by the model's own image processor
(`AutoImageProcessor`), so the maps live in the space the model sees; FIDO's settings and the infillers'
sizes are the paper's, rescaled to that input size.
"""

import dataclasses
import json
import os

import PIL.Image
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..data import decode_image
from ..data.transforms import _to_rgb
from ..models.adapters import classifier_logits
from .fido import FidoConfig, FidoExplainer
from .figures import save_overlay
from .generative import GenerativeInfiller
from .infillers import INFILLERS, infiller_for_image_size


def load_images(paths: list[str]) -> list[PIL.Image.Image]:
    """RGB PIL images from files; a missing or unreadable file is an error naming it."""
    images = []
    for path in paths:
        try:
            image = decode_image(path)
        except (OSError, TypeError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from e
        images.append(image if image.mode == "RGB" else _to_rgb(image))
    return images


def make_infiller(infill: str, image_size: int, inpainter: str | None = None):
    """A named heuristic infiller at this input size, or the generative one from a saved pipeline."""
    if infill == "generative":
        if not inpainter:
            raise ValueError("--infill generative needs --inpainter DIR (a saved InpaintingPipeline).")
        return GenerativeInfiller.from_pretrained(inpainter)
    if infill not in INFILLERS:
        raise ValueError(f"unknown infill {infill!r}; choose one of {sorted(INFILLERS)} or 'generative'.")
    return infiller_for_image_size(infill, image_size)


def explain_image_files(
    model_id: str,
    image_paths: list[str],
    out_dir: str,
    objective: str = "ssr",
    infill: str = "blur",
    target: int | None = None,
    inpainter: str | None = None,
    steps: int | None = None,
    seed: int = 0,
) -> dict:
    """Write `<stem>_<objective>.png` overlays and `saliency.json` to `out_dir`; return the JSON dict.

    The target class is `target` for every image, else each image's predicted class.
    """
    model = AutoModelForImageClassification.from_pretrained(model_id).eval()
    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{model_id} has no image processor (preprocessor_config.json); save one with "
            "processor.save_pretrained(model_dir) so inputs are prepared as in training."
        ) from e
    images = load_images(image_paths)
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    size = pixel_values.shape[-1]
    if pixel_values.shape[-2] != size:
        raise ValueError(f"FIDO needs square inputs; the processor makes {tuple(pixel_values.shape[-2:])}.")
    with torch.no_grad():
        probs = classifier_logits(model, pixel_values).softmax(-1)
    targets = probs.argmax(-1) if target is None else torch.full((len(images),), target)

    overrides = {"objective": objective, "seed": seed, **({"steps": steps} if steps else {})}
    explainer = FidoExplainer(
        model, FidoConfig.for_image_size(size, **overrides), make_infiller(infill, size, inpainter)
    )
    result = explainer.explain(pixel_values, targets)

    os.makedirs(out_dir, exist_ok=True)
    labels = model.config.id2label
    records = []
    for i, path in enumerate(image_paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        overlay = os.path.join(out_dir, f"{i:03d}_{stem}_{objective}.png")
        shown = images[i].resize((size, size), PIL.Image.Resampling.BILINEAR)
        save_overlay(shown, result.saliency[i], overlay)
        keep = result.keep_prob[i]
        peak = int(result.saliency[i].flatten().argmax())
        t = int(targets[i])
        records.append(
            {
                "image": path,
                "overlay": overlay,
                "target": t,
                "target_label": labels.get(t, str(t)),
                "target_prob": float(probs[i, t]),
                "kept_fraction": float((keep > 0.5).float().mean()),
                "mean_keep_prob": float(keep.mean()),
                "peak_yx": [peak // size, peak % size],
                "final_loss": result.losses[-1][i],
            }
        )
    summary = {
        "model": model_id,
        "objective": objective,
        "infill": infill,
        "input_size": size,
        "config": dataclasses.asdict(explainer.config),
        "images": records,
    }
    with open(os.path.join(out_dir, "saliency.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
