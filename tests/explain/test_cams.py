"""CAMs for masked-image fine-tuning (arXiv 2303.03052): Chefer et al.'s rule (arXiv 2103.15679, eq. 5-6) on
ViT / CLIP, batched Grad-CAM (arXiv 1610.02391) on cells, and the dispatch between them."""

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    CLIPConfig,
    CLIPForImageClassification,
    CLIPModel,
    ViTConfig,
    ViTForImageClassification,
)

from hf_counterfactual.explain.baselines import GradCamExplainer
from hf_counterfactual.explain.cams import CamRecording, attention_gradient_cam, cam_for, grad_cam
from hf_counterfactual.models.clip_zero_shot import ClipZeroShotClassifier
from tests.explain.test_baselines import TinyCNN

CLIP_TEXT = dict(vocab_size=57, hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
CLIP_VISION = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                   patch_size=8)  # fmt: skip


def _tiny_vit(attn_implementation="eager"):
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=4, num_labels=3, attn_implementation=attn_implementation)  # fmt: skip
    return ViTForImageClassification(config)


def _images(b=2, size=16):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_attention_cam_is_chefer_rule_by_hand():
    """Eq. 5-6: R = I; R += mean_h(clamp(grad * attn, 0)) @ R per block; CAM = R[CLS, 1:] / max."""
    model = _tiny_vit().train()
    x, labels = _images(), torch.tensor([0, 2])
    cam = attention_gradient_cam(model, x, labels)
    assert model.training
    assert all(p.grad is None for p in model.parameters())

    model.eval()
    out = model(pixel_values=x, output_attentions=True)
    attentions = out.attentions
    grads = torch.autograd.grad(out.logits[torch.arange(2), labels].sum(), attentions)
    for i in range(2):
        relevance = torch.eye(17)
        for attn, grad in zip(attentions, grads, strict=True):
            a = (grad[i] * attn[i]).clamp(min=0).mean(0)
            relevance = relevance + a @ relevance
        expected = relevance[0, 1:].reshape(4, 4)
        torch.testing.assert_close(cam[i], expected / expected.max())
    assert (cam.amax(dim=(1, 2)) == 1).all()


def test_attention_cam_of_an_image_does_not_depend_on_its_batch():
    model = _tiny_vit()
    x, labels = _images(3), torch.tensor([0, 1, 2])
    cam = attention_gradient_cam(model, x, labels)
    single = attention_gradient_cam(model, x[1:2], labels[1:2])
    torch.testing.assert_close(cam[1:2], single)


def test_attention_cam_works_frozen_and_under_no_grad():
    model = _tiny_vit().requires_grad_(False)
    with torch.no_grad():
        cam = attention_gradient_cam(model, _images(), torch.tensor([1, 1]))
    assert cam.shape == (2, 4, 4) and (cam.amax(dim=(1, 2)) == 1).all()


def test_attention_cam_on_clip_vision_towers(tiny_clip_tokenizer):
    torch.manual_seed(0)
    x, labels = _images(2, 32), torch.tensor([0, 2])
    tower = CLIPForImageClassification(
        CLIPConfig(
            text_config=CLIP_TEXT, vision_config=CLIP_VISION, num_labels=3, attn_implementation="eager"
        )
    )
    clip = CLIPModel(
        CLIPConfig(
            text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=8, attn_implementation="eager"
        )
    )
    zero_shot = ClipZeroShotClassifier.from_clip(clip, tiny_clip_tokenizer, ["cat", "dog", "bird"]).train()
    for model in (tower, zero_shot):
        cam = attention_gradient_cam(model, x, labels)
        assert cam.shape == (2, 4, 4)  # 32 px / patch 8
        assert cam.min() >= 0 and (cam.amax(dim=(1, 2)) == 1).all()
        assert all(p.grad is None for p in model.parameters())
    assert zero_shot.training


