"""`hf-counterfactual bench fido`: FIDO saliency vs baselines on localisation scenes, measured in one run.

A classifier is trained on localisation scenes first; then every method explains the same correctly
classified test images for their true class: FIDO SSR / SDR with each infiller (batched, fast settings),
BBMP, occlusion and Grad-CAM. Per method: deletion / insertion AUC, pointing game and mask IoU against
the exact item masks, the Dabkowski-Gal score and seconds per map. `speedup_vs_reference` times the
seed's algorithm run step for step (one image at a time, 8 samples, 300 steps) on the first images and
compares its deletion AUC with ours on the same images. Paper settings are for 224 px inputs; sizes
(mask grid, blur sigma, local window, occlusion window) and the pixel-summed sparsity weight are
scaled to the canvas so a method asks for the same fraction of the image at any resolution.
"""

import dataclasses
import logging
import os
import time

import numpy as np
import torch

from ..data import (
    ImageClassificationCollator,
    LocalisationSceneConfig,
    build_localisation_scenes,
    load_item_source,
)
from ..explain import (
    BbmpConfig,
    BbmpExplainer,
    FidoConfig,
    FidoExplainer,
    GradCamExplainer,
    OcclusionExplainer,
    deepest_conv_layer,
    get_infiller,
    infiller_for_image_size,
    save_saliency_grid,
)
from ..metrics.saliency import (
    dabkowski_gal_score,
    deletion_insertion_auc,
    mask_iou,
    pointing_game,
    randomization_sanity_check,
)
from ..models.adapters import classifier_logits
from ..training import TrainingConfig
from ..training.classification import train_image_classifier
from ..training.pat_config import TINY_RESNET

logger = logging.getLogger(__name__)

RESNET50 = {
    "model_type": "resnet",
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3],
    "layer_type": "bottleneck",
}
SCALES = {
    "smoke": {"canvas_size": 32, "num_train": 128, "num_test": 48, "num_epochs": 1, "num_maps": 4,
              "reference_maps": 1, "backbone": TINY_RESNET, "inpainter_steps": 4,
              "steps": {"fido": 6, "reference": 12, "bbmp": 6}},  # tests: the code path, not the figures
    "quickstart": {"canvas_size": 64, "num_train": 2000, "num_test": 200, "num_epochs": 8, "num_maps": 16,
                   "reference_maps": 2, "backbone": TINY_RESNET, "inpainter_steps": 200},
    "quick": {"canvas_size": 64, "num_train": 4000, "num_test": 400, "num_epochs": 12, "num_maps": 96,
              "reference_maps": 8, "backbone": TINY_RESNET, "inpainter_steps": 400},
    "full": {"canvas_size": 224, "num_train": 8000, "num_test": 500, "num_epochs": 20, "num_maps": 128,
             "reference_maps": 8, "backbone": RESNET50, "inpainter_steps": 4000},
}  # fmt: skip
# ours, batched; the paper runs 300 steps x 8 samples at lr 0.05, one image at a time
FAST_FIDO = {"steps": 60, "num_samples": 2, "lr": 0.15, "ramp_steps": 20}
# our FIDO's sparsity weight, times the paper's rescaled lambda: chosen on scenes of another seed (7),
# where pointing game / mask IoU of SSR-mean went 0.76 / 0.44 (x1), 0.91 / 0.54 (x2), 0.94 / 0.58 (x3)
FIDO_LAMBDA_SCALE = 3.0
# our FIDO's mask grid, times the paper's (a 2-pixel cell instead of 4): a 4-pixel cell, upsampled, bleeds
# over item edges and puts the argmax just outside; on the seed-7 scenes pointing game 0.94 -> 0.97
FIDO_MASK_SCALE = 2
TARGETS = {"speedup_vs_reference": 20.0}


