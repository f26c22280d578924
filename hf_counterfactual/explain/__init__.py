"""Explainers: FIDO counterfactual saliency (arXiv 1807.08024), its infillers, baselines and figures."""

from .baselines import BbmpConfig, BbmpExplainer, GradCamExplainer, OcclusionExplainer, deepest_conv_layer
from .fido import FidoConfig, FidoExplainer, FidoResult, concrete_keep_mask, log_odds
from .figures import save_overlay, save_saliency_grid
from .generative import DiffusersInpaintInfiller, GenerativeInfiller
from .infillers import (
    INFILLERS,
    BlurInfiller,
    LocalInfiller,
    MeanInfiller,
    NoiseInfiller,
    get_infiller,
    infiller_for_image_size,
)

__all__ = [
    "BbmpConfig",
    "BbmpExplainer",
    "GradCamExplainer",
    "OcclusionExplainer",
    "deepest_conv_layer",
    "INFILLERS",
    "BlurInfiller",
    "DiffusersInpaintInfiller",
    "FidoConfig",
    "FidoExplainer",
    "FidoResult",
    "GenerativeInfiller",
    "LocalInfiller",
    "MeanInfiller",
    "NoiseInfiller",
    "concrete_keep_mask",
    "get_infiller",
    "infiller_for_image_size",
    "log_odds",
    "save_overlay",
    "save_saliency_grid",
]
