from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_pat import PatConfig
from .modeling_pat import (
    PatForMultiLabelClassification,
    PatOutput,
    asymmetric_loss,
    multilabel_loss,
    soft_pivot_logits,
    split_into_patches,
)
from .patching_inference import PatchingInference

AutoConfig.register("pat", PatConfig)
AutoModel.register(PatConfig, PatForMultiLabelClassification)
AutoModelForImageClassification.register(PatConfig, PatForMultiLabelClassification)

__all__ = [
    "PatConfig",
    "PatForMultiLabelClassification",
    "PatOutput",
    "PatchingInference",
    "asymmetric_loss",
    "multilabel_loss",
    "soft_pivot_logits",
    "split_into_patches",
]
