"""Explainers: FIDO counterfactual saliency (arXiv 1807.08024), its infillers, and baselines."""

from .baselines import GradCamExplainer, OcclusionExplainer
from .fido import FidoConfig, FidoExplainer, FidoResult, concrete_keep_mask, log_odds
from .infillers import INFILLERS, BlurInfiller, LocalInfiller, MeanInfiller, NoiseInfiller, get_infiller

__all__ = [
    "GradCamExplainer",
    "OcclusionExplainer",
    "INFILLERS",
    "BlurInfiller",
    "FidoConfig",
    "FidoExplainer",
    "FidoResult",
    "LocalInfiller",
    "MeanInfiller",
    "NoiseInfiller",
    "concrete_keep_mask",
    "get_infiller",
    "log_odds",
]
