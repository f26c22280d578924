"""CLIP zero-shot classifier: CLIP's own logits for one template, prompt ensembling by hand, FIDO on it."""

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from hf_counterfactual.explain import FidoConfig, FidoExplainer
from hf_counterfactual.models.clip_zero_shot import ClipZeroShotClassifier

NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def tiny_clip():
    torch.manual_seed(0)
    text = dict(vocab_size=57, hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    vision = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)  # fmt: skip
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).eval()


def test_one_template_gives_clips_own_logits(tiny_clip, tiny_clip_tokenizer):
    classifier = ClipZeroShotClassifier.from_clip(
        tiny_clip, tiny_clip_tokenizer, NAMES, ("a photo of a {}.",)
    )
    x = torch.rand(2, 3, 32, 32)
    prompts = tiny_clip_tokenizer([f"a photo of a {n}." for n in NAMES], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = tiny_clip(pixel_values=x, **prompts).logits_per_image
        got = classifier(pixel_values=x).logits
    torch.testing.assert_close(got, expected)


def test_prompt_ensembling_is_the_normalised_mean_of_normalised_embeddings(tiny_clip, tiny_clip_tokenizer):
    templates = ("a {}.", "a photo of the {}!")
    classifier = ClipZeroShotClassifier.from_clip(tiny_clip, tiny_clip_tokenizer, NAMES, templates)
    with torch.no_grad():
        for k, name in enumerate(NAMES):
            tokens = tiny_clip_tokenizer(
                [t.format(name) for t in templates], padding=True, return_tensors="pt"
            )
            text = F.normalize(tiny_clip.get_text_features(**tokens).pooler_output, dim=-1)
            torch.testing.assert_close(classifier.class_embeddings[k], F.normalize(text.mean(0), dim=-1))


def test_prompts_embedded_in_batches_give_the_same_head(tiny_clip, tiny_clip_tokenizer):
    """Prompts of different lengths, padded per batch (ImageNet's 80,000 prompts do not fit in one forward)."""
    templates = ("a {}.", "a blurry photo of the big {}!")
    whole = ClipZeroShotClassifier.from_clip(tiny_clip, tiny_clip_tokenizer, NAMES, templates)
    batched = ClipZeroShotClassifier.from_clip(
        tiny_clip, tiny_clip_tokenizer, NAMES, templates, prompt_batch_size=4
    )
    torch.testing.assert_close(batched.class_embeddings, whole.class_embeddings)


def test_fido_explains_a_clip_zero_shot_classifier(tiny_clip, tiny_clip_tokenizer):
    classifier = ClipZeroShotClassifier.from_clip(tiny_clip, tiny_clip_tokenizer, NAMES)
    cfg = FidoConfig(mask_size=8, steps=3, num_samples=2)
    result = FidoExplainer(classifier, cfg, infill="mean").explain(
        torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
    )
    assert result.saliency.shape == (2, 32, 32)
    assert not torch.equal(result.keep_prob, torch.full_like(result.keep_prob, 0.5))  # the mask moved
    assert all(p.grad is None for p in classifier.parameters())


def test_bad_templates_and_names(tiny_clip, tiny_clip_tokenizer):
    with pytest.raises(ValueError, match="needs a"):
        ClipZeroShotClassifier.from_clip(tiny_clip, tiny_clip_tokenizer, NAMES, ("no slot",))
    with pytest.raises(ValueError, match="class_names is empty"):
        ClipZeroShotClassifier.from_clip(tiny_clip, tiny_clip_tokenizer, [])
