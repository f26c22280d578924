"""Inpainter runs on the shared loop: train `InpainterUNet` on random FIDO-like masks, compare infillers.

The run saves an `InpaintingPipeline` to `output_dir` (model_index.json + unet/, loadable with
`InpaintingPipeline.from_pretrained(output_dir)` or `GenerativeInfiller.from_pretrained(output_dir)`)
and writes metrics.json: the L1 error over the dropped pixels of held-out images, on the same seeded
masks, of the trained inpainter, the untrained one, and the blur, mean and local infillers.
"""

import logging
import os
import time
from dataclasses import asdict

import datasets
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..data import ImageCollator, LocalisationSceneConfig, build_localisation_scenes, load_item_source
from ..explain.generative import GenerativeInfiller
from ..explain.infillers import BlurInfiller, LocalInfiller, MeanInfiller
from ..hub import save_metrics_and_card
from ..models.inpainter import InpainterUNet, InpaintingPipeline, random_inpainting_masks
from .config import TrainingConfig
from .inpainter_config import InpainterTrainConfig
from .loop import make_accelerator, train

logger = logging.getLogger(__name__)


def load_inpainter_data(cfg: InpainterTrainConfig, seed: int = 0) -> datasets.DatasetDict:
    """The DatasetDict to train and evaluate on, with `cfg.train_split` and `cfg.eval_split`."""
    if cfg.dataset == "localisation":
        scenes = LocalisationSceneConfig(**{"seed": seed, "canvas_size": cfg.image_size, **cfg.localisation})
        data = build_localisation_scenes(scenes, load_item_source(cfg.item_source, cfg.item_source_path))
    else:
        data = datasets.load_from_disk(cfg.dataset_path)
    missing = {cfg.train_split, cfg.eval_split} - set(data)
    if missing:
        raise ValueError(f"the dataset has splits {sorted(data)}; missing {sorted(missing)}.")
    if cfg.image_column not in data[cfg.train_split].column_names:
        raise ValueError(
            f"no image column {cfg.image_column!r} in {data[cfg.train_split].column_names}; set image_column."
        )
    return data


def inpainter_step_fn(cfg: InpainterTrainConfig):
    """Step function: draw one random keep mask per image, L1 loss of the prediction on the dropped pixels.

    Masks come from torch's global RNG, which the loop seeds (`set_seed`) and Accelerate checkpoints
    restore, so a resumed run draws the same masks. Every process draws the same masks (for its own
    images).
    """
    keep_ratio, kinds = tuple(cfg.keep_ratio), tuple(cfg.mask_kinds)

    def step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["pixel_values"]
        n, _, h, w = x.shape
        keep = random_inpainting_masks(n, h, w, keep_ratio=keep_ratio, kinds=kinds).to(x.device)
        loss = model(pixel_values=x, keep_mask=keep, target=x).loss
        return loss, {"loss": loss.item()}

    return step


@torch.no_grad()
def evaluate_infillers(
    infillers: dict,
    dataset,
    collator: ImageCollator,
    cfg: InpainterTrainConfig,
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean absolute error over the dropped pixels (and channels) of `dataset`, per infiller.

    Every infiller sees the same images and the same masks (`random_inpainting_masks` seeded with
    `cfg.eval_mask_seed`); errors are summed over the whole set, then divided by its dropped values.
    """
    generator = torch.Generator().manual_seed(cfg.eval_mask_seed)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    errors, count = dict.fromkeys(infillers, 0.0), 0.0
    for batch in loader:
        x = batch["pixel_values"]
        n, c, h, w = x.shape
        keep = random_inpainting_masks(n, h, w, generator, tuple(cfg.keep_ratio), tuple(cfg.mask_kinds))
        dropped = 1 - keep
        count += c * dropped.sum().item()
        for name, infill in infillers.items():
            errors[name] += ((infill(x, keep) - x).abs() * dropped).sum().item()
    return {name: error / max(count, 1.0) for name, error in errors.items()}


def run_inpainter(
    train_cfg: TrainingConfig, cfg: InpainterTrainConfig, data: datasets.DatasetDict | None = None
) -> dict:
    """Train an `InpainterUNet`, save it as an `InpaintingPipeline` and compare held-out L1 with heuristics.

    `data` (with cfg's train and eval splits) replaces the dataset that `cfg` describes.
    """
    accelerator = make_accelerator(train_cfg)
    if data is None:
        data = load_inpainter_data(cfg, seed=train_cfg.seed)
    collator = ImageCollator(cfg.image_size, cfg.image_column)
    set_seed(train_cfg.seed)  # the same initial weights in every run and process
    model = InpainterUNet(
        in_channels=3,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        mid_layers=cfg.mid_layers,
        norm_num_groups=cfg.norm_num_groups,
    )
    held_out = data[cfg.eval_split]
    evaluate = {
        "dataset": held_out,
        "collator": collator,
        "cfg": cfg,
        "batch_size": train_cfg.eval_batch_size,
    }
    before = {}
    if accelerator.is_main_process:
        untrained = GenerativeInfiller(model, batch_size=train_cfg.eval_batch_size)
        before = evaluate_infillers({"generative_untrained": untrained}, **evaluate)

    start = time.perf_counter()
    model = train(train_cfg, model, data[cfg.train_split], collator, inpainter_step_fn(cfg), accelerator)
    results = {
        "train_seconds": time.perf_counter() - start,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(data[cfg.train_split]),
        "eval_split": cfg.eval_split,
        "eval_images": len(held_out),
    }
    if accelerator.is_main_process:
        InpaintingPipeline(unet=model).save_pretrained(train_cfg.output_dir)
        # the loop saved the bare unet at the top of output_dir; the pipeline holds it in unet/ now
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            os.remove(os.path.join(train_cfg.output_dir, name))
        infillers = {
            "generative": GenerativeInfiller(model, batch_size=train_cfg.eval_batch_size),
            "blur": BlurInfiller(cfg.blur_sigma),
            "mean": MeanInfiller(),
            "local": LocalInfiller(),
        }
        results["l1_dropped"] = {**evaluate_infillers(infillers, **evaluate), **before}
        logger.info("held-out L1 on dropped pixels: %s", results["l1_dropped"])
        save_metrics_and_card(
            train_cfg.output_dir,
            "inpainter",
            results,
            dataset="localisation scenes",
            training_config={**asdict(train_cfg), **asdict(cfg)},
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
