"""Robust fine-tuning with masked images as counterfactual samples (arXiv 2303.03052)."""

from transformers import AutoConfig, AutoModelForImageClassification

from .clip_classifier import ClipImageClassifier, ClipImageClassifierConfig, CosineClassifier
from .distillation import MaskedCounterfactualFineTuner, MaskedFineTuningOutput, logits_and_features
from .masking import (
    PAPER_THRESHOLDS,
    MaskingConfig,
    apply_masks,
    cell_masks,
    paper_threshold,
    token_attention_mask,
)
from .wise_ft import freeze_all_but_head, wise_ft

AutoConfig.register("clip_image_classifier", ClipImageClassifierConfig)
AutoModelForImageClassification.register(ClipImageClassifierConfig, ClipImageClassifier)

__all__ = [
    "PAPER_THRESHOLDS",
    "ClipImageClassifier",
    "ClipImageClassifierConfig",
    "CosineClassifier",
    "MaskedCounterfactualFineTuner",
    "MaskedFineTuningOutput",
    "MaskingConfig",
    "apply_masks",
    "cell_masks",
    "freeze_all_but_head",
    "logits_and_features",
    "paper_threshold",
    "token_attention_mask",
    "wise_ft",
]
