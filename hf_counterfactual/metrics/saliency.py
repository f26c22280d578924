"""Saliency-map metrics: pointing game, mask IoU, deletion / insertion AUC, Dabkowski-Gal score, rank
correlation, and the model-randomisation sanity check.

Maps are ``(B, H, W)`` numpy arrays or torch tensors, higher = more salient. Model-based metrics take
``pixel_values`` of shape ``(B, C, H, W)``, integer ``target`` classes of shape ``(B,)`` and any classifier
that `classifier_logits` accepts; they run under ``torch.no_grad()`` with the model in eval mode.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from hf_counterfactual.explain.infillers import BlurInfiller
from hf_counterfactual.models.adapters import classifier_logits

__all__ = [
    "dabkowski_gal_score",
    "deletion_insertion_auc",
    "mask_iou",
    "pointing_game",
    "randomization_sanity_check",
    "randomize_model",
    "rank_correlation",
]


def _to_numpy(x: Any) -> np.ndarray:
    """Convert an array-like or torch tensor (any device or dtype) to numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x if x.dtype == torch.bool else x.double()
    return np.asarray(x)


def _check_maps(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Return two (B, H, W) numpy maps of equal shape with B >= 1, or raise a ValueError naming them."""
    a, b = _to_numpy(a), _to_numpy(b)
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"{names[0]} and {names[1]} must be 3-D (B, H, W); got {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {a.shape} and {b.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{names[0]} is empty (B = 0)")
    return a, b


def _check_model_inputs(
    pixel_values: torch.Tensor, saliency: Any, target: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate (B, C, H, W) images, (B, H, W) saliency and (B,) targets; return them as tensors on one device."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be a 4-D (B, C, H, W) tensor; got {getattr(pixel_values, 'shape', None)}"
        )
    b, _, h, w = pixel_values.shape
    saliency = torch.as_tensor(saliency).to(pixel_values.device)
    target = torch.as_tensor(target).to(pixel_values.device)
    if tuple(saliency.shape) != (b, h, w):
        raise ValueError(f"saliency must have shape (B, H, W) = {(b, h, w)}; got {tuple(saliency.shape)}")
    if tuple(target.shape) != (b,) or target.is_floating_point():
        raise ValueError(f"target must be integer class indices of shape ({b},); got {tuple(target.shape)}")
    if b == 0:
        raise ValueError("pixel_values is empty (B = 0)")
    return pixel_values, saliency.double(), target.long()


def pointing_game(saliency: Any, masks: Any) -> float:
    """Fraction of images whose saliency argmax (first one on ties, row-major) lies inside the boolean mask."""
    s, m = _check_maps(saliency, masks, ("saliency", "masks"))
    flat = s.reshape(s.shape[0], -1).argmax(axis=1)
    return float(m.reshape(m.shape[0], -1)[np.arange(len(flat)), flat].astype(bool).mean())


def mask_iou(saliency: Any, masks: Any, threshold: float | None = None) -> float:
    """Mean IoU of binarised saliency vs mask: top-k pixels with k = mask area (default) or saliency >= threshold.

    Top-k ties are broken by row-major pixel order. An image whose prediction and mask are both empty counts 1.
    """
    s, m = _check_maps(saliency, masks, ("saliency", "masks"))
    s, m = s.reshape(s.shape[0], -1), m.reshape(m.shape[0], -1).astype(bool)
    ious = []
    for si, mi in zip(s, m, strict=True):
        if threshold is None:
            pred = np.zeros_like(mi)
            pred[np.argsort(-si, kind="stable")[: int(mi.sum())]] = True
        else:
            pred = si >= threshold
        union = (pred | mi).sum()
        ious.append((pred & mi).sum() / union if union else 1.0)
    return float(np.mean(ious))


def _target_probs(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax probability of `target` for each image."""
    return classifier_logits(model, images).float().softmax(dim=-1).gather(1, target[:, None])[:, 0]


def deletion_insertion_auc(
    model: nn.Module,
    pixel_values: torch.Tensor,
    saliency: Any,
    target: Any,
    steps: int = 16,
    baseline: Literal["blur", "zero", "mean"] = "blur",
    batch_size: int = 64,
) -> dict[str, Any]:
    """RISE deletion / insertion curves (target prob. vs fraction t of top-salient pixels removed / restored) and AUCs.

    At t = i / steps the top round(t * H * W) pixels (stable descending saliency order) are swapped with the
    baseline: a Gaussian blur of the image (`BlurInfiller`), zeros, or the image's per-channel mean. Each AUC is
    the trapezoid over t in [0, 1], averaged over images; curves are (B, steps + 1) nested lists.
    """
    x, s, target = _check_model_inputs(pixel_values, saliency, target)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps} and {batch_size}")
    b, c, h, w = x.shape
    if baseline == "blur":
        base = BlurInfiller()(x, torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device))
    elif baseline == "zero":
        base = torch.zeros_like(x)
    elif baseline == "mean":
        base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    else:
        raise ValueError(f"baseline must be 'blur', 'zero' or 'mean'; got {baseline!r}")
    order = torch.argsort(-s.reshape(b, -1), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    rank = rank.view(b, 1, h, w)
    counts = [round(i / steps * h * w) for i in range(steps + 1)]
    jobs = [(i, j) for i in range(steps + 1) for j in range(b)]  # (step, image)
    curves = {"deletion": torch.empty(steps + 1, b), "insertion": torch.empty(steps + 1, b)}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            steps_idx = torch.tensor([i for i, _ in chunk])
            img_idx = torch.tensor([j for _, j in chunk], device=x.device)
            k = torch.tensor([counts[i] for i, _ in chunk], device=x.device).view(-1, 1, 1, 1)
            top = rank[img_idx] < k  # (n, 1, H, W): the top-k salient pixels
            xi, bi, ti = x[img_idx], base[img_idx], target[img_idx]
            curves["deletion"][steps_idx, img_idx.cpu()] = _target_probs(
                model, torch.where(top, bi, xi), ti
            ).cpu()
            curves["insertion"][steps_idx, img_idx.cpu()] = _target_probs(
                model, torch.where(top, xi, bi), ti
            ).cpu()
    out: dict[str, Any] = {}
    for name, curve in curves.items():
        curve = curve.T.double()  # (B, steps + 1)
        auc = (curve[:, 1:] + curve[:, :-1]).sum(dim=1) / (2 * steps)
        out[f"{name}_auc"] = float(auc.mean())
        out[f"{name}_curve"] = curve.tolist()
    return out


def dabkowski_gal_score(
    model: nn.Module,
    pixel_values: torch.Tensor,
    saliency: Any,
    target: Any,
    threshold: float = 0.5,
    min_area: float = 0.05,
) -> float:
    """Dabkowski & Gal (2017) saliency metric, mean of log(max(a, min_area)) - log p_c(crop); lower is better.

    Per image: min-max normalise the saliency to [0, 1] (a constant map becomes 0), keep pixels >= threshold,
    crop the image to their tight bounding box (the whole image if none are kept), resize the crop bilinearly
    back to (H, W) and score it; a is the box area over the image area.
    """
    x, s, target = _check_model_inputs(pixel_values, saliency, target)
    if not 0 < min_area <= 1:
        raise ValueError(f"min_area must be in (0, 1]; got {min_area}")
    b, _, h, w = x.shape
    lo = s.amin(dim=(1, 2), keepdim=True)
    span = s.amax(dim=(1, 2), keepdim=True) - lo
    norm = torch.where(span > 0, (s - lo) / span.clamp(min=1e-300), torch.zeros_like(s))
    crops, areas = [], []
    for i in range(b):
        rows = torch.nonzero((norm[i] >= threshold).any(dim=1))[:, 0]
        cols = torch.nonzero((norm[i] >= threshold).any(dim=0))[:, 0]
        r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, h)
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, w)
        crop = x[i : i + 1, :, r0:r1, c0:c1]
        crops.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
        areas.append((r1 - r0) * (c1 - c0) / (h * w))
    model.eval()
    with torch.no_grad():
        log_p = classifier_logits(model, torch.cat(crops)).double().log_softmax(dim=-1)
    log_p = log_p.gather(1, target[:, None])[:, 0].cpu()
    scores = [math.log(max(a, min_area)) - float(lp) for a, lp in zip(areas, log_p, strict=True)]
    return float(np.mean(scores))


