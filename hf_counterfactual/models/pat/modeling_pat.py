"""PAT-T model: a shared backbone over the whole image and its patches, with three linear heads.

The whole-image logits z0 and the soft pivot-patch logits z_pat (per class, a softmax over patches of
the attention head weights the patch-class head) are averaged; sigmoid of that average is the
total-direct-effect score of arXiv 2404.06287.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_pat import PatConfig


def asymmetric_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021, eqs. 1-4), summed over classes and averaged over the batch.

    Negatives use the shifted probability p_m = max(p - clip, 0) and the weight p_m^gamma_neg; positives
    the weight (1 - p)^gamma_pos. (The reference code sums over the batch too; the mean keeps the loss
    scale independent of the batch size and of gradient accumulation.)
    """
    p = torch.sigmoid(logits)
    not_p = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p  # = 1 - p_m
    loss = labels * torch.log(p.clamp(min=eps)) + (1 - labels) * torch.log(not_p.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        p_true = p * labels + not_p * (1 - labels)
        loss = loss * torch.pow(1 - p_true, gamma_pos * labels + gamma_neg * (1 - labels))
    return -loss.sum() / logits.shape[0]


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor, config: PatConfig) -> torch.Tensor:
    """The loss named by `config.loss`, on the same (sum over classes, mean over batch) scale.

    `config` is anything with `loss` and `asl_*` fields: a `PatConfig`, or a `PatTrainConfig` for a
    plain model trained with the same loss.
    """
    labels = labels.to(logits.dtype)
    if config.loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / logits.shape[0]
    return asymmetric_loss(logits, labels, config.asl_gamma_neg, config.asl_gamma_pos, config.asl_clip)


def split_into_patches(
    pixel_values: torch.Tensor, grid_size: int, size: int | None = None, mode: str = "bilinear"
) -> torch.Tensor:
    """Cut (B, C, H, W) images into a grid x grid of non-overlapping patches, each resized to `size`.

    Returns (B, grid_size**2, C, size, size), patches in row-major order; `size=None` means H.
    """
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}."
        )
    b, c, h, w = pixel_values.shape
    g = grid_size
    if h % g or w % g:
        raise ValueError(f"image size {h}x{w} is not divisible by grid_size={g}; resize the images first.")
    patches = pixel_values.view(b, c, g, h // g, g, w // g).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(b * g * g, c, h // g, w // g)
    size = size or h
    if (h // g, w // g) != (size, size):
        align = False if mode in ("bilinear", "bicubic") else None
        patches = F.interpolate(patches, size=(size, size), mode=mode, align_corners=align)
    return patches.view(b, g * g, c, size, size)


def whole_and_patches(
    fn, pixel_values: torch.Tensor, grid_size: int, patch_size: int | None = None, mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fn` on the whole images (B, ...) and on their patches (B, g^2, ...).

    When the patches are resized to the input size (patch_size None), both go through `fn` in ONE
    batched call of (1 + g^2) B images, as the reference code does; otherwise in two calls.
    """
    b = pixel_values.shape[0]
    patches = split_into_patches(pixel_values, grid_size, patch_size, mode)
    k = patches.shape[1]
    patches = patches.flatten(0, 1)
    if patches.shape[-2:] == pixel_values.shape[-2:]:
        out = fn(torch.cat([pixel_values, patches]))
        whole, per_patch = out[:b], out[b:]
    else:
        whole, per_patch = fn(pixel_values), fn(patches)
    return whole, per_patch.view(b, k, *per_patch.shape[1:])


def soft_pivot_logits(attention_logits: torch.Tensor, patch_logits: torch.Tensor) -> torch.Tensor:
    """z_pat[c] = sum_k softmax_k(a_k[c]) * z_k[c] over the patch axis (dim 1) of (B, K, C) tensors."""
    return (attention_logits.softmax(dim=1) * patch_logits).sum(dim=1)


def _pooled_size(backbone_config) -> int:
    sizes = getattr(backbone_config, "hidden_sizes", None)
    if sizes:
        return sizes[-1]
    size = getattr(backbone_config, "hidden_size", None)
    if size is None:
        raise ValueError(
            f"cannot tell the pooled feature size of a {type(backbone_config).__name__}: it has neither "
            "`hidden_sizes` nor `hidden_size`. Use a vision backbone config such as ResNetConfig or ViTConfig."
        )
    return size


@dataclass
class PatOutput(ModelOutput):
    """Outputs of PAT. `logits` = (whole + pivot) / 2: sigmoid(logits) is the TDE score."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    whole_logits: torch.FloatTensor | None = None
    pivot_logits: torch.FloatTensor | None = None
    patch_logits: torch.FloatTensor | None = None
    attention_logits: torch.FloatTensor | None = None


class PatPreTrainedModel(PreTrainedModel):
    config_class = PatConfig
    base_model_prefix = "pat"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class PatForMultiLabelClassification(PatPreTrainedModel):
    """PAT-T: whole image and its g x g patches through one backbone call, three heads, two ASL terms."""

    def __init__(self, config: PatConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        hidden = _pooled_size(config.backbone_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(hidden, config.num_labels)  # fc1: whole image
        # fc2: which patch is the pivot; no bias, a per-class shift cancels in the softmax over patches
        self.patch_attention = nn.Linear(hidden, config.num_labels, bias=False)
        self.patch_classifier = nn.Linear(hidden, config.num_labels)  # fc3: class logits per patch
        self.post_init()

    @classmethod
    def from_backbone(cls, backbone: str, **config_kwargs) -> "PatForMultiLabelClassification":
        """New PAT model around pretrained backbone weights (Hub id or local folder); heads are fresh."""
        backbone_model = AutoModel.from_pretrained(backbone)
        config = PatConfig(backbone_config=backbone_model.config, backbone=backbone, **config_kwargs)
        model = cls(config)
        model.backbone.load_state_dict(backbone_model.state_dict())
        return model

    def pooled_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, hidden) backbone features."""
        out = self.backbone(pixel_values=pixel_values)
        if self.config.pooling == "mean":
            hidden = out.last_hidden_state
            return hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise ValueError(
                f"backbone {type(self.backbone).__name__} returns no pooler_output; "
                "set pooling='mean' in PatConfig or use a backbone with a pooling layer."
            )
        return pooled.flatten(1)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> PatOutput:
        cfg = self.config
        whole, per_patch = whole_and_patches(
            self.pooled_features, pixel_values, cfg.grid_size, cfg.patch_size, cfg.patch_interpolation
        )
        whole = self.dropout(whole)
        per_patch = self.dropout(per_patch)

        whole_logits = self.classifier(whole)
        attention_logits = self.patch_attention(per_patch)
        patch_logits = self.patch_classifier(per_patch)
        pivot_logits = soft_pivot_logits(attention_logits, patch_logits)
        logits = (whole_logits + pivot_logits) / 2

        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"labels must be multi-hot of shape {tuple(logits.shape)}, got {tuple(labels.shape)}."
                )
            loss = multilabel_loss(whole_logits, labels, cfg) + multilabel_loss(pivot_logits, labels, cfg)
        return PatOutput(
            loss=loss,
            logits=logits,
            whole_logits=whole_logits,
            pivot_logits=pivot_logits,
            patch_logits=patch_logits,
            attention_logits=attention_logits,
        )


__all__ = [
    "PatForMultiLabelClassification",
    "PatOutput",
    "PatPreTrainedModel",
    "asymmetric_loss",
    "multilabel_loss",
    "soft_pivot_logits",
    "split_into_patches",
    "whole_and_patches",
]
