"""Baselines of robust fine-tuning: WiSE-FT weight interpolation (arXiv 2109.01903) and the linear probe."""

import copy

import torch
from torch import nn


def wise_ft(zero_shot_model: nn.Module, fine_tuned_model: nn.Module, alpha: float) -> nn.Module:
    """A new model with theta = (1 - alpha) theta_zs + alpha theta_ft; both endpoints stay untouched.

    Every floating-point tensor of the state dicts (parameters and buffers) is interpolated, so alpha 0 and 1
    give the endpoints exactly. Integer buffers (step counters, position ids) are the fine-tuned model's. The
    two models must have the same state-dict keys and shapes; the result is a copy of `fine_tuned_model`.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    zs, ft = zero_shot_model.state_dict(), fine_tuned_model.state_dict()
    if zs.keys() != ft.keys():
        only_zs, only_ft = sorted(zs.keys() - ft.keys()), sorted(ft.keys() - zs.keys())
        raise ValueError(
            f"the models differ in architecture: keys only in the zero-shot model {only_zs[:5]}, only in the "
            f"fine-tuned one {only_ft[:5]}; WiSE-FT needs two checkpoints of one architecture."
        )
    mismatched = [k for k in ft if zs[k].shape != ft[k].shape]
    if mismatched:
        k = mismatched[0]
        raise ValueError(
            f"{len(mismatched)} tensors differ in shape, e.g. {k}: {tuple(zs[k].shape)} vs {tuple(ft[k].shape)}; "
            "WiSE-FT needs two checkpoints of one architecture (same classes, same sizes)."
        )
    mixed = {
        k: (1 - alpha) * zs[k].to(v.device) + alpha * v if torch.is_floating_point(v) else v.clone()
        for k, v in ft.items()
    }
    model = copy.deepcopy(fine_tuned_model)
    model.load_state_dict(mixed)
    return model


def freeze_all_but_head(model: nn.Module, head: str = "classifier") -> nn.Module:
    """Linear probe: in place, only the parameters of the `head` submodule keep requires_grad; returns `model`."""
    module = getattr(model, head, None)
    if not isinstance(module, nn.Module) or not any(True for _ in module.parameters()):
        raise ValueError(f"{type(model).__name__} has no {head!r} submodule with parameters to probe.")
    model.requires_grad_(False)
    module.requires_grad_(True)
    return model


__all__ = ["freeze_all_but_head", "wise_ft"]
