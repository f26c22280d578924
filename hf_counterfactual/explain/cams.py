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
from .baselines import activation_keeper, deepest_conv_layer, grad_cam_map, layer_grad_cam, normalise_by_max


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
    if not attention_modules(model):
        raise ValueError(
            f"{type(model).__name__} has no attention layers for an attention CAM; use grad_cam for CNNs."
        )
    return _cam_of_own_pass(model, pixel_values, labels, cell=None)


def _attention_rollout(
    captured: list[tuple[nn.Module, torch.Tensor]], grads: tuple[torch.Tensor, ...], size: tuple[int, int]
) -> torch.Tensor:
    """Eq. 5-6 over the captured (module, attention) pairs and d logit_y / d attention: (B, h, w) in [0, 1]."""
    attentions = [attn for _, attn in captured]
    b, _, n, _ = attentions[0].shape
    relevance = torch.eye(n, device=attentions[0].device).expand(b, n, n)
    for attn, grad in zip(attentions, grads, strict=True):
        a = (grad * attn.detach()).clamp(min=0).mean(1).float()
        relevance = relevance + a @ relevance
    patch = captured[0][0].config.patch_size
    h, w = size[0] // patch, size[1] // patch
    if h * w >= n:
        raise ValueError(f"{n} tokens cannot hold a {h} x {w} patch grid and a CLS token.")
    return normalise_by_max(relevance[:, 0, n - h * w :].reshape(b, h, w).to(attentions[0].dtype))


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
    return _pooled(layer_grad_cam(model, layer, pixel_values, labels), pixel_values.shape[-2:], grid)


def _pooled(cam: torch.Tensor, size: tuple[int, int], grid: tuple[int, int] | None) -> torch.Tensor:
    """A (B, h, w) Grad-CAM upsampled bilinearly to `size`, average-pooled to `grid` if given, max-normalised."""
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)
    if grid is not None:
        cam = F.adaptive_avg_pool2d(cam, grid)
    return normalise_by_max(cam[:, 0])


class CamRecording:
    """`cam_for`'s map, taken from a forward pass the caller runs anyway (a training step's own CE pass).

    While the recording is open (`with CamRecording(model, pixel_values, cell) as recording:`), forward hooks
    keep what the CAM needs of the model's pass on `pixel_values`: a ViT's attention probabilities, or the
    Grad-CAM layer's activations of a CNN. `recording.cam(logits, labels)` then differentiates that pass's
    logits with `torch.autograd.grad(..., retain_graph=True)`, so the same graph still serves the loss's
    backward and no parameter gets a `.grad`. The map is the model's in the mode the pass ran in (`cam_for`:
    eval). The attentions (or activations) must require grad: a model whose layers are frozen needs an
    input that requires grad, as `cam_for` passes.
    """

    def __init__(self, model: nn.Module, pixel_values: torch.Tensor, cell: int | None = None):
        h, w = pixel_values.shape[-2:]
        if cell is not None and (h % cell or w % cell):
            raise ValueError(f"cell {cell} does not divide the image size {h} x {w}.")
        self.model, self.size, self.cell = model, (h, w), cell
        self.modules = attention_modules(model)
        self.layer = None
        if not self.modules:
            if cell is None:
                raise ValueError(
                    f"cell=None means one ViT patch, but {type(model).__name__} has no attention; pass cell=... (pixels)."
                )
            self.layer = deepest_conv_layer(model, pixel_values)
        self.captured: list = []
        self.hooks: list = []

    def __enter__(self) -> "CamRecording":
        self.captured.clear()
        if self.layer is not None:
            self.hooks = [self.layer.register_forward_hook(activation_keeper(self.captured))]
        else:
            keep = lambda module, inputs, output: self.captured.append((module, output[1]))  # noqa: E731
            self.hooks = [module.register_forward_hook(keep) for module in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()

    def cam(self, logits: torch.Tensor, labels: torch.Tensor, retain_graph: bool = True) -> torch.Tensor:
        """The (B, H / cell, W / cell) map for class `labels` of the recorded pass, whose `logits` these are."""
        check_target_range(labels, logits.shape[-1])
        if not self.captured:
            kind = "attention layer" if self.layer is None else f"layer {type(self.layer).__name__}"
            raise ValueError(f"no {kind} of {type(self.model).__name__} ran while recording the CAM.")
        with torch.enable_grad():
            score = logits.gather(-1, labels.long()[:, None]).sum()
        h, w = self.size
        if self.layer is not None:
            (grad,) = torch.autograd.grad(score, self.captured[-1], retain_graph=retain_graph)
            cam = grad_cam_map(self.captured[-1], grad)
            return _pooled(cam, self.size, (h // self.cell, w // self.cell))
        if any(attn is None for _, attn in self.captured):
            impl = self.captured[0][0].config._attn_implementation
            raise ValueError(
                f"{type(self.model).__name__} uses {impl!r} attention, which returns no attention "
                'probabilities; load it with attn_implementation="eager".'
            )
        attentions = [attn for _, attn in self.captured]
        grads = torch.autograd.grad(score, attentions, retain_graph=retain_graph, materialize_grads=True)
        cam = _attention_rollout(self.captured, grads, self.size)
        if self.cell is None or cam.shape[-2:] == (h // self.cell, w // self.cell):
            return cam
        patch = h // cam.shape[-2]
        if self.cell % patch:
            raise ValueError(f"cell {self.cell} must be a multiple of the patch size {patch}.")
        return normalise_by_max(F.avg_pool2d(cam[:, None], self.cell // patch)[:, 0])


def cam_for(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, cell: int | None = None
) -> torch.Tensor:
    """The (B, H / cell, W / cell) CAM masking uses: attention CAM for ViT/CLIP, Grad-CAM for CNNs.

    `cell` is the mask unit in pixels; None means one ViT patch (and is an error for a CNN). For a ViT a
    larger cell must be a multiple of the patch size; the patch map is average-pooled to it. The model runs
    a pass of its own, in eval mode; `CamRecording` takes the same map from a pass the caller runs.
    """
    labels = check_explain_inputs(pixel_values, labels).long()
    return _cam_of_own_pass(model, pixel_values, labels, cell)


def _cam_of_own_pass(
    model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, cell: int | None
) -> torch.Tensor:
    """`CamRecording`'s map of an eval-mode pass; the input requires grad, so frozen models build a graph too."""
    recording = CamRecording(model, pixel_values, cell)
    with eval_mode(model), torch.enable_grad(), recording:
        logits = classifier_logits(model, pixel_values.detach().requires_grad_())
    return recording.cam(logits, labels, retain_graph=False)
