"""One small adapter so every tool (PAT-I, explainers, CAMs) works on any image classifier."""

from contextlib import contextmanager

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


def as_image_batch(pixel_values) -> torch.Tensor:
    """A (B, C, H, W) tensor from a tensor or a list of (C, H, W) images; images of mismatched size are an error."""
    if isinstance(pixel_values, list | tuple):
        shapes = {tuple(image.shape) for image in pixel_values}
        if len(shapes) > 1:
            raise ValueError(
                f"images of mismatched size {sorted(shapes)}; resize them to one size first "
                "(e.g. with the model's image processor)."
            )
        if not shapes:
            raise ValueError("no images given.")
        return torch.stack(list(pixel_values))
    return pixel_values


def check_explain_inputs(pixel_values: torch.Tensor, target) -> torch.Tensor:
    """Shared explainer input checks that need no forward pass: 4-D images, one integer class per image."""
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}."
        )
    target = torch.as_tensor(target, device=pixel_values.device)
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}.")
    b = pixel_values.shape[0]
    if target.shape != (b,):
        raise ValueError(f"target must have shape ({b},), one class per image; got {tuple(target.shape)}.")
    return target


def check_target_range(target: torch.Tensor, num_classes: int) -> None:
    """Every target is a class of a model with `num_classes` outputs."""
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError(f"target {target.tolist()} out of range for a model with {num_classes} classes.")


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with `model` in eval mode; its previous mode is restored afterwards, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def classify_and_check_target(model: nn.Module, pixel_values: torch.Tensor, target) -> torch.Tensor:
    """The checked (B,) integer target of an explainer call: input checks, then range against the model's classes."""
    target = check_explain_inputs(pixel_values, target)
    try:
        with torch.no_grad():
            logits = classifier_logits(model, pixel_values)
    except RuntimeError as e:
        raise ValueError(
            f"{type(model).__name__} failed on pixel_values of shape {tuple(pixel_values.shape)}; check the "
            f"input size and channels it expects (its image processor's size): {e}"
        ) from e
    check_target_range(target, logits.shape[-1])
    return target.long()
