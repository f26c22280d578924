"""Invariant classifiers trained on real CGN-variant images, counterfactuals, or both; the 3-head ensemble."""

import numpy as np
import PIL.Image
import pytest
import torch

from hf_counterfactual.data.cgn_variants import CgnVariantConfig, build_cgn_variant
from hf_counterfactual.data.sources import load_item_source
from hf_counterfactual.models.cgn import (
    CGNConfig,
    CounterfactualGenerativeNetwork,
    InvariantEnsembleForImageClassification,
    generate_counterfactual_dataset,
)
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.invariant_classifier import (
    MechanismLabelsCollator,
    invariant_training_set,
    train_invariant_classifier,
)

BACKBONE = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}


@pytest.fixture(scope="module")
def real():
    config = CgnVariantConfig(variant="colored", image_size=16, num_train=24, num_validation=0, num_test=12)
    return build_cgn_variant(config, load_item_source("digits"))


@pytest.fixture(scope="module")
def counterfactuals(real):
    torch.manual_seed(0)
    generator = CounterfactualGenerativeNetwork(CGNConfig(num_classes=10, image_size=16, ngf=4, latent_dim=8))
    return generate_counterfactual_dataset(generator, real["train"]["label"], per_image=2, seed=0)


def test_training_sets_share_one_schema(real, counterfactuals):
    n = len(real["train"])
    assert len(invariant_training_set(real["train"], None, "original")) == n
    assert len(invariant_training_set(real["train"], counterfactuals, "counterfactual")) == 2 * n
    both = invariant_training_set(real["train"], counterfactuals, "both", mechanism_columns=True)
    assert len(both) == 3 * n and both.column_names == ["image", "label", "texture", "background"]
    # real colored rows: texture = the class-tied foreground, no background class (-1)
    assert both["texture"][:n] == real["train"]["foreground"]
    assert set(both["background"][:n]) == {-1}
    assert both["texture"][n:] == counterfactuals["texture"]
    assert both["label"][n:] == counterfactuals["shape"]


def test_training_set_errors(real):
    with pytest.raises(ValueError, match="training_data must be one of"):
        invariant_training_set(real["train"], None, "fake")
    with pytest.raises(ValueError, match="needs a counterfactual dataset"):
        invariant_training_set(real["train"], None, "both")


def test_mechanism_collator_ignores_missing_background_and_skips_bad_rows():
    image = PIL.Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8))
    rows = [
        {"image": image, "label": 1, "texture": 2, "background": -1},
        {"image": {"bytes": b"not an image", "path": None}, "label": 0, "texture": 0, "background": 0},
        {"image": image, "label": 3, "foreground": 4, "background": 5},
    ]
    batch = MechanismLabelsCollator(num_labels=10, image_size=16)(rows)
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    assert batch["labels"].tolist() == [1, 3]
    assert batch["texture_labels"].tolist() == [2, 4]
    assert batch["background_labels"].tolist() == [-100, 5]


@pytest.mark.parametrize("ensemble", [False, True])
def test_train_invariant_classifier_end_to_end(tmp_path, real, counterfactuals, ensemble):
    data = invariant_training_set(real["train"], counterfactuals, "both", mechanism_columns=ensemble)
    cfg = TrainingConfig(output_dir=str(tmp_path), max_steps=3, batch_size=8, disable_progress_bar=True)
    model, metrics = train_invariant_classifier(
        cfg, data, {"train": real["train"], "test": real["test"]}, BACKBONE, 16, ensemble=ensemble
    )
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["train_accuracy"] <= 1.0
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "preprocessor_config.json").is_file()
    assert isinstance(model, InvariantEnsembleForImageClassification) == ensemble
