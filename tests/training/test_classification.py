"""Single-label classifiers on the shared loop: build, train, accuracy, saved image processor."""

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hf_counterfactual.data import LocalisationSceneConfig, build_localisation_scenes, load_digits_dataset
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.classification import build_image_classifier, train_image_classifier
from hf_counterfactual.training.pat_config import TINY_RESNET


def test_build_needs_a_model_type():
    with pytest.raises(ValueError, match="model_type"):
        build_image_classifier({"hidden_sizes": [8]}, ["a", "b"])
    model = build_image_classifier(TINY_RESNET, ["a", "b", "c"])
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_training_saves_model_and_processor_that_reproduce_it(tmp_path):
    scenes = LocalisationSceneConfig(canvas_size=32, num_train=128, num_validation=32, num_test=32)
    data = build_localisation_scenes(scenes, load_digits_dataset())
    cfg = TrainingConfig(output_dir=str(tmp_path), num_epochs=3, batch_size=32, learning_rate=3e-3,
                         disable_progress_bar=True)  # fmt: skip
    model, metrics = train_image_classifier(cfg, data, TINY_RESNET, 32)
    assert set(metrics) == {"train_seconds", "validation_accuracy", "test_accuracy"}
    card = ModelCard.load(tmp_path / "README.md")  # the model card, with the measured accuracies
    values = {(r.metric_name, r.metric_value) for r in card.data.eval_results}
    assert ("accuracy (test)", metrics["test_accuracy"]) in values
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    image = data["test"][0]["image"]
    x = processor(image, return_tensors="pt")["pixel_values"]
    assert x.min() >= 0 and x.max() <= 1  # the collator's [0, 1] range, which the infillers assume
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=x).logits, model.eval()(pixel_values=x).logits)