def rank_correlation(a: Any, b: Any) -> float:
    """Mean over images of the Spearman correlation of two flattened maps; ties get distinct (stable) ranks."""
    x, y = _check_maps(a, b, ("a", "b"))
    if x.shape[1] * x.shape[2] < 2:
        raise ValueError(f"rank_correlation needs at least 2 pixels per map; got {x.shape}")
    rx = np.argsort(np.argsort(x.reshape(x.shape[0], -1), axis=1, kind="stable"), axis=1).astype(np.float64)
    ry = np.argsort(np.argsort(y.reshape(y.shape[0], -1), axis=1, kind="stable"), axis=1).astype(np.float64)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    rho = (rx * ry).sum(axis=1) / np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    return float(rho.mean())


def randomize_model(
    model: nn.Module, seed: int = 0, layers: Literal["all", "top"] = "all", num_layers: int = 1
) -> nn.Module:
    """A deep copy of `model` with its weights re-initialised (Adebayo et al. 2018, arXiv 1810.03292).

    A "layer" is a module that owns parameters directly, in `model.modules()` (registration) order, which
    for most models is forward order. `layers="all"` re-initialises every layer; `layers="top"` only the
    last `num_layers` (Adebayo's cascading randomisation from the logits down: call with 1, 2, 3, ...).
    Inside a transformers `PreTrainedModel` a layer is re-initialised by the nearest such model's
    `_init_weights` (the model's own init scheme); any parameter that leaves untouched, and every layer
    outside a `PreTrainedModel`, is re-initialised by the layer's `reset_parameters()`. Normalisation
    layers are reset too (weight 1, bias 0, running statistics cleared). A parameter that neither
    touches raises a ValueError. Draws from torch's CPU (and, for weights on a GPU, CUDA) RNG seeded with
    `seed` inside `torch.random.fork_rng`: the same seed gives the same copy, and the caller's RNG state
    is kept. The original model is not modified.
    """
    if layers not in ("all", "top"):
        raise ValueError(f'layers must be "all" or "top"; got {layers!r}')
    randomized = copy.deepcopy(model)
    owned = [m for m in randomized.modules() if next(m.parameters(recurse=False), None) is not None]
    if layers == "top":
        if not 1 <= num_layers <= len(owned):
            raise ValueError(f"num_layers must be in [1, {len(owned)}] for this model; got {num_layers}")
        owned = owned[-num_layers:]
    hf_owner = {}  # module -> nearest enclosing PreTrainedModel (parents are visited before children)
    for owner in randomized.modules():
        if isinstance(owner, PreTrainedModel):
            hf_owner.update({m: owner for m in owner.modules()})
    for tensor in [*randomized.parameters(), *randomized.buffers()]:
        if hasattr(tensor, "_is_hf_initialized"):  # transformers skips re-initialising flagged tensors
            del tensor._is_hf_initialized
    devices = sorted({p.get_device() for p in randomized.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        for module in owned:
            params = dict(module.named_parameters(recurse=False))
            versions = {name: p._version for name, p in params.items()}
            if module in hf_owner:
                hf_owner[module]._init_weights(module)
            if any(p._version == versions[name] for name, p in params.items()) and hasattr(
                module, "reset_parameters"
            ):
                module.reset_parameters()
            untouched = [name for name, p in params.items() if p._version == versions[name]]
            if untouched:
                raise ValueError(
                    f"cannot re-initialise {type(module).__name__}.{untouched[0]}: no transformers "
                    "_init_weights covers it and the module has no reset_parameters(); give it one."
                )
    return randomized


def randomization_sanity_check(
    explain_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any],
    model: nn.Module,
    pixel_values: torch.Tensor,
    target: Any,
    seed: int = 0,
    layers: Literal["all", "top"] = "all",
    num_layers: int = 1,
) -> dict[str, Any]:
    """Model-randomisation sanity check (Adebayo et al. 2018): do the maps change when the weights do?

    `explain_fn(model, pixel_values, target)` returns (B, H, W) maps, e.g.
    ``lambda m, x, t: FidoExplainer(m, cfg).explain(x, t).saliency``. It is called on `model` and on
    ``randomize_model(model, seed, layers, num_layers)``, and the two sets of maps are compared with
    Spearman rank correlation (`rank_correlation`), per image and on absolute values as well (Adebayo
    report both, since a randomised model may flip a map's sign). A LOW correlation means the explainer
    PASSES: its maps depend on the learned weights. A correlation near 1 means the maps barely depend
    on the model (e.g. an edge detector), so they cannot explain it.

    Returns a dict with "rank_correlation" (mean over images), "rank_correlation_per_image" (list of B
    floats), "abs_rank_correlation" (mean, on |map|), and the maps "saliency" and "randomized_saliency"
    as (B, H, W) numpy arrays.
    """
    randomized = randomize_model(model, seed=seed, layers=layers, num_layers=num_layers)
    maps, random_maps = _check_maps(
        explain_fn(model, pixel_values, target),
        explain_fn(randomized, pixel_values, target),
        ("explain_fn(model)", "explain_fn(randomized model)"),
    )
    per_image = [rank_correlation(a[None], b[None]) for a, b in zip(maps, random_maps, strict=True)]
    return {
        "rank_correlation": float(np.mean(per_image)),
        "rank_correlation_per_image": per_image,
        "abs_rank_correlation": rank_correlation(np.abs(maps), np.abs(random_maps)),
        "saliency": maps,
        "randomized_saliency": random_maps,
    }
