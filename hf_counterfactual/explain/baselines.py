"""Baseline saliency explainers to compare FIDO against: occlusion, Grad-CAM and BBMP.

Occlusion (Zeiler & Fergus, arXiv 1311.2901) slides a square of a constant value over the image and
records how much the target class's softmax probability drops. Grad-CAM (Selvaraju et al., arXiv
1610.02391) weights a conv layer's activation maps by the spatial mean of the target logit's gradient.
BBMP (Fong & Vedaldi, "meaningful perturbations", arXiv 1704.03296) optimises a deterministic mask in
[0, 1] through an infiller. All take any classifier through `classifier_logits` and return a (B, H, W)
map (high = important).
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.adapters import (
    as_image_batch,
    check_explain_inputs,
    check_target_range,
    classifier_logits,
    classify_and_check_target,
    eval_mode,
)
from .fido import log_odds
from .infillers import get_infiller


class OcclusionExplainer:
    """Occlusion saliency: the drop of p_target when a `window` x `window` square is set to `baseline`.

    Windows start at 0, `stride`, 2 * `stride`, ... along each axis while they fit in the image (a window
    larger than the image is clipped to it). A pixel's saliency is the mean drop
    p_target(original) - p_target(occluded) over the windows covering it; pixels no window covers (e.g.
    when `stride` > `window`) get 0. The occluded images are scored `batch_size` at a time without
    gradients; the model is put in eval mode (its mode is restored afterwards).
    """

    def __init__(
        self, model: nn.Module, window: int = 8, stride: int = 4, baseline: float = 0.0, batch_size: int = 64
    ):
        if window < 1 or stride < 1 or batch_size < 1:
            raise ValueError(
                f"window, stride and batch_size must be >= 1, got {window}, {stride}, {batch_size}."
            )
        self.model = model
        self.window = window
        self.stride = stride
        self.baseline = baseline
        self.batch_size = batch_size

    def explain(self, pixel_values: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        pixel_values = as_image_batch(pixel_values)
        target = check_explain_inputs(pixel_values, target)
        with eval_mode(self.model), torch.no_grad():
            return self._occlude(pixel_values, target)

    def _occlude(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = classifier_logits(self.model, x)
        check_target_range(target, logits.shape[-1])
        target = target.long()
        p_orig = logits.softmax(-1).gather(-1, target[:, None]).squeeze(-1)

        wh, ww = min(self.window, h), min(self.window, w)
        corners = [
            (i, j) for i in range(0, h - wh + 1, self.stride) for j in range(0, w - ww + 1, self.stride)
        ]
        jobs = [(n, i, j) for n in range(b) for i, j in corners]  # (image, top, left)
        drop_sum = torch.zeros(b, h, w, dtype=x.dtype, device=x.device)
        count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
        for i, j in corners:
            count[i : i + wh, j : j + ww] += 1
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            idx = torch.tensor([n for n, _, _ in chunk], device=x.device)
            occluded = x[idx].clone()
            for k, (_, i, j) in enumerate(chunk):
                occluded[k, :, i : i + wh, j : j + ww] = self.baseline
            p = classifier_logits(self.model, occluded).softmax(-1).gather(-1, target[idx, None]).squeeze(-1)
            drop = (p_orig[idx] - p).to(x.dtype)
            for k, (n, i, j) in enumerate(chunk):
                drop_sum[n, i : i + wh, j : j + ww] += drop[k]
        return torch.where(count > 0, drop_sum / count.clamp_min(1), torch.zeros_like(drop_sum))


def deepest_conv_layer(model: nn.Module, pixel_values: torch.Tensor, min_size: int = 7) -> nn.Module:
    """The last `nn.Conv2d` (in call order) whose output is at least `min_size` x `min_size` for these inputs.

    Grad-CAM's resolution is its layer's: ResNet-50's last stage gives 7 x 7 at 224 px, but a small
    model on small images can end at 2 x 2, which cannot localise anything. One forward finds the layer.
    """
    calls = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: calls.append((mod, out.shape[-2:])))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad(), eval_mode(model):  # eval: one image through train-mode BatchNorm is an error
            classifier_logits(model, pixel_values[:1])
    finally:
        for hook in hooks:
            hook.remove()
    large = [m for m, (h, w) in calls if min(h, w) >= min_size]
    if not large:
        raise ValueError(
            f"{type(model).__name__} has no Conv2d layer with >= {min_size} x {min_size} outputs."
        )
    return large[-1]


class GradCamExplainer:
    """Grad-CAM (arXiv 1610.02391, eq. 1-2): relu(sum_k w_k A_k) with w_k the spatial mean of d y_c / d A_k.

    `layer` is the module whose (N, K, h, w) output A is used; by default the last `nn.Conv2d` in
    `model.modules()`. The map is upsampled bilinearly to the input size and divided by its max (an
    all-zero map stays 0), so it lies in [0, 1]. Gradients are taken with `torch.autograd.grad` w.r.t.
    A only: model parameters get no `.grad`, and frozen models work. The model is put in eval mode (its
    mode is restored afterwards).
    """

    def __init__(self, model: nn.Module, layer: nn.Module | None = None):
        if layer is None:
            convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                raise ValueError(f"{type(model).__name__} has no Conv2d layer; pass layer=...")
            layer = convs[-1]
        self.model = model
        self.layer = layer

    def explain(self, pixel_values: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        pixel_values = as_image_batch(pixel_values)
        target = check_explain_inputs(pixel_values, target)
        cam = layer_grad_cam(self.model, self.layer, pixel_values, target)
        cam = F.interpolate(cam[:, None], size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        return normalise_by_max(cam[:, 0])


def layer_grad_cam(
    model: nn.Module, layer: nn.Module, pixel_values: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM (eq. 1-2) at `layer`'s own (h, w) resolution, unnormalised: relu(sum_k w_k A_k), shape (B, h, w).

    Gradients are taken with `torch.autograd.grad` w.r.t. A only, so parameters get no `.grad` and frozen
    models work; the model runs in eval mode (its mode is restored afterwards).
    """
    stored = []
    handle = layer.register_forward_hook(activation_keeper(stored))
    try:
        with eval_mode(model), torch.enable_grad():
            logits = classifier_logits(model, pixel_values)
            check_target_range(target, logits.shape[-1])
            if not stored:
                raise ValueError(f"layer {type(layer).__name__} was not called by the model's forward.")
            score = logits.gather(-1, target.long()[:, None]).sum()
            (grad,) = torch.autograd.grad(score, stored[-1])
    finally:
        handle.remove()
    return grad_cam_map(stored[-1], grad)


