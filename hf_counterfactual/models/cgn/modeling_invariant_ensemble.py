"""The invariant ensemble classifier of CGN: one backbone, a head per mechanism (shape, texture, background).

Trained on counterfactuals (and optionally real images), each head learns the class of its own
mechanism, so the shape head cannot lean on texture or background: they are independent of the shape
in counterfactual data. `logits` are the shape head's, so the model drops into any single-label code
(accuracy, FIDO, ...); the other heads are in the output for shape-bias studies.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_invariant_ensemble import InvariantEnsembleConfig

HEADS = ("shape", "texture", "background")


def pooled_size(backbone_config) -> int:
    """Feature size of the backbone's `pooler_output` (last of `hidden_sizes` for CNNs, else `hidden_size`).

    Same rule as models/pat: each model folder is pushed alone as `trust_remote_code` code, so it is not shared.
    """
    sizes = getattr(backbone_config, "hidden_sizes", None)
    size = sizes[-1] if sizes else getattr(backbone_config, "hidden_size", None)
    if size is None:
        raise ValueError(
            f"cannot tell the pooled feature size of a {type(backbone_config).__name__}; use a vision "
            "backbone config with `hidden_sizes` or `hidden_size` (ResNetConfig, ViTConfig, ...)."
        )
    return size


@dataclass
class InvariantEnsembleOutput(ModelOutput):
    """`logits` are the shape head's; `loss` sums the heads' cross-entropies weighted by `head_weights`."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    texture_logits: torch.FloatTensor | None = None
    background_logits: torch.FloatTensor | None = None


class InvariantEnsemblePreTrainedModel(PreTrainedModel):
    config_class = InvariantEnsembleConfig
    base_model_prefix = "invariant_ensemble"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class InvariantEnsembleForImageClassification(InvariantEnsemblePreTrainedModel):
    """Backbone + shape / texture / background heads; a label of -100 (or any negative) is ignored."""

    def __init__(self, config: InvariantEnsembleConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        hidden = pooled_size(config.backbone_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, config.num_labels) for name in HEADS})
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        texture_labels: torch.Tensor | None = None,
        background_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> InvariantEnsembleOutput:
        pooled = getattr(self.backbone(pixel_values=pixel_values), "pooler_output", None)
        if pooled is None:
            raise ValueError(f"backbone {type(self.backbone).__name__} returns no pooler_output.")
        features = self.dropout(pooled.flatten(1))
        logits = {name: head(features) for name, head in self.heads.items()}
        loss = None
        targets = (labels, texture_labels, background_labels)
        if any(t is not None for t in targets):
            loss = logits["shape"].new_zeros(())
            for name, target, weight in zip(HEADS, targets, self.config.head_weights, strict=True):
                if target is not None and weight > 0 and (target >= 0).any():
                    target = target.masked_fill(target < 0, -100)
                    loss = loss + weight * F.cross_entropy(logits[name], target, ignore_index=-100)
        return InvariantEnsembleOutput(
            loss=loss,
            logits=logits["shape"],
            texture_logits=logits["texture"],
            background_logits=logits["background"],
        )


__all__ = [
    "InvariantEnsembleForImageClassification",
    "InvariantEnsembleOutput",
    "InvariantEnsemblePreTrainedModel",
    "pooled_size",
]
