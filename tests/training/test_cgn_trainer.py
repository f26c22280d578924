"""Training the MNIST-scale CGN (arXiv 2101.06046, sec. 3, app. A) as a conditional GAN on the shared loop."""

import copy
import json
import os
import types

import datasets
import numpy as np
import PIL.Image
import pytest
import safetensors.torch
import torch

from hf_counterfactual.models.cgn import (
    CGNConfig,
    CGNDiscriminator,
    CGNMaskEncoder,
    CGNMaskEncoderOutput,
    CounterfactualGenerativeNetwork,
    mode_seeking_loss,
)
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.cgn_config import CgnTrainConfig
from hf_counterfactual.training.cgn_trainer import (
    CGNGAN,
    CgnCollator,
    CgnStep,
    class_mask_iou,
    counterfactual_transfer_accuracy,
    mask_encoder_iou_vs_data,
    run_cgn,
)
from hf_counterfactual.training.recipes import load_recipe

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "cgn", "colored_small.yaml")
TINY = {"ngf": 4, "disc_hidden": 16, "latent_dim": 8}


def _tiny_gan(disc_type: str = "mlp") -> CGNGAN:
    torch.manual_seed(0)
    config = CGNConfig(
        image_size=8, ngf=4, latent_dim=8, disc_hidden=16, disc_channels=4, disc_type=disc_type
    )
    return CGNGAN(CounterfactualGenerativeNetwork(config), CGNDiscriminator(config))


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("disc_type", ["mlp", "conv"])
def test_each_loss_reaches_only_its_own_player(disc_type):
    gan = _tiny_gan(disc_type)
    batch = {"pixel_values": torch.rand(4, 3, 8, 8) * 2 - 1, "labels": torch.tensor([0, 1, 2, 3])}
    # spectral norm's power iteration advances D's buffers at every training forward: start each pass alike
    start = copy.deepcopy(gan.discriminator.state_dict())

    torch.manual_seed(1)
    gan(**batch).generator_loss.backward()
    assert all(g is None for g in _grads(gan.discriminator))
    assert any(g is not None and g.abs().sum() > 0 for g in _grads(gan.generator))

    gan.zero_grad(set_to_none=True)
    gan.discriminator.load_state_dict(start)
    torch.manual_seed(1)
    gan(**batch).discriminator_loss.backward()
    assert all(g is None for g in _grads(gan.generator))
    assert all(g is not None for g in _grads(gan.discriminator))
    d_only = [g.clone() for g in _grads(gan.discriminator)]

    # the summed loss the loop backpropagates gives D exactly L_D's gradient
    gan.zero_grad(set_to_none=True)
    gan.discriminator.load_state_dict(start)
    torch.manual_seed(1)
    gan(**batch).loss.backward()
    for g, expected in zip(_grads(gan.discriminator), d_only, strict=True):
        torch.testing.assert_close(g, expected)


def test_ema_generator_is_the_moving_average_of_the_weights_and_gets_no_gradient():
    """At each training forward ema <- d * ema + (1 - d) * G (the last step's weights); BN stats copied."""
    torch.manual_seed(0)
    config = CGNConfig(image_size=8, ngf=4, latent_dim=8, disc_hidden=16)
    gan = CGNGAN(CounterfactualGenerativeNetwork(config), CGNDiscriminator(config), ema_decay=0.75).train()
    assert all(
        torch.equal(e, g)
        for e, g in zip(gan.generator_ema.parameters(), gan.generator.parameters(), strict=True)
    )
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(1.0)
        gan.generator.shape.blocks[2].running_mean.fill_(3.0)
    before = [e.clone() for e in gan.generator_ema.parameters()]
    batch = {"pixel_values": torch.rand(4, 3, 8, 8) * 2 - 1, "labels": torch.tensor([0, 1, 2, 3])}
    gan(**batch).loss.backward()
    for old, ema, g in zip(before, gan.generator_ema.parameters(), gan.generator.parameters(), strict=True):
        torch.testing.assert_close(ema, 0.75 * old + 0.25 * g)
        assert ema.grad is None and not ema.requires_grad
    assert torch.all(gan.generator_ema.shape.blocks[2].running_mean == 3.0)
    gan.eval()(**batch)  # evaluation forwards leave the average alone
    torch.testing.assert_close(
        next(gan.generator_ema.parameters()), 0.75 * before[0] + 0.25 * next(gan.generator.parameters())
    )
    assert CGNGAN(gan.generator, gan.discriminator).generator_ema is None  # ema_decay 0: off
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\), got 1.0"):
        CgnTrainConfig(ema_decay=1.0)