def test_attention_cam_errors():
    with pytest.raises(ValueError, match='attn_implementation="eager"'):
        attention_gradient_cam(_tiny_vit("sdpa"), _images(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no attention layers.*use grad_cam"):
        attention_gradient_cam(TinyCNN(), _images(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        attention_gradient_cam(_tiny_vit(), _images(), torch.tensor([0, 3]))


def test_grad_cam_on_a_grid_is_the_pooled_explainer_map():
    model = TinyCNN().train()
    x = _images()
    x[:, 0, 8:12, 2:6] = 2.0  # a red square, channel 0's evidence
    labels = torch.tensor([0, 1])
    full = grad_cam(model, x, labels, layer=model.conv)
    torch.testing.assert_close(full, GradCamExplainer(model, model.conv).explain(x, labels))
    cells = grad_cam(model, x, labels, layer=model.conv, grid=(4, 4))
    assert cells.shape == (2, 4, 4)
    assert cells.min() >= 0 and (cells.amax(dim=(1, 2)) == 1).all()
    pooled = F.avg_pool2d(full[:, None], 4)[:, 0]
    torch.testing.assert_close(cells, pooled / pooled.amax(dim=(1, 2), keepdim=True))
    assert cells[0].argmax() // 4 == 2  # the red square's row of cells
    assert model.training and all(p.grad is None for p in model.parameters())


def test_cam_for_dispatches():
    vit, cnn = _tiny_vit(), TinyCNN()
    x, labels = _images(), torch.tensor([0, 1])
    patch_cam = cam_for(vit, x, labels)
    torch.testing.assert_close(patch_cam, attention_gradient_cam(vit, x, labels))
    coarse = F.avg_pool2d(patch_cam[:, None], 2)[:, 0]
    torch.testing.assert_close(
        cam_for(vit, x, labels, cell=8), coarse / coarse.amax(dim=(1, 2), keepdim=True)
    )
    torch.testing.assert_close(cam_for(cnn, x, labels, cell=4), grad_cam(cnn, x, labels, grid=(4, 4)))
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        cam_for(vit, x, labels, cell=2)
    with pytest.raises(ValueError, match="does not divide"):
        cam_for(cnn, x, labels, cell=5)
    with pytest.raises(ValueError, match="has no attention; pass cell="):
        cam_for(cnn, x, labels)


def test_cam_recording_takes_cam_for_s_map_from_the_caller_s_pass_and_keeps_its_graph():
    """One train-mode pass gives the loss and the CAM: the map equals cam_for's (no dropout in this ViT), the
    CAM's gradient leaves no .grad and the loss still backpropagates through the same graph."""
    model = _tiny_vit().train()
    x, labels = _images(), torch.tensor([0, 2])
    with CamRecording(model, x) as recording:
        logits = model(pixel_values=x).logits
    assert len(recording.captured) == 2  # one attention map per block, nothing after the block closes
    model(pixel_values=x)
    assert len(recording.captured) == 2
    cam = recording.cam(logits, labels)
    torch.testing.assert_close(cam, cam_for(model, x, labels))
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(logits, labels).backward()
    assert model.vit.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0

    cnn, labels = TinyCNN(), torch.tensor([0, 1])
    with CamRecording(cnn, x, cell=4) as recording:
        logits = cnn(pixel_values=x)
    torch.testing.assert_close(recording.cam(logits, labels), cam_for(cnn, x, labels, cell=4))


def test_cam_recording_errors():
    x, labels = _images(), torch.tensor([0, 1])
    with CamRecording(_tiny_vit("sdpa"), x) as recording:
        logits = recording.model(pixel_values=x).logits
    with pytest.raises(ValueError, match='attn_implementation="eager"'):
        recording.cam(logits, labels)
    recording = CamRecording(_tiny_vit(), x)
    with pytest.raises(ValueError, match="no attention layer of ViTForImageClassification ran"):
        recording.cam(torch.zeros(2, 3, requires_grad=True), labels)
    with pytest.raises(ValueError, match="has no attention; pass cell="):
        CamRecording(TinyCNN(), x)
    with pytest.raises(ValueError, match="does not divide"):
        CamRecording(_tiny_vit(), x, cell=5)
