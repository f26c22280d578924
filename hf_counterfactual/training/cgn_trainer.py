"""The MNIST-scale CGN (arXiv 2101.06046) trained as a conditional GAN on the shared loop.

The loop has one optimizer over `model.parameters()`; a GAN has two players. `CGNGAN` wraps the
generator and the discriminator in one module whose forward returns L_G + L_D, built so that each loss
reaches only its own player:

- L_G = lambda_adv * LSGAN(D(G(u, y), y) -> 1) + lambda_binary * L_binary + lambda_mask * L_mask (+ the
  weighted border, style and mode-seeking terms when on), with D called through
  `torch.func.functional_call` on *detached* copies of its parameters: the gradient flows through D's
  input into G, never into D's weights.
- L_D = LSGAN(D(x, y) -> 1, D(G(u, y).detach(), y) -> 0): the detached fake keeps it out of G.

So one backward gives every parameter exactly the gradient of its own player's loss, and one Adam
(AdamW, weight decay 0) over both parameter sets is the same as the authors' two Adams with equal
settings, since Adam is per parameter. The one difference is the schedule: both players step at once
from the same state (simultaneous updates), where the authors step G, then D. Global gradient
clipping (`max_grad_norm`) and the lr schedule, if any, are shared by both players.

The generator is conditioned with shape = texture = background = the real label of each image, and
the discriminator scores (real image, label) and (fake image, same label) pairs. Forward goes through
the wrapper (not its parts), so DDP sees one forward per step.

The run saves the generator to `output_dir` (`CounterfactualGenerativeNetwork.from_pretrained`; with
`ema_decay` > 0 the moving average of its weights), the discriminator to `output_dir/discriminator`
and writes metrics.json. With `TrainingConfig.eval_steps` it scores the generator every eval_steps by
`counterfactual_transfer_accuracy` (on biased data alone) and, with `load_best_model_at_end`, saves the
best-scoring one: long GAN runs wander, and the last step is often not the best.
"""

import copy
import json
import logging
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate.utils import set_seed
from torch import nn
from torch.func import functional_call
from transformers.utils import ModelOutput

from ..data import decode_image, load_item_source
from ..data.cgn_variants import CgnVariantConfig, build_cgn_variant
from ..data.transforms import _ImageBatching
from ..hub import save_metrics_and_card
from ..models.cgn import (
    CGNConfig,
    CGNDiscriminator,
    CGNMaskEncoder,
    CounterfactualGenerativeNetwork,
    RandomConvFeatures,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    mask_binary_entropy,
    mask_border_loss,
    mask_size_loss,
    mode_seeking_loss,
    style_loss,
)
from .cgn_config import CgnTrainConfig
from .cgn_mask_encoder import fit_mask_encoder, mask_encoder_training_config
from .classification import build_image_classifier
from .config import TrainingConfig
from .loop import make_accelerator, train
from .pat_config import TINY_RESNET

logger = logging.getLogger(__name__)


@dataclass
class CgnCollator(_ImageBatching):
    """CGN-variant rows as `pixel_values` (B, 3, S, S) in [-1, 1] (the generator's range) and `labels`.

    Decoding as `MultiLabelCollator`; images must already be S x S, the size the generator makes.
    """

    image_size: int
    image_column: str = "image"
    label_column: str = "label"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    convert_rgb: bool = True
    skipped: int = field(default=0, init=False)
    resize = False

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values, labels = self._collate(examples, lambda example, index: int(example[self.label_column]))
        return {"pixel_values": pixel_values, "labels": torch.tensor(labels, dtype=torch.long)}


@dataclass
class CGNGANOutput(ModelOutput):
    """`loss` = `generator_loss` + `discriminator_loss`; the rest are the (detached) terms for logging."""

    loss: torch.FloatTensor | None = None
    generator_loss: torch.FloatTensor | None = None
    discriminator_loss: torch.FloatTensor | None = None
    adversarial_loss: torch.FloatTensor | None = None
    binary_loss: torch.FloatTensor | None = None
    mask_loss: torch.FloatTensor | None = None
    style_loss: torch.FloatTensor | None = None
    border_loss: torch.FloatTensor | None = None
    mode_seeking_loss: torch.FloatTensor | None = None
    mask_mean: torch.FloatTensor | None = None


