"""The CGN invariant ensemble: one backbone, shape / texture / background heads, summed cross-entropies."""

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoModelForImageClassification

from hf_counterfactual.models.cgn import InvariantEnsembleConfig, InvariantEnsembleForImageClassification

BACKBONE = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}


def _model(**kwargs) -> InvariantEnsembleForImageClassification:
    torch.manual_seed(0)
    return InvariantEnsembleForImageClassification(
        InvariantEnsembleConfig(backbone_config=BACKBONE, num_labels=4, **kwargs)
    ).eval()


def test_loss_is_weighted_sum_of_head_cross_entropies_and_ignores_negative_ids():
    model = _model(head_weights=[1.0, 0.5, 2.0])
    x = torch.rand(3, 3, 16, 16)
    y, t, b = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 0]), torch.tensor([1, -1, -100])
    out = model(x, labels=y, texture_labels=t, background_labels=b)
    expected = (
        F.cross_entropy(out.logits, y)
        + 0.5 * F.cross_entropy(out.texture_logits, t)
        + 2.0 * F.cross_entropy(out.background_logits[:1], b[:1])
    )
    torch.testing.assert_close(out.loss, expected)
    assert out.logits.shape == out.texture_logits.shape == out.background_logits.shape == (3, 4)


def test_shape_head_alone_and_no_labels():
    model = _model()
    x = torch.rand(2, 3, 16, 16)
    out = model(x, labels=torch.tensor([1, 2]))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([1, 2])))
    assert model(x).loss is None
    # all-ignored background ids add nothing
    out_ignored = model(x, labels=torch.tensor([1, 2]), background_labels=torch.tensor([-1, -1]))
    torch.testing.assert_close(out_ignored.loss, out.loss)


def test_save_and_load_through_auto_class(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, InvariantEnsembleForImageClassification)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_bad_head_weights():
    with pytest.raises(StrictDataclassClassValidationError, match="head_weights must be 3"):
        InvariantEnsembleConfig(head_weights=[1.0, 1.0])
    with pytest.raises(StrictDataclassClassValidationError, match="head_weights must be 3"):
        InvariantEnsembleConfig(head_weights=[1.0, -1.0, 1.0])
