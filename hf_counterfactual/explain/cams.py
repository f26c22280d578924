"""Batched class activation maps on a coarse grid, cheap enough to compute every training step.

ViTs and CLIP vision towers get the gradient-weighted attention rollout of Chefer et al. (arXiv 2103.15679,
eq. 5-6) on their patch grid; CNNs get Grad-CAM (arXiv 1610.02391) pooled to cells. Masked-image robust
fine-tuning (arXiv 2303.03052) thresholds these maps to decide which cells to mask. Every map is divided by
its image's max, so it lies in [0, 1]. Gradients are taken with `torch.autograd.grad`, never `.backward()`,
so the model's `.grad` fields stay untouched; the model runs in eval mode and its mode is restored.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..models.adapters import check_explain_inputs, check_target_range, classifier_logits, eval_mode
from .baselines import deepest_conv_layer, layer_grad_cam, normalise_by_max


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules inside `model`: those whose outputs `output_attentions=True` would return.

    transformers models declare them in `_can_record_outputs["attentions"]` (a class or an `OutputRecorder`),
    which is what their own `output_attentions` hooks use; a model with none (a CNN) gives [].
    """
    classes = set()
    for module in model.modules():
        specs = (getattr(module, "_can_record_outputs", None) or {}).get("attentions")
        for spec in specs if isinstance(specs, list) else [specs]:
            target = getattr(spec, "target_class", spec)
            if isinstance(target, type):
                classes.add(target)
    return [m for m in model.modules() if classes and isinstance(m, tuple(classes))]


def attention_gradient_cam(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Chefer et al.'s rule (eq. 5-6) for class `labels`, batched: a (B, h, w) map on the patch grid in [0, 1].

    R = I; for each block in call order A = mean_heads(clamp(d logit_y / d attn * attn, min=0)); R = R + A @ R;
    the map is R[CLS, patches]. The attention probabilities are captured with forward hooks on
    `attention_modules(model)` (the tensors `output_attentions=True` returns), so wrappers that drop
    `.attentions`, like `ClipZeroShotClassifier`, work too. Only eager attention returns them: load the model
    with `attn_implementation="eager"`, otherwise this raises. Patches are the last h * w tokens, with
    (h, w) = image size // `config.patch_size`.
    """
    labels = check_explain_inputs(pixel_values, labels).long()
    modules = attention_modules(model)
    if not modules:
        raise ValueError(
            f"{type(model).__name__} has no attention layers for an attention CAM; use grad_cam for CNNs."
        )
    captured = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append((mod, out[1]))) for m in modules]
    try:
        with eval_mode(model), torch.enable_grad():
            # The input requires grad so that frozen models still build a graph through the attentions.
            logits = classifier_logits(model, pixel_values.detach().requires_grad_())
            check_target_range(labels, logits.shape[-1])
            if not captured:
                raise ValueError(f"no attention layer of {type(model).__name__} ran on pixel_values.")
            if any(attn is None for _, attn in captured):
                impl = captured[0][0].config._attn_implementation
                raise ValueError(
                    f"{type(model).__name__} uses {impl!r} attention, which returns no attention "
                    'probabilities; load it with attn_implementation="eager".'
                )
            attentions = [attn for _, attn in captured]
            score = logits.gather(-1, labels[:, None]).sum()
            grads = torch.autograd.grad(score, attentions, materialize_grads=True)
    finally:
        for hook in hooks:
            hook.remove()

    b, _, n, _ = attentions[0].shape
    relevance = torch.eye(n, device=logits.device).expand(b, n, n)
    for attn, grad in zip(attentions, grads, strict=True):
        a = (grad * attn.detach()).clamp(min=0).mean(1).float()
        relevance = relevance + a @ relevance
    patch = captured[0][0].config.patch_size
    h, w = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
    if h * w >= n:
        raise ValueError(f"{n} tokens cannot hold a {h} x {w} patch grid and a CLS token.")
    return normalise_by_max(relevance[:, 0, n - h * w :].reshape(b, h, w).to(pixel_values.dtype))


def grad_cam(
    model: nn.Module,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    layer: nn.Module | None = None,
    grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Batched Grad-CAM on `layer` (default `deepest_conv_layer`), upsampled bilinearly to the image size and,
    given `grid` = (h, w), average-pooled to that grid of cells; (B, H, W) or (B, h, w), each map in [0, 1]."""
    labels = check_explain_inputs(pixel_values, labels)
    layer = layer or deepest_conv_layer(model, pixel_values)
    cam = layer_grad_cam(model, layer, pixel_values, labels)[:, None]
    cam = F.interpolate(cam, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
    if grid is not None:
        cam = F.adaptive_avg_pool2d(cam, grid)
    return normalise_by_max(cam[:, 0])


def cam_for(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, cell: int | None = None
) -> torch.Tensor:
    """The (B, H / cell, W / cell) CAM masking uses: attention CAM for ViT/CLIP, Grad-CAM for CNNs.

    `cell` is the mask unit in pixels; None means one ViT patch (and is an error for a CNN). For a ViT a
    larger cell must be a multiple of the patch size; the patch map is average-pooled to it.
    """
    h, w = pixel_values.shape[-2:]
    if cell is not None and (h % cell or w % cell):
        raise ValueError(f"cell {cell} does not divide the image size {h} x {w}.")
    if not attention_modules(model):
        if cell is None:
            raise ValueError(
                f"cell=None means one ViT patch, but {type(model).__name__} has no attention; pass cell=... (pixels)."
            )
        return grad_cam(model, pixel_values, labels, grid=(h // cell, w // cell))
    cam = attention_gradient_cam(model, pixel_values, labels)
    if cell is None or cam.shape[-2:] == (h // cell, w // cell):
        return cam
    patch = h // cam.shape[-2]
    if cell % patch:
        raise ValueError(f"cell {cell} must be a multiple of the patch size {patch}.")
    return normalise_by_max(F.avg_pool2d(cam[:, None], cell // patch)[:, 0])
