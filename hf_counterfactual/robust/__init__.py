"""Robust fine-tuning with masked images as counterfactual samples (arXiv 2303.03052)."""

from .masking import (
    PAPER_THRESHOLDS,
    MaskingConfig,
    apply_masks,
    cell_masks,
    paper_threshold,
    token_attention_mask,
)

__all__ = [
    "PAPER_THRESHOLDS",
    "MaskingConfig",
    "apply_masks",
    "cell_masks",
    "paper_threshold",
    "token_attention_mask",
]