def test_mode_seeking_pairs_share_a_class_and_add_the_weighted_loss():
    """With lambda_mode_seeking, fake i and fake B/2 + i get one class and different noise, and L_G adds
    lambda * mode_seeking_loss of their masks."""
    gan = _tiny_gan()
    gan.lambda_mode_seeking = 2.0
    calls = []
    forward = gan.generator.forward
    gan.generator.forward = lambda *args, **kwargs: calls.append((args, kwargs)) or forward(*args, **kwargs)
    out = gan(pixel_values=torch.rand(5, 3, 8, 8) * 2 - 1, labels=torch.tensor([0, 1, 2, 3, 4]))
    (shape, texture, background), kwargs = calls[0]
    assert (
        torch.equal(shape[:2], shape[2:4]) and torch.equal(shape, texture) and torch.equal(shape, background)
    )
    noise = kwargs["noise"]
    assert not torch.equal(noise[:2], noise[2:4])
    masks = gan.generator(shape, texture, background, noise=noise).mask
    torch.testing.assert_close(
        out.mode_seeking_loss, mode_seeking_loss(masks[:2], masks[2:4], noise[:2], noise[2:4])
    )
    expected = out.adversarial_loss + out.binary_loss + out.mask_loss + 2.0 * out.mode_seeking_loss
    torch.testing.assert_close(out.generator_loss.detach(), expected)


def test_loss_is_the_weighted_sum_of_the_terms():
    gan = _tiny_gan()
    gan.lambda_adv, gan.lambda_binary, gan.lambda_mask, gan.lambda_border = 0.5, 2.0, 3.0, 4.0
    out = gan(pixel_values=torch.zeros(2, 3, 8, 8), labels=torch.tensor([4, 5]))
    expected = (
        0.5 * out.adversarial_loss + 2.0 * out.binary_loss + 3.0 * out.mask_loss + 4.0 * out.border_loss
    )
    assert 0 < out.border_loss < 1
    torch.testing.assert_close(out.generator_loss.detach(), expected)
    torch.testing.assert_close(out.loss, out.generator_loss + out.discriminator_loss)
    assert 0 < out.mask_mean < 1


def test_collator_maps_pixels_to_minus_one_one_and_rejects_wrong_sizes():
    rows = [
        {"image": PIL.Image.fromarray(np.full((8, 8, 3), 255, np.uint8)), "label": 3},
        {"image": np.zeros((8, 8, 3), np.uint8), "label": 7},
    ]
    batch = CgnCollator(image_size=8)(rows)
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    assert batch["pixel_values"][0].min() == 1.0 and batch["pixel_values"][1].max() == -1.0
    assert batch["labels"].tolist() == [3, 7]
    with pytest.raises(ValueError, match="must be 16x16"):
        CgnCollator(image_size=16)(rows)
    with pytest.raises(ValueError, match="empty batch"):
        CgnCollator(image_size=8)([])


def test_step_keeps_recent_logs_for_the_final_losses():
    step = CgnStep(window=2)
    assert step.final_losses() == {}
    gan = _tiny_gan()
    batch = {"pixel_values": torch.zeros(2, 3, 8, 8), "labels": torch.tensor([0, 1])}
    for _ in range(3):
        loss, logs = step(gan, batch)
    assert set(logs) == set(CgnStep.KEYS) and len(step.recent) == 2
    assert step.final_losses()["mask_mean"] == pytest.approx(np.mean([r["mask_mean"] for r in step.recent]))
    assert len(step.starts) == 3 and step.step_seconds() == pytest.approx(np.median(np.diff(step.starts)))


