"""Configuration of PAT (patching-based training / inference, arXiv 2404.06287)."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


@strict
class PatConfig(PreTrainedConfig):
    r"""
    Configuration of [`PatForMultiLabelClassification`]: a shared vision backbone and three linear heads
    (whole image, patch attention, patch class) whose combined logits estimate the total direct effect
    of each object (PAT-T).

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any transformers vision model whose `AutoModel` output has a `pooler_output`
            (ResNet, ConvNeXt, ViT, CLIP vision, ...). Defaults to a ResNet-50 config.
        backbone (`str`, *optional*):
            Hub id or local path the backbone weights came from (recorded for the model card; set by
            [`PatForMultiLabelClassification.from_backbone`]).
        grid_size (`int`, *optional*, defaults to 2):
            The image is cut into `grid_size x grid_size` non-overlapping patches (g in the paper).
        patch_size (`int`, *optional*):
            Side each patch is resized to. `None` resizes patches to the input size, as the paper does, so
            whole image and patches go through the backbone in one batched call.
        patch_interpolation (`str`, *optional*, defaults to `"bilinear"`):
            `torch.nn.functional.interpolate` mode used to resize patches.
        pooling (`str`, *optional*, defaults to `"pooler"`):
            `"pooler"` uses the backbone's `pooler_output`; `"mean"` averages `last_hidden_state` over
            its spatial / token positions, for backbones without a pooler.
        loss (`str`, *optional*, defaults to `"asl"`):
            `"asl"` (asymmetric loss, Ridnik et al.) or `"bce"`.
        asl_gamma_neg (`float`, *optional*, defaults to 4.0): ASL focusing exponent for negatives.
        asl_gamma_pos (`float`, *optional*, defaults to 0.0): ASL focusing exponent for positives.
        asl_clip (`float`, *optional*, defaults to 0.05): ASL probability margin for negatives.
        classifier_dropout (`float`, *optional*, defaults to 0.0): dropout before the heads.
    """

    model_type = "pat"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet")}

    backbone_config: dict | PreTrainedConfig | None = None
    backbone: str | None = None
    grid_size: int = 2
    patch_size: int | None = None
    patch_interpolation: str = "bilinear"
    pooling: str = "pooler"
    loss: str = "asl"
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 0.0
    asl_clip: float = 0.05
    classifier_dropout: float = 0.0

    def validate_pat(self):
        """Short errors for settings the model cannot run with."""
        if self.grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {self.grid_size}.")
        if self.pooling not in ("pooler", "mean"):
            raise ValueError(f"pooling must be 'pooler' or 'mean', got {self.pooling!r}.")
        if self.loss not in ("asl", "bce"):
            raise ValueError(f"loss must be 'asl' or 'bce', got {self.loss!r}.")
        if not 0.0 <= self.asl_clip < 1.0:
            raise ValueError(f"asl_clip must be in [0, 1), got {self.asl_clip}.")


__all__ = ["PatConfig"]
