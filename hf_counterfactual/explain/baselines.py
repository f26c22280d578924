"""Baseline saliency explainers to compare FIDO against: occlusion and Grad-CAM.

Occlusion (Zeiler & Fergus, arXiv 1311.2901) slides a square of a constant value over the image and
records how much the target class's softmax probability drops. Grad-CAM (Selvaraju et al., arXiv
1610.02391) weights a conv layer's activation maps by the spatial mean of the target logit's gradient.
Both take any classifier through `classifier_logits` and return a (B, H, W) map (high = important).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..models.adapters import check_explain_inputs, check_target_range, classifier_logits


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

    def explain(self, pixel_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_explain_inputs(pixel_values, target)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self._occlude(pixel_values, target)
        finally:
            self.model.train(was_training)

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

    def explain(self, pixel_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_explain_inputs(pixel_values, target)
        stored = []

        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                raise ValueError(
                    f"Grad-CAM needs a layer with (N, K, h, w) tensor output; {type(module).__name__} "
                    "returned something else; pass a conv layer as layer=..."
                )
            if not output.requires_grad:  # frozen model: make A a leaf we can differentiate w.r.t.
                output = output.detach().requires_grad_()
            stored.append(output)
            return output

        was_training = self.model.training
        self.model.eval()
        handle = self.layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = classifier_logits(self.model, pixel_values)
                check_target_range(target, logits.shape[-1])
                if not stored:
                    raise ValueError(
                        f"layer {type(self.layer).__name__} was not called by the model's forward."
                    )
                activation = stored[-1]
                score = logits.gather(-1, target.long()[:, None]).sum()
                (grad,) = torch.autograd.grad(score, activation)
        finally:
            handle.remove()
            self.model.train(was_training)

        activation = activation.detach()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.amax(dim=(1, 2), keepdim=True)
        return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