class CGNGAN(nn.Module):
    """Generator + discriminator as one module whose loss sends each player only its own gradient."""

    def __init__(
        self,
        generator: CounterfactualGenerativeNetwork,
        discriminator: CGNDiscriminator,
        lambda_adv: float = 1.0,
        lambda_binary: float = 1.0,
        lambda_mask: float = 1.0,
        random_fake_labels: bool = False,
        lambda_style: float = 0.0,
        style_seed: int = 0,
        lambda_border: float = 0.0,
        border_width: int = 2,
        ema_decay: float = 0.0,
        lambda_mode_seeking: float = 0.0,
    ):
        super().__init__()
        self.generator = generator
        # the moving average of G's weights: updated at each training forward, never optimised
        self.ema_decay = ema_decay
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False) if ema_decay > 0 else None
        self.discriminator = discriminator
        self.lambda_adv, self.lambda_binary, self.lambda_mask = lambda_adv, lambda_binary, lambda_mask
        self.random_fake_labels = random_fake_labels
        self.lambda_style = lambda_style
        self.style_features = RandomConvFeatures(seed=style_seed) if lambda_style > 0 else None
        self.lambda_border, self.border_width = lambda_border, border_width
        self.lambda_mode_seeking = lambda_mode_seeking

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * G for weights; BatchNorm statistics are copied from G."""
        for ema, current in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(current, 1 - self.ema_decay)
        for ema, current in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(current)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> CGNGANOutput:
        if self.training and self.generator_ema is not None:
            self.update_ema()  # folds in the weights of the last optimizer step
        real_labels = labels
        if self.random_fake_labels:  # the authors' y_gen: fakes of uniformly drawn classes
            labels = torch.randint(0, self.generator.config.num_classes, labels.shape, device=labels.device)
        half = len(labels) // 2
        if self.lambda_mode_seeking > 0:  # pairs: fake i and fake half + i share their class
            labels = torch.cat([labels[:half], labels[:half], labels[2 * half :]])
        noise = torch.randn(
            len(labels), self.generator.config.latent_dim, device=labels.device, dtype=self.generator.dtype
        )
        fake = self.generator(labels, labels, labels, noise=noise)
        # D with detached weights: L_G's gradient reaches the fake images (and so G), not D
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        fake_scores = functional_call(self.discriminator, frozen, (fake.images, labels))
        adversarial = lsgan_generator_loss(fake_scores)
        binary = mask_binary_entropy(fake.mask)
        size = mask_size_loss(fake.mask)
        generator_loss = self.lambda_adv * adversarial + self.lambda_binary * binary + self.lambda_mask * size
        border = mask_border_loss(fake.mask, self.border_width)
        mode_seeking = torch.zeros((), device=size.device)
        if self.lambda_mode_seeking > 0 and half:  # on the masks: each class's shapes should vary
            pair_a, pair_b = slice(0, half), slice(half, 2 * half)
            mode_seeking = mode_seeking_loss(
                fake.mask[pair_a], fake.mask[pair_b], noise[pair_a], noise[pair_b]
            )
            generator_loss = generator_loss + self.lambda_mode_seeking * mode_seeking
        if self.lambda_border > 0:
            generator_loss = generator_loss + self.lambda_border * border
        style = torch.zeros((), device=size.device)
        if (
            self.style_features is not None
        ):  # Gram statistics of fakes vs the real batch, as the authors' L_perc
            style = style_loss(self.style_features(fake.images), self.style_features(pixel_values))
            generator_loss = generator_loss + self.lambda_style * style
        discriminator_loss = lsgan_discriminator_loss(
            self.discriminator(pixel_values, real_labels), self.discriminator(fake.images.detach(), labels)
        )
        return CGNGANOutput(
            loss=generator_loss + discriminator_loss,
            generator_loss=generator_loss,
            discriminator_loss=discriminator_loss,
            adversarial_loss=adversarial.detach(),
            binary_loss=binary.detach(),
            mask_loss=size.detach(),
            style_loss=style.detach(),
            border_loss=border.detach(),
            mode_seeking_loss=mode_seeking.detach(),
            mask_mean=fake.mask.detach().mean(),
        )


class CgnStep:
    """Step function of the shared loop; keeps the last `window` steps' logs for the final losses and the
    start time of every step, for `step_seconds`."""

    KEYS = (
        "generator_loss",
        "discriminator_loss",
        "adversarial_loss",
        "binary_loss",
        "mask_loss",
        "style_loss",
        "border_loss",
        "mode_seeking_loss",
        "mask_mean",
    )

    def __init__(self, window: int = 20):
        self.recent = deque(maxlen=window)
        self.starts: list[float] = []

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self.starts.append(time.perf_counter())
        out = model(**batch)
        values = torch.stack([out[key].float() for key in self.KEYS]).tolist()  # one host sync per step
        logs = dict(zip(self.KEYS, values, strict=True))
        self.recent.append(logs)
        return out.loss, logs

    def step_seconds(self) -> float:
        """Median time between step starts: a steady-state step, without compilation or checkpoint saves."""
        return float(np.median(np.diff(self.starts))) if len(self.starts) > 1 else float("nan")

    def final_losses(self) -> dict[str, float]:
        """Mean of each logged value over the last `window` steps (empty before the first step)."""
        if not self.recent:
            return {}
        return {key: float(np.mean([logs[key] for logs in self.recent])) for key in self.KEYS}


@torch.no_grad()
def evaluate_generator(
    generator: CounterfactualGenerativeNetwork, num_samples: int = 256, seed: int = 0, batch_size: int = 256
) -> dict[str, float]:
    """Mask statistics of `num_samples` counterfactuals (random, independent classes per mechanism) and speed.

    mask_binariness is the fraction of mask pixels below 0.1 or above 0.9; images_per_second times
    `generate` in batches of `batch_size` (after one warm-up call).
    """
    labels = torch.randint(
        0, generator.config.num_classes, (3, num_samples), generator=torch.Generator().manual_seed(seed)
    )
    generator.generate(*labels[:, :2], seed=seed)  # warm-up
    masks = []
    start = time.perf_counter()
    for i in range(0, num_samples, batch_size):
        masks.append(generator.generate(*labels[:, i : i + batch_size], seed=seed + i).mask.cpu())
    seconds = time.perf_counter() - start
    mask = torch.cat(masks)
    return {
        "mask_mean": mask.mean().item(),
        "mask_binariness": ((mask < 0.1) | (mask > 0.9)).float().mean().item(),
        "images_per_second": num_samples / seconds,
    }


def class_mask_iou(
    masks: torch.Tensor,
    labels: torch.Tensor,
    real_masks: torch.Tensor,
    real_labels: torch.Tensor,
    num_classes: int,
) -> dict:
    """Per shape class, IoU of the mean generated mask (> 0.5) with the mean real item mask (> 0.5).

    Mask mean and binariness cannot tell a mask learned inside out (covering the background while the
    background mechanism paints the item) from a right one; this can: an inverted class scores near 0.
    Masks are (N, H, W) or (N, 1, H, W) in [0, 1]; classes absent from either side are skipped.
    """
    masks, real_masks = masks.reshape(len(masks), -1).float(), real_masks.reshape(len(real_masks), -1).float()
    per_class = {}
    for c in range(num_classes):
        gen, real = masks[labels == c], real_masks[real_labels == c]
        if len(gen) and len(real):
            a, b = gen.mean(0) > 0.5, real.mean(0) > 0.5
            union = (a | b).sum().item()
            per_class[str(c)] = (a & b).sum().item() / union if union else 1.0  # str: JSON keys
    return {"mask_iou": float(np.mean(list(per_class.values()))), "mask_iou_per_class": per_class}


def mask_iou_vs_data(
    generator: CounterfactualGenerativeNetwork, dataset: datasets.Dataset, per_class: int = 32, seed: int = 0
) -> dict:
    """`class_mask_iou` of `per_class` generated masks per shape class against the dataset's `mask` column."""
    k = generator.config.num_classes
    shapes = torch.arange(k).repeat_interleave(per_class)
    others = torch.randint(0, k, (2, len(shapes)), generator=torch.Generator().manual_seed(seed))
    masks = generator.generate(shapes, *others, seed=seed).mask.cpu()
    rows = dataset.select_columns(["mask", "label"])
    real = _item_masks(rows["mask"], generator.config.image_size)
    return class_mask_iou(masks, shapes, real, torch.tensor(rows["label"]), k)