def test_gan_step_compiles_to_one_graph():
    """The label range check is the step's one host sync; under torch.compile it is skipped, so
    fullgraph=True (which raises on any graph break) goes through, with the mode-seeking pairs on."""
    torch._dynamo.reset()
    gan = _tiny_gan()
    gan.lambda_mode_seeking, gan.lambda_border = 0.02, 1.0
    batch = {"pixel_values": torch.zeros(4, 3, 8, 8), "labels": torch.tensor([0, 1, 2, 3])}
    out = torch.compile(gan, backend="eager", fullgraph=True)(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(g is not None for g in _grads(gan.generator))
    with pytest.raises(ValueError, match="outside"):  # eager calls still check the range
        gan.generator.generate([0, 10], [0, 0], [0, 0])


def test_config_errors():
    with pytest.raises(ValueError, match="variant"):
        CgnTrainConfig(variant="striped")
    with pytest.raises(ValueError, match="num_train"):
        CgnTrainConfig(num_train=0)
    with pytest.raises(ValueError, match="lambda"):
        CgnTrainConfig(lambda_binary=-1.0)
    with pytest.raises(ValueError, match="lambda_border"):
        CgnTrainConfig(lambda_border=-1.0)
    with pytest.raises(ValueError, match="lambda_mode_seeking"):
        CgnTrainConfig(lambda_mode_seeking=-0.1)
    with pytest.raises(ValueError, match="border_width"):
        CgnTrainConfig(border_width=16)  # image_size 32: the frame would cover everything
    with pytest.raises(ValueError, match="mask_encoder_steps must be >= 0"):
        CgnTrainConfig(mask_encoder_steps=-1)


def test_recipe_parses_with_overrides():
    method, train_cfg, cfg = load_recipe(RECIPE, ["ngf=8", "variant=double_colored", "max_steps=3"])
    assert method == "cgn" and isinstance(cfg, CgnTrainConfig)
    assert (cfg.ngf, cfg.variant, train_cfg.max_steps) == (8, "double_colored", 3)
    # the paper's optimiser: Adam 2e-4, betas (0.5, 0.999), batch 16, no schedule
    assert (train_cfg.learning_rate, train_cfg.adam_beta1, train_cfg.adam_beta2) == (2e-4, 0.5, 0.999)
    assert (train_cfg.batch_size, train_cfg.lr_scheduler) == (16, "constant")
    assert cfg.disc_spectral_norm and cfg.lambda_mode_seeking == 0.02


def test_tiny_run_saves_a_generator_and_metrics(tmp_path):
    out = tmp_path / "run"
    train_cfg = TrainingConfig(
        output_dir=str(out),
        max_steps=3,
        batch_size=8,
        learning_rate=2e-4,
        adam_beta1=0.5,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        disable_progress_bar=True,
    )
    cfg = CgnTrainConfig(item_source="digits", num_train=24, eval_samples=16, ema_decay=0.9, **TINY)
    metrics = run_cgn(train_cfg, cfg)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0 <= metrics["mask_iou"] <= 1 and set(metrics["mask_iou_per_class"]) <= {str(c) for c in range(10)}
    for key in ("train_seconds", "mask_mean", "mask_binariness", "images_per_second", "final_losses"):
        assert key in metrics
    assert set(metrics["final_losses"]) == set(CgnStep.KEYS)
    assert 0 < metrics["mask_mean"] < 1 and 0 <= metrics["mask_binariness"] <= 1
    assert metrics["train_images"] == 24

    generator = CounterfactualGenerativeNetwork.from_pretrained(str(out))
    assert (generator.config.ngf, generator.config.latent_dim) == (4, 8)
    images = generator.generate([0, 1, 2], [3, 4, 5], [6, 7, 8]).images
    assert images.shape == (3, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    discriminator = CGNDiscriminator.from_pretrained(str(out / "discriminator"))
    assert discriminator(images, torch.tensor([0, 1, 2])).shape == (3,)


def test_run_fits_a_mask_encoder_to_the_saved_generator(tmp_path):
    out = tmp_path / "run"
    train_cfg = TrainingConfig(output_dir=str(out), max_steps=2, batch_size=8, disable_progress_bar=True)
    cfg = CgnTrainConfig(item_source="digits", num_train=24, eval_samples=16, mask_encoder_steps=3, **TINY)
    metrics = run_cgn(train_cfg, cfg)
    encoder = CGNMaskEncoder.from_pretrained(str(out / "mask_encoder"))
    generator = CounterfactualGenerativeNetwork.from_pretrained(str(out))
    ignore = {"_name_or_path": "", "architectures": []}
    assert encoder.config.to_dict() | ignore == generator.config.to_dict() | ignore  # inverted classes too
    assert 0 <= metrics["mask_encoder_iou"] <= 1 and 0 <= metrics["mask_encoder_background"] <= 1
    assert json.loads((out / "metrics.json").read_text())["mask_encoder_iou"] == metrics["mask_encoder_iou"]


def test_mask_encoder_iou_against_a_hand_computation(monkeypatch):
    true = np.zeros((2, 8, 8), np.uint8)
    true[0, :4] = 255  # top half
    true[1, :, :4] = 255  # left half
    white = np.zeros((2, 8, 8, 3), np.uint8)  # where the fake encoder below says 0.9 (elsewhere 0.2)
    white[0, :4, :4] = 255  # a quarter inside the top half: IoU 16 / 32
    white[1, :, :4] = 255  # the left half exactly: IoU 1
    rows = {
        "image": [PIL.Image.fromarray(w) for w in white],
        "mask": [PIL.Image.fromarray(m) for m in true],
        "label": [0, 1],
    }
    encoder = CGNMaskEncoder(CGNConfig(num_classes=2, image_size=8, encoder_channels=4))
    fake = lambda pixel_values: CGNMaskEncoderOutput(mask=torch.where(pixel_values[:, :1] > 0, 0.9, 0.2))  # noqa: E731
    monkeypatch.setattr(encoder, "forward", fake)
    scores = mask_encoder_iou_vs_data(encoder, datasets.Dataset.from_dict(rows))
    assert scores["mask_encoder_iou"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["mask_encoder_background"] == pytest.approx(0.2)
    # a batch with an undecodable image is left out (its masks would not line up), the others still count
    data = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image(decode=False))
    broken = {"image": {"bytes": b"not an image", "path": None}, "mask": rows["mask"][0], "label": 0}
    data = datasets.concatenate_datasets(
        [data.select([0]), data.select([0]).map(lambda _: broken), data.select([1])]
    )
    scores = mask_encoder_iou_vs_data(encoder, data, batch_size=2)  # batch [row 0, broken] out, [row 1] in
    assert scores["mask_encoder_iou"] == pytest.approx(1.0)


def test_class_mask_iou_catches_inverted_masks():
    item = torch.zeros(4, 4)
    item[1:3, 1:3] = 1  # 4 of 16 pixels
    real = torch.stack([item, item, 1 - item])
    real_labels = torch.tensor([0, 0, 1])
    generated = torch.stack(
        [item, 1 - item, 1 - item * 0.6]
    )  # class 0 right; class 1 inverted vs its real mask
    out = class_mask_iou(generated, torch.tensor([0, 1, 1]), real, real_labels, num_classes=3)
    assert out["mask_iou_per_class"]["0"] == 1.0
    # class 1: mean generated mask = 1 - 0.8 * item -> > 0.5 everywhere but the item: equals its real mask (1 - item)
    assert out["mask_iou_per_class"]["1"] == 1.0
    flipped = class_mask_iou(1 - generated, torch.tensor([0, 1, 1]), real, real_labels, num_classes=3)
    assert flipped["mask_iou_per_class"]["0"] == 0.0 and flipped["mask_iou_per_class"]["1"] == 0.0
    assert "2" not in out["mask_iou_per_class"]  # absent class skipped
    assert out["mask_iou"] == 1.0 and flipped["mask_iou"] == 0.0


@pytest.mark.parametrize("random_fake_labels", [False, True])
def test_fakes_use_the_batch_labels_or_uniform_draws(random_fake_labels, monkeypatch):
    gan = _tiny_gan()
    gan.random_fake_labels = random_fake_labels
    seen = []
    forward = gan.generator.forward
    monkeypatch.setattr(
        gan.generator, "forward", lambda s, t, b, **kw: seen.append((s, t, b)) or forward(s, t, b, **kw)
    )
    labels = torch.zeros(64, dtype=torch.long)
    torch.manual_seed(0)
    gan(pixel_values=torch.rand(64, 3, 8, 8) * 2 - 1, labels=labels)
    shape, texture, background = seen[0]
    assert torch.equal(shape, texture) and torch.equal(
        shape, background
    )  # one class per fake, as in training
    if random_fake_labels:
        assert len(shape.unique()) > 5  # uniform over 10 classes, not the batch's all-zero labels
    else:
        assert torch.equal(shape, labels)


def test_style_term_joins_the_generator_loss_only():
    gan = _tiny_gan()
    styled = _tiny_gan()
    styled.lambda_style = 2.0
    from hf_counterfactual.models.cgn import RandomConvFeatures

    styled.style_features = RandomConvFeatures()
    batch = {"pixel_values": torch.rand(4, 3, 8, 8) * 2 - 1, "labels": torch.tensor([0, 1, 2, 3])}
    torch.manual_seed(1)
    plain_out = gan(**batch)
    torch.manual_seed(1)
    out = styled(**batch)
    assert out.style_loss > 0 and plain_out.style_loss == 0
    torch.testing.assert_close(out.generator_loss, plain_out.generator_loss + 2.0 * out.style_loss)
    torch.testing.assert_close(out.discriminator_loss, plain_out.discriminator_loss)
    out.generator_loss.backward()
    assert all(p.grad is None for p in styled.discriminator.parameters())


class ShapeCopyingGenerator:
    """A 'perfect CGN' for the transfer test: for shape class c it returns a real image of class c taken
    from the unbiased twin (colours drawn at random), whatever texture / background were asked for."""

    def __init__(self, oracle_images: torch.Tensor, oracle_labels: torch.Tensor):
        self.images, self.labels = oracle_images, oracle_labels
        self.config = CGNConfig(image_size=oracle_images.shape[-1])
        self.device = torch.device("cpu")

    def generate(self, shape_labels, texture_labels, background_labels, seed=0):
        g = torch.Generator().manual_seed(seed)
        picks = [
            self.images[(self.labels == c).nonzero()[torch.randint(int((self.labels == c).sum()), (), generator=g)]]
            for c in shape_labels.tolist()
        ]  # fmt: skip
        return types.SimpleNamespace(images=torch.cat(picks))


def test_transfer_accuracy_is_high_for_real_shapes_and_near_chance_for_an_untrained_generator():
    from hf_counterfactual.data import load_item_source
    from hf_counterfactual.data.cgn_variants import CgnVariantConfig, build_cgn_variant

    items = load_item_source("digits")
    sizes = {"variant": "colored", "num_train": 600, "num_validation": 0, "num_test": 0, "seed": 0}
    biased = build_cgn_variant(CgnVariantConfig(**sizes), items)["train"]
    oracle = build_cgn_variant(CgnVariantConfig(bias=False, **sizes), items)["train"]
    batch = CgnCollator(32)(list(oracle.select_columns(["image", "label"])))
    perfect = ShapeCopyingGenerator(batch["pixel_values"], batch["labels"])
    torch.manual_seed(0)
    untrained = CounterfactualGenerativeNetwork(CGNConfig(**TINY))
    real = biased.select(range(300))
    rng_state = torch.get_rng_state()
    scores = {
        name: counterfactual_transfer_accuracy(g, real, per_image=2, epochs=5)
        for name, g in (("perfect", perfect), ("untrained", untrained))
    }
    assert scores["perfect"] > 0.6 and scores["untrained"] < 0.3, scores
    assert torch.equal(torch.get_rng_state(), rng_state)  # seeded without touching the caller's state
    assert counterfactual_transfer_accuracy(untrained, real, per_image=2, epochs=5) == scores["untrained"]


def test_run_with_evaluation_keeps_the_best_generator(tmp_path):
    out = tmp_path / "run"
    train_cfg = TrainingConfig(
        output_dir=str(out), max_steps=4, batch_size=8, learning_rate=2e-3, adam_beta1=0.5,
        lr_scheduler="constant", warmup_ratio=0.0, disable_progress_bar=True, eval_steps=2,
        metric_for_best_model="transfer_accuracy", load_best_model_at_end=True,
    )  # fmt: skip
    cfg = CgnTrainConfig(
        item_source="digits",
        num_train=24,
        eval_samples=16,
        transfer_eval_images=16,
        transfer_epochs=1,
        ema_decay=0.9,
        **TINY,
    )
    metrics = run_cgn(train_cfg, cfg)
    state = json.loads((out / "trainer_state.json").read_text())
    assert set(metrics["transfer_accuracy"]) == {"2", "4"}
    assert metrics["best_step"] == state["best_step"]
    assert metrics["transfer_accuracy"][str(state["best_step"])] == max(metrics["transfer_accuracy"].values())
    saved = CounterfactualGenerativeNetwork.from_pretrained(str(out)).state_dict()
    best = safetensors.torch.load_file(str(out / "best_model" / "model.safetensors"))
    for name, value in saved.items():  # the moving average exactly as it was evaluated at the best step
        torch.testing.assert_close(best[f"generator_ema.{name}"], value, atol=0, rtol=0, msg=name)
