"""The robust fine-tuning objective (arXiv 2303.03052, sec. 3.3): CE on clean images + w * MSE between student
and frozen-teacher embeddings of masked counterfactuals; the teacher never moves and is never saved."""

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import default_collate
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

from hf_counterfactual.explain.cams import cam_for
from hf_counterfactual.robust import (
    ClipImageClassifier,
    MaskedCounterfactualFineTuner,
    MaskingConfig,
    apply_masks,
    cell_masks,
    logits_and_features,
)
from hf_counterfactual.training import TrainingConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(b=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 16, 16, generator=g), torch.arange(b) % 3


def _tuner(student, distill_on="masked", seed=3, **kwargs):
    """The fine-tuner around `student` with a copy as teacher; masking defaults to the paper's headline."""
    teacher = copy.deepcopy(student) if distill_on else None
    kwargs.setdefault("masking", MaskingConfig() if distill_on == "masked" else None)
    return MaskedCounterfactualFineTuner(student, teacher, distill_on=distill_on, seed=seed, **kwargs)


def test_masked_loss_is_ce_plus_weighted_mse_of_masked_embeddings(clip_pair):
    """Eq. of sec. 3.3: CE(f(x), y) + 30 * MSE(f_s(x_m), f_t(x_m)), x_m from the student's CAM for y."""
    _, student = clip_pair
    tuner = _tuner(student.train())
    x, y = _batch()
    with torch.no_grad():  # move the student away from the teacher, so the MSE is not zero
        student.visual_projection.weight.mul_(1.5)
    out = tuner(pixel_values=x, labels=y)

    g = torch.Generator().manual_seed(3)
    cells = cell_masks(cam_for(student, x, y), MaskingConfig(), g)
    masked, _ = apply_masks(x, cells, "single", g)
    ce = F.cross_entropy(student(pixel_values=x).logits, y)
    mse = F.mse_loss(student.get_image_features(masked), tuner.teacher.get_image_features(masked))
    assert 0 < out.masked_fraction < 1 and mse > 0
    torch.testing.assert_close(out.ce_loss, ce)
    torch.testing.assert_close(out.distill_loss, mse)
    torch.testing.assert_close(out.loss, ce + 30.0 * mse)


def test_vanilla_is_plain_ce_and_clean_distillation_uses_clean_embeddings(clip_pair):
    _, student = clip_pair
    x, y = _batch()
    vanilla = _tuner(student, distill_on=None)(pixel_values=x, labels=y)
    ce = F.cross_entropy(student(pixel_values=x).logits, y)
    assert vanilla.distill_loss is None
    torch.testing.assert_close(vanilla.loss, ce)

    tuner = _tuner(student, distill_on="clean", distill_weight=2.0)
    assert tuner(pixel_values=x, labels=y).distill_loss == 0  # student = teacher at the start
    with torch.no_grad():
        student.visual_projection.weight.mul_(1.5)
    out = tuner(pixel_values=x, labels=y)
    mse = F.mse_loss(student.get_image_features(x), tuner.teacher.get_image_features(x))
    torch.testing.assert_close(out.loss, F.cross_entropy(student(pixel_values=x).logits, y) + 2.0 * mse)


@pytest.mark.parametrize(
    "strategy,refill", [("object", "none"), ("context", "multi"), ("random", "single"), ("random", "none")]
)
def test_every_strategy_and_refill_trains_the_student_only(clip_pair, strategy, refill):
    _, student = clip_pair
    tuner = _tuner(student, masking=MaskingConfig(strategy, refill))
    x, y = _batch()
    out = tuner(pixel_values=x, labels=y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.distill_loss is not None
    assert student.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in tuner.teacher.parameters())


def test_teacher_is_frozen_outside_the_optimizer_and_the_checkpoint(clip_pair, tmp_path):
    """Three loop steps with weight decay: the student moves, the teacher does not; only the student is saved."""
    _, student = clip_pair
    tuner = _tuner(student)
    before = copy.deepcopy(tuner.teacher.state_dict())
    start = copy.deepcopy(student.state_dict())
    x, y = _batch(8)
    data = [{"pixel_values": x[i], "labels": y[i]} for i in range(8)]
    config = TrainingConfig(output_dir=str(tmp_path), batch_size=4, max_steps=3, learning_rate=1e-2,
                            weight_decay=0.1, max_grad_norm=1.0, checkpointing_steps=3,
                            disable_progress_bar=True)  # fmt: skip
    trained = train(config, tuner, data, default_collate)

    assert {id(p) for p in trained.parameters()} == {id(p) for p in student.parameters()}
    assert not trained.teacher.training and all(p.grad is None for p in trained.teacher.parameters())
    for name, value in trained.teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not torch.equal(student.classifier.weight, start["classifier.weight"])  # the student trained
    # the Accelerate checkpoint holds the student and the mask generator; the saved model is the student
    keys = load_file(tmp_path / "checkpoints" / "checkpoint_0" / "model.safetensors").keys()
    assert {k.split(".")[0] for k in keys} == {"student", "_extra_state"}
    loaded = ClipImageClassifier.from_pretrained(tmp_path)
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, student.state_dict()[name], msg=name)