def _item_masks(masks: list, size: int) -> torch.Tensor:
    """A dataset's `mask` column (images) -> (N, size, size) float32 in [0, 1]."""
    decoded = [np.asarray(decode_image(m).convert("L").resize((size, size)), dtype=np.float32) for m in masks]
    return torch.from_numpy(np.stack(decoded) / 255)


@torch.no_grad()
def mask_encoder_iou_vs_data(
    encoder: CGNMaskEncoder, dataset: datasets.Dataset, batch_size: int = 256
) -> dict:
    """How well `encoder` finds real masks: `mask_encoder_iou`, the mean per-image IoU of its masks cut at 0.5
    against the dataset's `mask` column, and `mask_encoder_background`, its mean mask outside them."""
    collate = CgnCollator(encoder.config.image_size)
    encoder.eval()
    ious, outside = [], []
    for start in range(0, len(dataset), batch_size):
        rows = list(dataset.select(range(start, min(start + batch_size, len(dataset)))))
        skipped = collate.skipped
        pixels = collate(rows)["pixel_values"].to(encoder.device)
        if collate.skipped > skipped:  # an undecodable image (the collator logs it): its batch is left out
            continue
        real = _item_masks([r["mask"] for r in rows], encoder.config.image_size)[:, None]
        real = (real > 0.5).float().to(encoder.device)
        mask = encoder(pixels).mask
        cut = (mask > 0.5).float()
        union = ((cut + real) > 0).sum((1, 2, 3)).clamp(min=1)
        ious.append((cut * real).sum((1, 2, 3)) / union)
        outside.append((mask * (1 - real)).sum((1, 2, 3)) / (1 - real).sum((1, 2, 3)).clamp(min=1))
    if not ious:
        return {}
    return {
        "mask_encoder_iou": torch.cat(ious).mean().item(),
        "mask_encoder_background": torch.cat(outside).mean().item(),
    }


