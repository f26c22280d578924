"""CLIP's vision tower with a trainable zero-shot head: the zero-shot logits at initialisation, HF save / load."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

from hf_counterfactual.explain.cams import cam_for
from hf_counterfactual.robust import ClipImageClassifier, logits_and_features

pytestmark = pytest.mark.usefixtures("one_thread")


def test_initial_logits_are_the_zero_shot_logits(clip_pair):
    zero_shot, model = clip_pair
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=x).logits, zero_shot(pixel_values=x).logits)
        # the embedding is CLIP's unnormalised image feature (final layer norm, then projection)
        expected = zero_shot.clip.get_image_features(pixel_values=x).pooler_output
        torch.testing.assert_close(model.get_image_features(x), expected)
        torch.testing.assert_close(logits_and_features(model, x)[1], expected)
    assert not any(name.startswith("text_model") for name in model.state_dict())
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "bird"}


def test_the_head_trains_and_the_model_saves_and_loads(clip_pair, tmp_path):
    _, model = clip_pair
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 2])
    model(pixel_values=x, labels=y).loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path, attn_implementation="eager")
    assert isinstance(loaded, ClipImageClassifier)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, model(pixel_values=x).logits)
    assert cam_for(loaded, x, y).shape == (2, 4, 4)  # eager attention: CAMs work on the loaded model


def test_the_head_is_a_linear_layer_on_normalised_embeddings(clip_pair):
    _, model = clip_pair
    features = torch.randn(4, 8)
    expected = F.normalize(features, dim=-1) @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(model.classifier(features), expected)
