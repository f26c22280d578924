"""One small adapter so every tool (PAT-I, explainers, CAMs) works on any image classifier."""

import torch
from torch import nn


def classifier_logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Call `model(pixel_values=...)` and return its (batch, num_classes) logits.

    Accepts transformers `ModelOutput`s with `.logits`, plain tensors and tuples whose first item is the
    logits, so HF models, ours and bare `nn.Module` classifiers all plug in.
    """
    out = model(pixel_values=pixel_values)
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, torch.Tensor):
        logits = out
    if logits is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        logits = out[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != pixel_values.shape[0]:
        raise TypeError(
            f"{type(model).__name__} returned no (batch, num_classes) logits for pixel_values of shape "
            f"{tuple(pixel_values.shape)}; wrap it so that model(pixel_values=x).logits is a 2-D tensor."
        )
    return logits