def fast_fido_settings(image_size: int, **overrides) -> dict:
    """Our batched FIDO's settings at `image_size` (bench fido and the Space): FAST_FIDO with
    FIDO_LAMBDA_SCALE x the rescaled paper lambda and a FIDO_MASK_SCALE x finer mask grid."""
    paper = FidoConfig.for_image_size(image_size)
    scaled = {"lambda_": FIDO_LAMBDA_SCALE * paper.lambda_, "mask_size": FIDO_MASK_SCALE * paper.mask_size}
    return {**FAST_FIDO, **scaled, **overrides}


def paper_settings(canvas_size: int) -> dict:
    """FIDO's and BBMP's paper settings for 224 px, rescaled to `canvas_size` (lambda * pixels kept)."""
    fido = FidoConfig.for_image_size(canvas_size)
    return {
        "image_size": canvas_size,
        "mask_size": fido.mask_size,
        "lambda_": fido.lambda_,
        "bbmp_lambda": 5e-3 * fido.lambda_ / 1e-3,
        "occlusion_window": max(2, canvas_size // 8),
    }


def _timed(fn, chunk: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Maps of `fn(x, y)` computed `chunk` images at a time, and the seconds per map."""
    start = time.perf_counter()
    maps = torch.cat(
        [torch.as_tensor(fn(x[i : i + chunk], y[i : i + chunk])) for i in range(0, len(x), chunk)]
    )
    return maps.detach().float().cpu(), (time.perf_counter() - start) / len(x)


def _scores(model, x, y, maps, masks) -> dict:
    auc = deletion_insertion_auc(model, x, maps, y)
    return {
        "deletion_auc": auc["deletion_auc"],
        "insertion_auc": auc["insertion_auc"],
        "pointing_game": pointing_game(maps, masks),
        "mask_iou": mask_iou(maps, masks),
        "dabkowski_gal": dabkowski_gal_score(model, x, maps, y),
    }


def method_names(infillers: dict) -> list[str]:
    """Every method in the benchmark: FIDO SSR / SDR with each infiller, then the baselines."""
    fido = [f"fido-{objective}-{name}" for objective in ("ssr", "sdr") for name in infillers]
    return [*fido, "bbmp", "occlusion", "gradcam"]


def explain_fn(name: str, model, settings: dict, infillers: dict):
    """fn(pixel_values, target) -> (B, H, W) maps of method `name` (see `method_names`) on `model`."""
    if name.startswith("fido-"):
        _, objective, infill = name.split("-")
        fast = {"mask_size": settings["mask_size"], "lambda_": settings["lambda_"], **settings["fido"]}
        explainer = FidoExplainer(model, FidoConfig(objective=objective, **fast), infillers[infill])
        return lambda x, y: explainer.explain(x, y).saliency
    if name == "bbmp":
        bbmp = BbmpConfig(
            mask_size=settings["mask_size"], lambda_=settings["bbmp_lambda"], **settings["bbmp"]
        )
        return BbmpExplainer(model, bbmp, infillers["blur"]).explain
    if name == "occlusion":
        window = settings["occlusion_window"]
        return OcclusionExplainer(model, window=window, stride=max(1, window // 2)).explain
    if name == "gradcam":  # at the resolution of ResNet-50's last stage at 224 px
        device = next(model.parameters()).device
        probe = torch.zeros(1, 3, settings["image_size"], settings["image_size"], device=device)
        return GradCamExplainer(model, deepest_conv_layer(model, probe, min_size=7)).explain
    raise ValueError(f"unknown method {name!r}.")


def build_infillers(size: int, train_mean: tuple[float, ...], generative=None) -> dict:
    """The paper's heuristic infillers at this canvas size, plus a generative one when given."""
    infillers = {
        "mean": get_infiller("mean", mean=train_mean),
        "blur": infiller_for_image_size("blur", size),
        "noise": get_infiller("noise", generator=torch.Generator().manual_seed(0)),
        "local": infiller_for_image_size("local", size),
    }
    if generative is not None:
        infillers["generative"] = generative
    return infillers


def _train_mean(data, collator, n: int = 512) -> tuple[float, ...]:
    rows = [data[i] for i in range(min(n, len(data)))]
    return tuple(collator(rows)["pixel_values"].mean(dim=(0, 2, 3)).tolist())


def _train_generative_infiller(data, output_dir: str, steps: int, seed: int, show_progress: bool):
    """Train the project's inpainter on the scenes' train images; returns a `GenerativeInfiller`."""
    from ..explain.generative import GenerativeInfiller
    from ..training.inpainter_config import InpainterTrainConfig
    from ..training.inpainter_trainer import run_inpainter

    train_cfg = TrainingConfig(
        output_dir=os.path.join(output_dir, "inpainter"),
        seed=seed,
        max_steps=steps,
        batch_size=32,
        learning_rate=3e-3,
        warmup_ratio=0.1,
        disable_progress_bar=not show_progress,
    )
    cfg = InpainterTrainConfig(image_size=data["train"][0]["image"].size[0])
    metrics = run_inpainter(train_cfg, cfg, data)
    return GenerativeInfiller.from_pretrained(train_cfg.output_dir), metrics


def run_fido_benchmark(
    scale: str = "quick",
    seed: int = 0,
    item_source: str = "auto",
    output_dir: str = "outputs/bench/fido",
    generative: bool = True,
    show_progress: bool = True,
) -> dict:
    """Train a scene classifier, explain its correct test images with every method, return the JSON."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}.")
    sc = SCALES[scale]
    size = sc["canvas_size"]
    scene_cfg = LocalisationSceneConfig(
        canvas_size=size, num_train=sc["num_train"], num_validation=64, num_test=sc["num_test"], seed=seed
    )
    data = build_localisation_scenes(scene_cfg, load_item_source(item_source))
    train_cfg = TrainingConfig(
        output_dir=os.path.join(output_dir, "classifier"),
        seed=seed,
        num_epochs=sc["num_epochs"],
        batch_size=64,
        learning_rate=3e-3,
        weight_decay=1e-4,
        disable_progress_bar=not show_progress,
    )
    model, classifier_metrics = train_image_classifier(train_cfg, data, sc["backbone"], size)
    model.eval()
    device = next(model.parameters()).device
    collator = ImageClassificationCollator(model.config.num_labels, size)

    # the first num_maps test images the classifier gets right, explained for their true class
    test = collator(list(data["test"]))
    with torch.no_grad():
        logits = torch.cat([classifier_logits(model, b.to(device)) for b in test["pixel_values"].split(64)])
    correct = torch.nonzero(logits.argmax(-1).cpu() == test["labels"])[:, 0][: sc["num_maps"]]
    x, y = test["pixel_values"][correct].to(device), test["labels"][correct].to(device)
    masks = np.stack([np.asarray(data["test"][int(i)]["mask"]) > 0 for i in correct])

    settings = paper_settings(size)
    steps = sc.get("steps", {})
    settings["fido"] = fast_fido_settings(size, **({"steps": steps["fido"]} if "fido" in steps else {}))
    settings["bbmp"] = {"steps": steps["bbmp"]} if "bbmp" in steps else {}
    inpainter_metrics, generative_infiller = None, None
    if generative:
        generative_infiller, inpainter_metrics = _train_generative_infiller(
            data, output_dir, sc["inpainter_steps"], seed, show_progress
        )
    infillers = build_infillers(size, _train_mean(data["train"], collator), generative_infiller)
    chunk = 16 if device.type == "cpu" else 256  # CPU: small batches run fastest per map (measured)
    methods, maps = {}, {}
    for name in method_names(infillers):
        maps[name], seconds = _timed(explain_fn(name, model, settings, infillers), chunk, x, y)
        methods[name] = {**_scores(model, x, y, maps[name], masks), "seconds_per_map": seconds}
        logger.info("%s: %s", name, methods[name])

    # the seed's algorithm, step for step: one image at a time, 8 samples, 300 steps
    n_ref = min(sc["reference_maps"], len(x))
    paper = FidoConfig.for_image_size(size, steps=steps.get("reference", 300))
    reference = FidoExplainer(model, paper, infillers["blur"])
    ref_maps, ref_seconds = _timed(lambda a, b: reference.explain(a, b).saliency, 1, x[:n_ref], y[:n_ref])
    ours = methods["fido-ssr-blur"]
    ours_ref_auc = deletion_insertion_auc(model, x[:n_ref], maps["fido-ssr-blur"][:n_ref], y[:n_ref])
    ref_auc = deletion_insertion_auc(model, x[:n_ref], ref_maps, y[:n_ref])
    speed = {
        "reference_seconds_per_map": ref_seconds,
        "ours_seconds_per_map": ours["seconds_per_map"],
        "speedup_vs_reference": ref_seconds / ours["seconds_per_map"],
        "reference_deletion_auc": ref_auc["deletion_auc"],
        "ours_deletion_auc": ours_ref_auc["deletion_auc"],
        "reference_maps": n_ref,
        "reference_settings": dataclasses.asdict(paper),
        "ours_settings": {**settings["fido"], "batch": chunk},
    }

    fido_ssr = {k: v for k, v in methods.items() if k.startswith("fido-ssr")}
    best_ssr = max(fido_ssr, key=lambda k: (fido_ssr[k]["pointing_game"], -fido_ssr[k]["deletion_auc"]))
    n_sanity = min(8, len(x))
    sanity = {}
    for name in (best_ssr, "gradcam"):
        fn = lambda m, a, b, name=name: explain_fn(name, m, settings, infillers)(a, b)  # noqa: E731
        check = randomization_sanity_check(fn, model, x[:n_sanity], y[:n_sanity], seed=seed)
        sanity[name] = {
            "rank_correlation": check["rank_correlation"],
            "abs_rank_correlation": check["abs_rank_correlation"],
        }

    os.makedirs(output_dir, exist_ok=True)
    figure = os.path.join(output_dir, "fido_maps.png")
    shown = ["fido-ssr-blur", "fido-sdr-blur", best_ssr, "bbmp", "occlusion", "gradcam"]
    save_saliency_grid(x[:6].cpu(), {k: maps[k][:6] for k in dict.fromkeys(shown)}, figure, masks=masks[:6])

    generative_effect = None
    if generative:
        generative_effect = {
            metric: {name: methods[f"fido-ssr-{name}"][metric] for name in ("generative", "blur", "mean")}
            for metric in ("deletion_auc", "insertion_auc", "pointing_game", "mask_iou", "dabkowski_gal")
        }
    baseline_pg = max(methods["occlusion"]["pointing_game"], methods["gradcam"]["pointing_game"])
    return {
        "benchmark": "fido",
        "scale": scale,
        "seed": seed,
        "device": device.type,
        "torch_threads": torch.get_num_threads(),
        "scenes": dataclasses.asdict(scene_cfg),
        "classifier": {"backbone": sc["backbone"], **classifier_metrics},
        "inpainter": inpainter_metrics,
        "num_maps": len(x),
        "settings": settings,
        "methods": methods,
        "best_fido_ssr": best_ssr,
        **speed,
        "generative_effect": generative_effect,
        "sanity_check": sanity,
        "figure": figure,
        "targets": {**TARGETS, "fido_ssr_pointing_game_beats": ["occlusion", "gradcam"]},
        "targets_met": {
            "speedup": speed["speedup_vs_reference"] >= TARGETS["speedup_vs_reference"]
            and speed["ours_deletion_auc"] <= speed["reference_deletion_auc"],
            "pointing_game": methods[best_ssr]["pointing_game"] > baseline_pg,
        },
    }
