"""FIDO: counterfactual saliency by optimising a dropout mask through an infiller (arXiv 1807.08024).

For each image a grid of dropout logits (init 0, i.e. p = 0.5) is upsampled to the input size; every
step draws `num_samples` relaxed Bernoulli keep-masks per image, fills the dropped pixels with an
infiller, and scores the target class's log-odds. SSR (smallest sufficient region) keeps as few pixels
as possible while keeping the class; SDR (smallest destroying region) drops as few as possible while
destroying it. All images x samples go through the classifier in one call per step.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.adapters import as_image_batch, classifier_logits, classify_and_check_target, eval_mode
from .infillers import get_infiller

PAPER_IMAGE_SIZE = 224  # the paper's settings are for 224 x 224 inputs


@dataclass
class FidoConfig:
    """Settings of `FidoExplainer`; defaults are the paper's for 224 x 224 inputs.

    Args:
        objective: "ssr" (smallest sufficient region) or "sdr" (smallest destroying region).
        mask_size: side of the square grid of dropout logits; 56 for 224 inputs. For other input sizes
            pass a grid side that keeps about 4 x 4 pixels per cell.
        tau: temperature of the relaxed Bernoulli (concrete) keep-mask.
        lambda_: weight of the sparsity term, summed over all input pixels.
        ramp_steps: steps over which the sparsity (and TV) weight ramps linearly from 0 to 1.
        steps: optimisation steps.
        num_samples: Monte-Carlo masks per image and step.
        lr: Adam learning rate, decayed linearly to 0 over `steps`.
        tv_weight: weight of the total-variation term on the upsampled keep probability (0 = off).
        seed: seed of the mask noise; image i of a batch uses `seed + i`.
    """

    objective: str = field(default="ssr", metadata={"help": '"ssr" (sufficient) or "sdr" (destroying).'})
    mask_size: int = field(default=56, metadata={"help": "Grid side of the mask logits (56 for 224 input)."})
    tau: float = field(default=0.1, metadata={"help": "Concrete (relaxed Bernoulli) temperature."})
    lambda_: float = field(default=1e-3, metadata={"help": "Sparsity weight, summed over input pixels."})
    ramp_steps: int = field(default=30, metadata={"help": "Steps for the regulariser weight to ramp 0->1."})
    steps: int = field(default=300, metadata={"help": "Optimisation steps."})
    num_samples: int = field(default=8, metadata={"help": "Monte-Carlo masks per image and step."})
    lr: float = field(default=0.05, metadata={"help": "Adam learning rate, linear decay to 0."})
    tv_weight: float = field(default=0.0, metadata={"help": "Total-variation weight on the keep prob."})
    seed: int = field(default=0, metadata={"help": "Noise seed; image i of a batch uses seed + i."})

    def __post_init__(self):
        if self.objective not in ("ssr", "sdr"):
            raise ValueError(f'objective must be "ssr" or "sdr", got {self.objective!r}.')

    @classmethod
    def for_image_size(cls, size: int, **overrides) -> "FidoConfig":
        """The paper's settings rescaled from 224 px to `size`: a 4-pixel mask cell, and lambda * pixels kept."""
        scale = size / PAPER_IMAGE_SIZE
        return cls(**{"mask_size": max(2, round(56 * scale)), "lambda_": 1e-3 / scale**2, **overrides})


@dataclass
class FidoResult:
    """`saliency` (B, H, W): SSR keep prob - 0.5, or 0.5 - keep prob for SDR (high = important).
    `keep_prob` (B, H, W): final keep probability 1 - sigmoid(logit_p) at input resolution.
    `losses`: per step, the loss of each image (list of `steps` lists of B floats).
    """

    saliency: torch.Tensor
    keep_prob: torch.Tensor
    losses: list[list[float]]


def concrete_keep_mask(logit_p: torch.Tensor, u: torch.Tensor, tau: float) -> torch.Tensor:
    """Relaxed Bernoulli keep-mask z = 1 - sigmoid((logit_p + log u - log(1 - u)) / tau).

    `logit_p` is the logit of the DROPOUT probability, so large positive logit_p gives z ~ 0 (dropped).
    """
    return torch.sigmoid(-(logit_p + torch.log(u) - torch.log1p(-u)) / tau)