def test_generator_state_is_checkpointed_and_to_moves_the_teacher(clip_pair):
    _, student = clip_pair
    tuner = _tuner(student, masking=MaskingConfig("random", "multi"))
    state = copy.deepcopy(tuner.state_dict())
    x, y = _batch()
    first = tuner(pixel_values=x, labels=y).loss
    tuner.load_state_dict(state)
    torch.testing.assert_close(tuner(pixel_values=x, labels=y).loss, first)  # the same random masks again
    tuner.to(torch.float64)
    assert tuner.teacher.classifier.weight.dtype == torch.float64


def test_a_batch_of_one_skips_the_refilled_distillation_and_counts_it(clip_pair):
    _, student = clip_pair
    x, y = _batch(1)
    tuner = _tuner(student)
    out = tuner(pixel_values=x, labels=y)
    assert out.distill_loss is None and tuner.distill_skipped == 1
    torch.testing.assert_close(out.loss, F.cross_entropy(student(pixel_values=x).logits, y))
    no_refill = _tuner(student, masking=MaskingConfig("object", "none"))
    assert no_refill(pixel_values=x, labels=y).distill_loss is not None and no_refill.distill_skipped == 0


def test_transformers_classifiers_distill_their_pooled_features():
    """A ViT (attention CAM, CLS after the final layer norm) and a ResNet (Grad-CAM on cells, pooled map)."""
    torch.manual_seed(0)
    vit = ViTForImageClassification(
        ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=16,
            patch_size=4,
            num_labels=3,
            attn_implementation="eager",
        )  # fmt: skip
    )
    x, y = _batch()
    torch.testing.assert_close(logits_and_features(vit, x)[1], vit.vit(x).last_hidden_state[:, 0])
    resnet = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    )
    assert logits_and_features(resnet, x)[1].shape == (4, 16)
    for model, cell in ((vit, None), (resnet, 4)):
        out = _tuner(model, masking=MaskingConfig(cell=cell))(pixel_values=x, labels=y)
        assert torch.isfinite(out.loss) and out.distill_loss is not None


def test_settings_errors(clip_pair):
    zero_shot, student = clip_pair
    with pytest.raises(ValueError, match="masking is needed"):
        _tuner(student, masking=None)
    with pytest.raises(ValueError, match="used by nothing else"):
        _tuner(student, distill_on="clean", masking=MaskingConfig())
    with pytest.raises(ValueError, match="a teacher is needed"):
        MaskedCounterfactualFineTuner(student, None, MaskingConfig())
    with pytest.raises(ValueError, match="shares parameters"):
        MaskedCounterfactualFineTuner(student, student, MaskingConfig())
    with pytest.raises(ValueError, match="distill_on must be"):
        _tuner(student, distill_on="both")
    with pytest.raises(ValueError, match="no `classifier` head"):
        _tuner(zero_shot, distill_on="clean")(*_batch())


def test_the_cam_comes_from_the_ce_pass_so_the_student_runs_twice(clip_pair):
    """A masked step runs the student once on the clean images (CE and CAM) and once on the masked ones."""
    _, student = clip_pair
    tuner, calls = _tuner(student.train()), []
    student.vision_model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    tuner(*_batch()).loss.backward()
    assert len(calls) == 2


def test_a_partly_frozen_student_still_gets_its_cam(clip_pair):
    """Frozen lower layers: the CAM's gradient reaches their attentions through an input that requires grad."""
    _, student = clip_pair
    student.vision_model.embeddings.requires_grad_(False)
    student.vision_model.encoder.layers[0].requires_grad_(False)
    x, y = _batch()
    out = _tuner(student)(pixel_values=x, labels=y)
    torch.testing.assert_close(out.masked_fraction, (cam_for(student, x, y) > 0.3).float().mean())
    out.loss.backward()
    assert student.vision_model.embeddings.patch_embedding.weight.grad is None
    assert student.visual_projection.weight.grad.abs().sum() > 0
