"""Configuration of the CGN invariant ensemble classifier (arXiv 2101.06046, sec. 3.3)."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


@strict
class InvariantEnsembleConfig(PreTrainedConfig):
    r"""
    Configuration of [`InvariantEnsembleForImageClassification`]: one vision backbone with three linear
    heads, each predicting the class of one CGN mechanism (shape, texture, background).

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any transformers vision model whose `AutoModel` output has a `pooler_output`
            (ResNet, ConvNeXt, ViT, ...). Defaults to a ResNet-50 config.
        head_weights (`list[float]`, *optional*, defaults to `[1.0, 1.0, 1.0]`):
            Loss weights of the shape, texture and background heads.
        classifier_dropout (`float`, *optional*, defaults to 0.0): dropout before the heads.
    """

    model_type = "cgn_invariant_ensemble"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet")}

    backbone_config: dict | PreTrainedConfig | None = None
    head_weights: list[float | int] | None = None
    classifier_dropout: float = 0.0

    def __post_init__(self, **kwargs):
        if self.head_weights is None:
            self.head_weights = [1.0, 1.0, 1.0]
        super().__post_init__(**kwargs)

    def validate_heads(self):
        """Short errors for settings the model cannot run with."""
        if len(self.head_weights) != 3 or min(self.head_weights) < 0:
            raise ValueError(
                f"head_weights must be 3 non-negative weights (shape, texture, background), got {self.head_weights}."
            )


__all__ = ["InvariantEnsembleConfig"]
