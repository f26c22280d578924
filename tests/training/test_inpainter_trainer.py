"""Training FIDO's generative infiller (arXiv 1807.08024, section 3) on the shared loop."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from hf_counterfactual.data import ImageCollator
from hf_counterfactual.models.inpainter import InpainterUNet, InpaintingPipeline
from hf_counterfactual.training import TrainingConfig, train
from hf_counterfactual.training.inpainter_config import InpainterTrainConfig
from hf_counterfactual.training.inpainter_trainer import inpainter_step_fn, run_inpainter
from hf_counterfactual.training.recipes import load_recipe
from tests.training.test_loop import interrupted_at

RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "..", "recipes", "inpainter", "localisation_small.yaml"
)


def test_collator_gives_rgb_pixels_in_unit_range():
    rows = [
        {"image": np.full((10, 12), 255, np.uint8)},
        {"image": PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8))},
    ]
    x = ImageCollator(image_size=16)(rows)["pixel_values"]
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert x[0].min() == 1.0 and x[1].max() == 0.0
    with pytest.raises(ValueError, match="empty batch"):
        ImageCollator(image_size=16)([])


def test_config_errors():
    with pytest.raises(ValueError, match="dataset must be"):
        InpainterTrainConfig(dataset="coco")
    with pytest.raises(ValueError, match="needs dataset_path"):
        InpainterTrainConfig(dataset="disk")
    with pytest.raises(ValueError, match="mask_kinds"):
        InpainterTrainConfig(mask_kinds=["circle"])
    with pytest.raises(ValueError, match="keep_ratio"):
        InpainterTrainConfig(keep_ratio=[0.5, 1.0])


def test_shipped_recipe_parses():
    method, train_cfg, cfg = load_recipe(RECIPE)
    assert method == "inpainter" and isinstance(cfg, InpainterTrainConfig)
    assert cfg.dataset == "localisation" and train_cfg.output_dir == "outputs/inpainter_small"


def test_tiny_run_beats_untrained_and_mean_and_saves_a_pipeline(tmp_path):
    out = tmp_path / "run"
    train_cfg = TrainingConfig(
        output_dir=str(out), max_steps=30, batch_size=16, learning_rate=3e-3, disable_progress_bar=True
    )
    cfg = InpainterTrainConfig(
        item_source="digits",
        image_size=32,
        block_out_channels=[8, 16, 16],
        norm_num_groups=4,
        localisation={"num_train": 64, "num_validation": 0, "num_test": 32},
    )
    metrics = run_inpainter(train_cfg, cfg)
    l1 = metrics["l1_dropped"]
    assert set(l1) == {"generative", "generative_untrained", "blur", "mean", "local"}
    assert l1["generative"] < l1["generative_untrained"]
    assert l1["generative"] < l1["mean"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # output_dir holds the pipeline (model_index.json + unet/), not a second bare copy of the unet
    assert (out / "model_index.json").is_file() and not (out / "config.json").exists()
    pipe = InpaintingPipeline.from_pretrained(str(out))
    assert pipe.unet.config.block_out_channels == [8, 16, 16]


def _random_images(n=16, size=16):
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)} for _ in range(n)]


def _tiny_unet():
    torch.manual_seed(0)
    return InpainterUNet(block_out_channels=(8, 16), norm_num_groups=4)


def test_resumed_run_draws_the_same_masks(tmp_path):
    """Masks come from the RNG the loop seeds and checkpoints: interrupted + resumed = one run."""
    data, collate, step = _random_images(), ImageCollator(16), inpainter_step_fn(InpainterTrainConfig())

    def config(folder, **kwargs):
        return TrainingConfig(output_dir=str(folder), max_steps=4, batch_size=4, disable_progress_bar=True,
                              checkpointing_steps=2, learning_rate=1e-2, **kwargs)  # fmt: skip

    full = train(config(tmp_path / "a"), _tiny_unet(), data, collate, step)

    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "b"), _tiny_unet(), data, collate, interrupted_at(3, step))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    resumed = train(
        config(tmp_path / "b", resume_from_checkpoint="latest"), _tiny_unet(), data, collate, step
    )
    for name, value in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
