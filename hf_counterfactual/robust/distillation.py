"""The robust fine-tuning objective of arXiv 2303.03052 as one module the shared training loop trains.

    loss = CE(student(x), y) + distill_weight * MSE(f_s(x_m), f_t(x_m))

x are the clean images, x_m their masked counterfactuals: a CAM of the student for the true label,
computed online every step from the CE pass on x (`hf_counterfactual.explain.cams.CamRecording`; the same
map as `cam_for` for a model without dropout or batch norm, which `cam_for` runs in eval mode), thresholded
into a cell mask and refilled (`hf_counterfactual.robust.masking`). f is the image embedding and the teacher the frozen
pre-trained model. The same module gives the paper's baselines: vanilla fine-tuning (no teacher, CE only)
and fine-tuning with feature distillation on the clean images (`distill_on="clean"`).

The embedding f of any classifier is the input of its head `model.classifier`, flattened: for
`ClipImageClassifier` the unnormalised CLIP image embedding (after the final layer norm and the projection,
as `get_image_features`), for transformers image classifiers the pooled features (ViT: the final-layer-
normed CLS token; ResNet, ConvNeXt: the pooled map). One forward pass gives both logits and f.
"""

import contextlib
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..explain.cams import CamRecording
from ..models.adapters import classifier_logits
from .masking import MaskingConfig, apply_masks, cell_masks

logger = logging.getLogger(__name__)

DISTILL_ON = ("masked", "clean")


def logits_and_features(model: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, classes) logits and the (B, D) image embedding: the input of `model.classifier`, flattened."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no `classifier` head module, whose input is the embedding distilled; "
            "use a transformers image classifier or ClipImageClassifier.from_zero_shot(...)."
        )
    captured = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        logits = classifier_logits(model, pixel_values)
    finally:
        hook.remove()
    return logits, captured[-1].flatten(1)


@dataclass
class MaskedFineTuningOutput(ModelOutput):
    """`loss` = `ce_loss` + distill_weight * `distill_loss`; `distill_loss` is None when the step had none.

    `masked_fraction` is the share of masked cells (masked distillation only); `logits` are the student's on
    the clean images.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    distill_loss: torch.Tensor | None = None
    masked_fraction: torch.Tensor | None = None


class MaskedCounterfactualFineTuner(nn.Module):
    """Student + frozen teacher under the loss of the module docstring; `forward(pixel_values, labels)`.

    Args:
        student: the classifier being fine-tuned (a `classifier` head, see `logits_and_features`; for masked
            distillation with CAMs, a ViT / CLIP with eager attention, or a CNN with `masking.cell` set).
        teacher: the frozen reference, usually `copy.deepcopy(student)` before training; required when
            `distill_on` is set. It is frozen here in place (requires_grad False, eval mode) and kept out of
            this module's parameters, `state_dict` and `train()`, so the optimizer, gradient clipping, DDP
            and checkpoints see the student only; `.to()` still moves it. `save_pretrained` saves the student.
        masking: how masked counterfactuals are made (`distill_on="masked"` only).
        distill_weight: w (the paper: 30).
        distill_on: "masked" (the paper), "clean" (feature-distillation baseline) or None (vanilla fine-tuning).
        seed: seeds the generator of masks and refills; its state is this module's extra state, so it is
            checkpointed and a resumed run draws the same masks.

    A batch of one image (per process under DDP) cannot be refilled from another image: with refill "single"
    or "multi" such a step trains on the CE term only; `distill_skipped` counts these steps (the first warns).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        masking: MaskingConfig | None = None,
        distill_weight: float = 30.0,
        distill_on: str | None = "masked",
        seed: int = 0,
    ):
        super().__init__()
        if distill_on not in (*DISTILL_ON, None):
            raise ValueError(f"distill_on must be 'masked', 'clean' or None, got {distill_on!r}.")
        if (distill_on == "masked") != (masking is not None):
            raise ValueError('masking is needed with distill_on="masked" and used by nothing else.')
        if (distill_on is not None) != (teacher is not None):
            raise ValueError("a teacher is needed when distill_on is set, and only then.")
        if teacher is not None:
            if {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}:
                raise ValueError("teacher shares parameters with the student; pass copy.deepcopy(student).")
            teacher.requires_grad_(False).eval()
        self.student = student
        self.__dict__["teacher"] = teacher  # not a submodule: no parameters, no state_dict, no train()
        self.masking = masking
        self.distill_weight = distill_weight
        self.distill_on = distill_on
        self.generator = torch.Generator().manual_seed(seed)
        self.distill_skipped = 0

    def _apply(self, fn, recurse=True):
        if self.teacher is not None:
            self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """Save the student only (the teacher is the unchanged base model), if it can `save_pretrained`."""
        if hasattr(self.student, "save_pretrained"):
            self.student.save_pretrained(save_directory, **kwargs)

    def _random_cells(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, h, w) randomly masked cells of the random strategy."""
        cell = self.masking.cell or getattr(getattr(self.student, "config", None), "patch_size", None)
        if cell is None:
            raise ValueError(
                f"{type(self.student).__name__} has no config.patch_size; set the masking cell (pixels)."
            )
        h, w = pixel_values.shape[-2:]
        if h % cell or w % cell:
            raise ValueError(f"cell {cell} does not divide the image size {h} x {w}.")
        shape = (pixel_values.shape[0], h // cell, w // cell)
        return cell_masks(shape, self.masking, self.generator).to(pixel_values.device)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> MaskedFineTuningOutput:
        masked = self.distill_on == "masked"
        if masked and self.masking.refill != "none" and pixel_values.shape[0] < 2:
            if not self.distill_skipped:
                logger.warning("a batch of 1 cannot be refilled from other images: CE only for such steps.")
            self.distill_skipped += 1
            masked = False
        # The CAM comes from the CE pass itself (one forward less than a pass of its own); a partly frozen
        # student needs an input that requires grad for the CAM's gradient to reach every layer.
        recording = contextlib.nullcontext()
        if masked and self.masking.strategy != "random":
            recording = CamRecording(self.student, pixel_values, self.masking.cell)
            if not all(p.requires_grad for p in self.student.parameters()):
                pixel_values = pixel_values.detach().requires_grad_()
        with recording:
            if self.distill_on == "clean":
                logits, student_features = logits_and_features(self.student, pixel_values)
            else:
                logits = classifier_logits(self.student, pixel_values)
        ce = F.cross_entropy(logits, labels)
        inputs = distill = masked_fraction = None
        if self.distill_on == "clean":
            inputs = pixel_values
        elif masked:
            if isinstance(recording, CamRecording):
                cell_mask = cell_masks(recording.cam(logits, labels), self.masking, self.generator)
            else:
                cell_mask = self._random_cells(pixel_values)
            inputs, _ = apply_masks(pixel_values.detach(), cell_mask, self.masking.refill, self.generator)
            student_features = logits_and_features(self.student, inputs)[1]
            masked_fraction = cell_mask.float().mean()
        if inputs is not None:
            with torch.no_grad():
                teacher_features = logits_and_features(self.teacher, inputs)[1]
            distill = F.mse_loss(student_features, teacher_features)
        return MaskedFineTuningOutput(
            loss=ce if distill is None else ce + self.distill_weight * distill,
            logits=logits,
            ce_loss=ce,
            distill_loss=distill,
            masked_fraction=masked_fraction,
        )


__all__ = ["MaskedCounterfactualFineTuner", "MaskedFineTuningOutput", "logits_and_features"]