def counterfactual_transfer_accuracy(
    generator: CounterfactualGenerativeNetwork,
    real: datasets.Dataset,
    per_image: int = 2,
    epochs: int = 3,
    seed: int = 0,
    backbone_config: dict = TINY_RESNET,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
) -> float:
    """Accuracy on the `real` images of a classifier trained only on counterfactuals of their labels.

    Texture and background classes are drawn independently of the shape class, so the classifier can learn
    shapes alone, and its accuracy on real images says whether the generator draws the real classes'
    shapes. It needs no unbiased data (`real` may be the biased training set, which the classifier never
    sees), so it can rank a run's checkpoints (benchmarks/README.md: CGN, checkpoint selection). The
    classifier (default: the bench's tiny ResNet) is fitted by a plain AdamW loop with a cosine-decayed lr,
    not the shared loop: this runs inside a training run, and a nested Accelerator would share its state.
    """
    real_batch = CgnCollator(generator.config.image_size)(list(real.select_columns(["image", "label"])))
    real_pixels, real_labels = real_batch["pixel_values"].to(generator.device), real_batch["labels"]
    k = generator.config.num_classes
    rng = torch.Generator().manual_seed(seed)
    shapes = real_labels.repeat(per_image)
    others = torch.randint(0, k, (2, len(shapes)), generator=rng)
    images = torch.cat([
        generator.generate(shapes[i : i + 256], *others[:, i : i + 256], seed=seed + i).images
        for i in range(0, len(shapes), 256)
    ])  # fmt: skip
    shapes = shapes.to(generator.device)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's random state untouched
        torch.manual_seed(seed)
        classifier = build_image_classifier(backbone_config, [str(c) for c in range(k)])
    classifier.to(generator.device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=1e-4)
    # decayed to 0: the last weights are not one noisy step of a constant-lr walk
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs * math.ceil(len(images) / batch_size)
    )
    classifier.train()
    for _ in range(epochs):
        for index in torch.randperm(len(images), generator=rng).split(batch_size):
            loss = classifier(pixel_values=images[index], labels=shapes[index]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    classifier.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [classifier(pixel_values=x).logits.argmax(-1).cpu() for x in real_pixels.split(256)]
        )
    return (predicted == real_labels).float().mean().item()


