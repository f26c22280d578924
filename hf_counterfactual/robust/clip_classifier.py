"""CLIP's vision tower with a trainable zero-shot head: the model robust fine-tuning trains (arXiv 2303.03052).

The head is a linear layer on the L2-normalised image embedding, initialised from the zero-shot classifier:
row c = `logit_scale.exp()` times the normalised mean of class c's normalised prompt embeddings, bias 0
(`ClipZeroShotClassifier` computes those). At initialisation the logits equal the zero-shot ones; fine-tuning
then trains the head with the tower. The text tower is dropped: it is not used once the head exists, so the
student, its teacher and checkpoints carry only the vision side, and DDP sees no unused parameters.

The model is a transformers `PreTrainedModel` that `hf_counterfactual.robust` registers with the Auto classes
(model_type "clip_image_classifier"), so `save_pretrained` / `AutoModelForImageClassification.from_pretrained`
work and FIDO, CAMs and the metrics use it like any image classifier. Its `classifier` input is the
unnormalised image embedding (`get_image_features`), the feature `MaskedCounterfactualFineTuner` distils. The
module imports nothing of the package, so it can ship as remote code.
"""

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import CLIPVisionConfig
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPVisionModel


@strict
class ClipImageClassifierConfig(CLIPVisionConfig):
    r"""`CLIPVisionConfig` plus the labels (`id2label`) of the head; `projection_dim` is the embedding size."""

    model_type = "clip_image_classifier"


class CosineClassifier(nn.Linear):
    """A linear layer on L2-normalised inputs: CLIP's zero-shot head with the logit scale folded into the weights."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=-1), self.weight, self.bias)


class ClipImageClassifier(CLIPPreTrainedModel):
    """CLIP vision tower + projection + `CosineClassifier` head over `config.num_labels` classes.

    ```python
    zero_shot = ClipZeroShotClassifier.from_pretrained(clip_dir, names, attn_implementation="eager")
    model = ClipImageClassifier.from_zero_shot(zero_shot)  # same logits, trainable head
    ```
    """

    config_class = ClipImageClassifierConfig
    config: ClipImageClassifierConfig
    base_model_prefix = "clip_image_classifier"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: ClipImageClassifierConfig):
        super().__init__(config)
        self.vision_model = CLIPVisionModel._from_config(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.classifier = CosineClassifier(config.projection_dim, config.num_labels)
        self.post_init()

    @classmethod
    @torch.no_grad()
    def from_zero_shot(cls, zero_shot) -> "ClipImageClassifier":
        """The vision side of a `ClipZeroShotClassifier`'s CLIP (same attention implementation), its zero-shot head."""
        clip = zero_shot.clip
        vision = clip.config.vision_config.to_dict()
        vision.pop("model_type", None)
        names = zero_shot.class_names
        config = ClipImageClassifierConfig(
            **{
                **vision,
                "projection_dim": clip.config.projection_dim,
                "id2label": dict(enumerate(names)),
                "label2id": {name: i for i, name in enumerate(names)},
            }
        )
        config._attn_implementation = clip.vision_model.config._attn_implementation
        model = cls(config).to(device=clip.device, dtype=clip.dtype)
        model.vision_model.load_state_dict(clip.vision_model.state_dict())
        model.visual_projection.load_state_dict(clip.visual_projection.state_dict())
        model.classifier.weight.copy_(clip.logit_scale.exp() * zero_shot.class_embeddings)
        model.classifier.bias.zero_()
        return model.train(clip.training)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The unnormalised image embedding (final layer norm, then projection), as `CLIPModel`'s."""
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
    ) -> ImageClassifierOutput:
        logits = self.classifier(self.get_image_features(pixel_values))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


__all__ = ["ClipImageClassifier", "ClipImageClassifierConfig", "CosineClassifier"]
