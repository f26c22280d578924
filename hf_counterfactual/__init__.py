"""hf-counterfactual: counterfactual robustness and explanations for Hugging Face vision models."""

from .explain import FidoConfig, FidoExplainer
from .models.cgn import CGNConfig, CounterfactualGenerativeNetwork
from .models.pat import PatchingInference, PatConfig, PatForMultiLabelClassification
from .training import TrainingConfig, train

__version__ = "0.1.0"

__all__ = [
    "CGNConfig",
    "CounterfactualGenerativeNetwork",
    "FidoConfig",
    "FidoExplainer",
    "PatConfig",
    "PatForMultiLabelClassification",
    "PatchingInference",
    "TrainingConfig",
    "train",
]