def run_cgn(train_cfg: TrainingConfig, cfg: CgnTrainConfig, data: datasets.DatasetDict | None = None) -> dict:
    """Train the CGN on a CGN-variant benchmark, save generator and discriminator, write metrics.json.

    `data` (a DatasetDict with a "train" split of `image` and `label`) replaces the benchmark `cfg` describes.
    """
    accelerator = make_accelerator(train_cfg)
    if data is None:
        variant = CgnVariantConfig(
            variant=cfg.variant,
            image_size=cfg.image_size,
            num_train=cfg.num_train,
            num_validation=0,
            num_test=0,
            seed=train_cfg.seed,
        )
        data = build_cgn_variant(variant, load_item_source(cfg.item_source, cfg.item_source_path))
    train_split = data["train"].select_columns(["image", "label"])
    config = CGNConfig(
        num_classes=train_split.features["label"].num_classes,
        image_size=cfg.image_size,
        latent_dim=cfg.latent_dim,
        ngf=cfg.ngf,
        embedding_dim=train_split.features["label"].num_classes,
        disc_type=cfg.disc_type,
        disc_conditioning=cfg.disc_conditioning,
        disc_hidden=cfg.disc_hidden,
        disc_dropout=cfg.disc_dropout,
        disc_spectral_norm=cfg.disc_spectral_norm,
        disc_channels=cfg.disc_channels,
    )
    set_seed(train_cfg.seed)  # the same initial weights in every run and process
    gan = CGNGAN(
        CounterfactualGenerativeNetwork(config),
        CGNDiscriminator(config),
        cfg.lambda_adv,
        cfg.lambda_binary,
        cfg.lambda_mask,
        cfg.random_fake_labels,
        cfg.lambda_style,
        cfg.style_seed,
        cfg.lambda_border,
        cfg.border_width,
        cfg.ema_decay,
        cfg.lambda_mode_seeking,
    )
    transfer_rows = train_split.select(range(min(cfg.transfer_eval_images, len(train_split))))

    def evaluate(gan: CGNGAN) -> dict[str, float]:  # on the main process; the loop shares the result
        if not accelerator.is_main_process:
            return {}
        generator = gan.generator if gan.generator_ema is None else gan.generator_ema
        generator.orient_classes(border_width=cfg.border_width, seed=cfg.eval_seed)  # as it will be saved
        accuracy = counterfactual_transfer_accuracy(
            generator, transfer_rows, cfg.transfer_per_image, cfg.transfer_epochs, cfg.eval_seed
        )
        return {"transfer_accuracy": accuracy}

    step = CgnStep()
    start = time.perf_counter()
    gan = train(
        train_cfg, gan, train_split, CgnCollator(cfg.image_size), step, accelerator, evaluate=evaluate
    )
    results = {
        "train_seconds": time.perf_counter() - start,
        "step_seconds": step.step_seconds(),
        "variant": cfg.variant,
        "train_images": len(train_split),
        "num_parameters": {
            "generator": sum(p.numel() for p in gan.generator.parameters()),
            "discriminator": sum(p.numel() for p in gan.discriminator.parameters()),
        },
        "final_losses": step.final_losses(),
    }
    if train_cfg.eval_steps and accelerator.is_main_process:  # trainer_state.json has every evaluation
        state = json.loads(Path(train_cfg.output_dir, "trainer_state.json").read_text())
        results["transfer_accuracy"] = {str(e["step"]): e["transfer_accuracy"] for e in state["eval_history"]}
        results["best_step"] = state["best_step"]
    generator = gan.generator
    if gan.generator_ema is not None:
        if not train_cfg.load_best_model_at_end:  # else keep the average exactly as it was evaluated
            gan.update_ema()  # the last optimizer step
        generator = gan.generator_ema
    if accelerator.is_main_process:
        results["inverted_classes"] = generator.orient_classes(
            border_width=cfg.border_width, seed=cfg.eval_seed
        )
        generator.save_pretrained(train_cfg.output_dir)
        gan.discriminator.save_pretrained(os.path.join(train_cfg.output_dir, "discriminator"))
    # every process fits the mask encoder to the saved (re-oriented) generator, on this run's accelerator
    if cfg.mask_encoder_steps:
        accelerator.wait_for_everyone()
        saved = CounterfactualGenerativeNetwork.from_pretrained(train_cfg.output_dir).to(accelerator.device)
        encoder_cfg = mask_encoder_training_config(
            os.path.join(train_cfg.output_dir, "mask_encoder"),
            cfg.mask_encoder_steps,
            train_cfg.seed,
            gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,  # the accelerator's
            disable_progress_bar=train_cfg.disable_progress_bar,
        )
        encoder = fit_mask_encoder(saved, encoder_cfg, accelerator=accelerator)
    if accelerator.is_main_process:
        results.update(evaluate_generator(generator, cfg.eval_samples, cfg.eval_seed))
        real_rows = data["train"].select(range(min(2000, len(data["train"]))))
        if "mask" in data["train"].column_names:
            results.update(mask_iou_vs_data(generator, real_rows))
            if cfg.mask_encoder_steps:
                results.update(mask_encoder_iou_vs_data(encoder, real_rows))
        logger.info("CGN: %s", results)
        save_metrics_and_card(
            train_cfg.output_dir,
            "cgn",
            results,
            dataset=f"cgn-{cfg.variant}",
            training_config={**asdict(train_cfg), **asdict(cfg)},
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