def log_odds(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-odds of the target class: log p_c - logsumexp_{c' != c} log p_c', one value per row."""
    log_p = F.log_softmax(logits, dim=-1)
    is_target = F.one_hot(target, logits.shape[-1]).bool()
    target_log_p = log_p.gather(-1, target[:, None]).squeeze(-1)
    return target_log_p - log_p.masked_fill(is_target, float("-inf")).logsumexp(-1)


class FidoExplainer:
    """Counterfactual saliency maps for any classifier `model(pixel_values=x)` returning logits.

    `infill` is an infiller name ("mean", "blur", "noise", "local") or any infiller callable. The model
    is put in eval mode (its mode is restored afterwards) and its weights are never updated or given
    gradients: only the mask logits are optimised. With a deterministic infiller, the result for an
    image does not depend on the rest of its batch.
    """

    def __init__(self, model: nn.Module, config: FidoConfig | None = None, infill="blur"):
        self.model = model
        self.config = config or FidoConfig()
        self.infill = get_infiller(infill) if isinstance(infill, str) else infill

    def explain(self, pixel_values: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> FidoResult:
        pixel_values = as_image_batch(pixel_values)
        cfg = self.config
        if cfg.objective not in ("ssr", "sdr"):
            raise ValueError(f'objective must be "ssr" or "sdr", got {cfg.objective!r}.')
        with eval_mode(self.model), torch.enable_grad():  # the mask needs gradients even under no_grad
            return self._optimise(pixel_values, classify_and_check_target(self.model, pixel_values, target))

    def _optimise(self, x: torch.Tensor, target: torch.Tensor) -> FidoResult:
        cfg = self.config
        b, c, h, w = x.shape
        s = cfg.num_samples
        logit_p = torch.zeros(b, 1, cfg.mask_size, cfg.mask_size, device=x.device, requires_grad=True)
        optimizer = torch.optim.Adam([logit_p], lr=cfg.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / cfg.steps)
        generators = [torch.Generator().manual_seed(cfg.seed + i) for i in range(b)]
        x_rep = x[:, None].expand(b, s, c, h, w).reshape(b * s, c, h, w)
        target_rep = target.repeat_interleave(s)
        eps = torch.finfo(x.dtype).eps
        losses = []
        for step in range(cfg.steps):
            ramp = min(1.0, step / cfg.ramp_steps) if cfg.ramp_steps > 0 else 1.0
            up = F.interpolate(logit_p, size=(h, w), mode="bilinear", align_corners=False)
            u = torch.stack([torch.rand(s, 1, h, w, generator=g, dtype=x.dtype) for g in generators])
            u = u.to(x.device).clamp(eps, 1 - eps)
            z = concrete_keep_mask(up[:, None], u, cfg.tau).reshape(b * s, 1, h, w)
            with torch.no_grad():
                fill = self.infill(x_rep, z.round())
            x_hat = z * x_rep + (1 - z) * fill
            score = log_odds(classifier_logits(self.model, x_hat), target_rep).view(b, s).mean(1)

            keep_prob = torch.sigmoid(-up)
            if cfg.objective == "ssr":
                loss = -score + ramp * cfg.lambda_ * keep_prob.sum(dim=(1, 2, 3))
            else:
                loss = score + ramp * cfg.lambda_ * (1 - keep_prob).sum(dim=(1, 2, 3))
            if cfg.tv_weight > 0:
                tv = (keep_prob[..., 1:, :] - keep_prob[..., :-1, :]).abs().mean(dim=(1, 2, 3))
                tv = tv + (keep_prob[..., :, 1:] - keep_prob[..., :, :-1]).abs().mean(dim=(1, 2, 3))
                loss = loss + ramp * cfg.tv_weight * tv
            # autograd.grad, not backward: the model's .grad stays untouched.
            (logit_p.grad,) = torch.autograd.grad(loss.sum(), logit_p)
            optimizer.step()
            schedule.step()
            losses.append(loss.detach().tolist())

        with torch.no_grad():
            up = F.interpolate(logit_p, size=(h, w), mode="bilinear", align_corners=False)
            keep_prob = torch.sigmoid(-up)[:, 0]
        saliency = keep_prob - 0.5 if cfg.objective == "ssr" else 0.5 - keep_prob
        return FidoResult(saliency=saliency, keep_prob=keep_prob, losses=losses)