def activation_keeper(stored: list[torch.Tensor]):
    """A forward hook appending its layer's (N, K, h, w) output A to `stored`, a tensor Grad-CAM can
    differentiate w.r.t. (a leaf that requires grad, when the layer's output does not: a frozen model)."""

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(
                f"Grad-CAM needs a layer with (N, K, h, w) tensor output; {type(module).__name__} "
                "returned something else; pass a conv layer as layer=..."
            )
        if not output.requires_grad:
            output = output.detach().requires_grad_()
        stored.append(output)
        return output

    return hook


def grad_cam_map(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Eq. 1-2 from A and d y_c / d A: relu(sum_k w_k A_k) with w_k the spatial mean of the gradient, (B, h, w)."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activation.detach()).sum(1))


def normalise_by_max(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map of a (B, h, w) batch divided by its max; an all-zero map stays 0."""
    peak = maps.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


@dataclass
class BbmpConfig:
    """Settings of `BbmpExplainer`. FIDO's BBMP (methods/fido.md): mask init 1, lambda 5e-3, 300 steps.

    The settings fido.md does not give (grid, optimiser, ramp, TV) default to `FidoConfig`'s, so BBMP and
    FIDO run under the same schedule and differ only in the mask: deterministic here, sampled in FIDO.

    Args:
        objective: "sdr" (default; Fong & Vedaldi's deletion game, the form FIDO compares against) or
            "ssr" (their preservation game).
        mask_size: side of the square mask grid; 56 for 224 inputs (about 4 x 4 pixels per cell).
        lambda_: weight of the sparsity term, summed over all input pixels (as in `FidoConfig`).
        ramp_steps: steps over which the sparsity (and TV) weight ramps linearly from 0 to 1.
        steps: optimisation steps.
        lr: Adam learning rate, decayed linearly to 0 over `steps`.
        tv_weight: weight of the total-variation term on the upsampled mask (0 = off).
    """

    objective: str = field(default="sdr", metadata={"help": '"sdr" (deletion game) or "ssr" (preservation).'})
    mask_size: int = field(default=56, metadata={"help": "Grid side of the mask (56 for 224 input)."})
    lambda_: float = field(default=5e-3, metadata={"help": "Sparsity weight, summed over input pixels."})
    ramp_steps: int = field(default=30, metadata={"help": "Steps for the regulariser weight to ramp 0->1."})
    steps: int = field(default=300, metadata={"help": "Optimisation steps."})
    lr: float = field(default=0.05, metadata={"help": "Adam learning rate, linear decay to 0."})
    tv_weight: float = field(default=0.0, metadata={"help": "Total-variation weight on the mask (0 = off)."})

    def __post_init__(self):
        if self.objective not in ("ssr", "sdr"):
            raise ValueError(f'objective must be "ssr" or "sdr", got {self.objective!r}.')


class BbmpExplainer:
    """BBMP saliency (Fong & Vedaldi 2017) as FIDO's paper runs it: one deterministic mask, no sampling.

    A keep-mask m in [0, 1] on a `mask_size` grid, initialised at 1 (everything kept), is upsampled
    bilinearly to the input size and composes x_hat = m * x + (1 - m) * G(x, round(m)) with an infiller G
    (no gradient through G). With s = `log_odds` of the target class the loss per image is

    - "sdr" (Fong & Vedaldi's deletion game, with log-odds as the class score):
      s(x_hat) + lambda * sum(1 - m), saliency = 1 - m (the deleted region);
    - "ssr" (preservation game): -s(x_hat) + lambda * sum(m), saliency = m (the kept region);

    sums over input pixels, plus an optional TV term. The mask is optimised with Adam and CLAMPED to
    [0, 1] after every step (Fong & Vedaldi's projection, not a sigmoid parametrisation), so the returned
    (B, H, W) map lies in [0, 1]. All images go through the classifier in one call per step; the result
    for an image does not depend on the rest of its batch (with a deterministic infiller). `infill` is an
    infiller name ("mean", "blur", "noise", "local") or any infiller callable. The model is put in eval
    mode (its mode is restored afterwards); gradients are taken with `torch.autograd.grad` w.r.t. the mask
    only, so model parameters get no `.grad`.
    """

    def __init__(self, model: nn.Module, config: BbmpConfig | None = None, infill="blur"):
        self.model = model
        self.config = config or BbmpConfig()
        self.infill = get_infiller(infill) if isinstance(infill, str) else infill

    def explain(self, pixel_values: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        pixel_values = as_image_batch(pixel_values)
        with eval_mode(self.model), torch.enable_grad():  # the mask needs gradients even under no_grad
            return self._optimise(pixel_values, classify_and_check_target(self.model, pixel_values, target))

    def _optimise(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, _, h, w = x.shape
        mask = torch.ones(b, 1, cfg.mask_size, cfg.mask_size, dtype=x.dtype, device=x.device)
        mask.requires_grad_()
        optimizer = torch.optim.Adam([mask], lr=cfg.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / cfg.steps)
        for step in range(cfg.steps):
            ramp = min(1.0, step / cfg.ramp_steps) if cfg.ramp_steps > 0 else 1.0
            m = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)
            with torch.no_grad():
                fill = self.infill(x, m.round())
            x_hat = m * x + (1 - m) * fill
            score = log_odds(classifier_logits(self.model, x_hat), target)
            if cfg.objective == "sdr":
                loss = score + ramp * cfg.lambda_ * (1 - m).sum(dim=(1, 2, 3))
            else:
                loss = -score + ramp * cfg.lambda_ * m.sum(dim=(1, 2, 3))
            if cfg.tv_weight > 0:
                tv = (m[..., 1:, :] - m[..., :-1, :]).abs().mean(dim=(1, 2, 3))
                tv = tv + (m[..., :, 1:] - m[..., :, :-1]).abs().mean(dim=(1, 2, 3))
                loss = loss + ramp * cfg.tv_weight * tv
            # autograd.grad, not backward: the model's .grad stays untouched.
            (mask.grad,) = torch.autograd.grad(loss.sum(), mask)
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                mask.clamp_(0, 1)

        with torch.no_grad():
            m = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return 1 - m if cfg.objective == "sdr" else m
