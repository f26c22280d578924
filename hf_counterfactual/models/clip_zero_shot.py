"""CLIP as an image classifier: zero-shot logits from class-name prompts (Radford et al., arXiv 2103.00020).

Each class's text embedding is the normalised mean of its prompts' normalised embeddings (the paper's
prompt ensembling); logits are CLIP's `logit_scale.exp()` times the cosine similarity of the image
embedding with each class. The module takes `pixel_values` and returns `.logits`, so FIDO, the
baselines, PAT-I and the metrics use it like any `AutoModelForImageClassification`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, CLIPModel
from transformers.modeling_outputs import ImageClassifierOutput

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipZeroShotClassifier(nn.Module):
    """Zero-shot classifier over `class_names` from a `CLIPModel` and its tokenizer.

    ```python
    classifier = ClipZeroShotClassifier.from_pretrained("openai/clip-vit-base-patch32", ["cat", "dog"])
    classifier(pixel_values=x).logits  # (B, 2)
    ```
    """

    def __init__(self, clip: CLIPModel, class_embeddings: torch.Tensor, class_names: list[str]):
        super().__init__()
        if class_embeddings.shape[0] != len(class_names):
            raise ValueError(
                f"{class_embeddings.shape[0]} class embeddings for {len(class_names)} class names."
            )
        self.clip = clip
        self.class_names = list(class_names)
        self.register_buffer("class_embeddings", F.normalize(class_embeddings, dim=-1))

    @classmethod
    @torch.no_grad()
    def from_clip(
        cls,
        clip: CLIPModel,
        tokenizer,
        class_names: list[str],
        templates: tuple[str, ...] = DEFAULT_TEMPLATES,
        prompt_batch_size: int = 1024,
    ) -> "ClipZeroShotClassifier":
        """Embed every (template, class) prompt with `clip`'s text tower, `prompt_batch_size` prompts at a time
        (ImageNet's 1000 classes x 80 templates), and average per class."""
        if not class_names:
            raise ValueError("class_names is empty.")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f'every template needs a "{{}}" for the class name, got {templates}.')
        prompts = [t.format(name) for name in class_names for t in templates]
        text = []
        for start in range(0, len(prompts), prompt_batch_size):
            chunk = prompts[start : start + prompt_batch_size]
            tokens = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(clip.device)
            text.append(F.normalize(_features(clip.get_text_features(**tokens)), dim=-1))
        text = torch.cat(text)
        per_class = text.view(len(class_names), len(templates), -1).mean(1)
        return cls(clip, per_class, class_names)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        class_names: list[str],
        templates: tuple[str, ...] = DEFAULT_TEMPLATES,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> "ClipZeroShotClassifier":
        """Load a CLIP checkpoint (Hub id or folder) and its tokenizer, on `device` (where the prompts are
        embedded); kwargs go to `CLIPModel.from_pretrained`."""
        clip = CLIPModel.from_pretrained(model_id, **kwargs).to(device or "cpu").eval()
        return cls.from_clip(clip, AutoTokenizer.from_pretrained(model_id), class_names, templates)

    def forward(self, pixel_values: torch.Tensor) -> ImageClassifierOutput:
        image = F.normalize(_features(self.clip.get_image_features(pixel_values=pixel_values)), dim=-1)
        logits = self.clip.logit_scale.exp() * image @ self.class_embeddings.T
        return ImageClassifierOutput(logits=logits)
