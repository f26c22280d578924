"""Fit a [`CGNMaskEncoder`] to a trained CGN on the shared loop (not in the paper).

The CGN's own compositions are labelled data for free: each generated image comes with the mask that
composed it. An encoder fitted to them finds the shape mask of a real image, so counterfactuals of that
image keep its real shape (`generate_counterfactual_dataset(..., pixel_values=..., mask_encoders=...)`). The
"dataset" is a range of batch seeds: `CgnSampleCollator` turns each seed into a batch of fresh samples,
so runs are deterministic, resumable and need no stored images.
"""

import numpy as np
import torch
from accelerate import Accelerator

from ..models.cgn import CGNMaskEncoder, CounterfactualGenerativeNetwork
from .config import TrainingConfig
from .loop import train


class CgnSampleCollator:
    """A batch of sample ids -> `{pixel_values, target_masks}` drawn from a frozen CGN.

    The batch's first id seeds its classes and noise. `tied_fraction` of the rows give all three mechanisms
    the same class, as in the class-tied training images the encoder will see; the rest draw each at random.
    """

    def __init__(self, cgn: CounterfactualGenerativeNetwork, tied_fraction: float = 0.5):
        if not 0.0 <= tied_fraction <= 1.0:
            raise ValueError(f"tied_fraction must be in [0, 1], got {tied_fraction}.")
        self.cgn, self.tied_fraction = cgn, tied_fraction

    def __call__(self, ids: list[int]) -> dict[str, torch.Tensor]:
        seed = int(ids[0])
        labels = np.random.default_rng(seed).integers(0, self.cgn.config.num_classes, size=(3, len(ids)))
        tied = round(self.tied_fraction * len(ids))
        labels[1:, :tied] = labels[0, :tied]
        out = self.cgn.generate(*labels, seed=seed)
        return {"pixel_values": out.images.cpu(), "target_masks": out.mask.cpu()}


def mask_encoder_training_config(
    output_dir: str, max_steps: int, seed: int = 0, **overrides
) -> TrainingConfig:
    """The encoder's recipe: `max_steps` batches of 64 fresh samples, Adam 1e-3 at a constant rate (what the
    bench measured; see benchmarks/README.md, "Counterfactuals that keep the real images' shapes")."""
    defaults = {"batch_size": 64, "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0}
    return TrainingConfig(output_dir=output_dir, max_steps=max_steps, seed=seed, **{**defaults, **overrides})


def fit_mask_encoder(
    cgn: CounterfactualGenerativeNetwork,
    config: TrainingConfig,
    tied_fraction: float = 0.5,
    accelerator: Accelerator | None = None,
) -> CGNMaskEncoder:
    """Train a `CGNMaskEncoder` (same config as `cgn`) for `config.max_steps` batches of the CGN's samples
    and save it to `config.output_dir`. Inverted classes come out right side up (`generate` re-orients).
    `accelerator`: an open one to fit on (e.g. the CGN run's, whose owner ends it), else the loop makes one."""
    if not config.max_steps:
        raise ValueError("fit_mask_encoder draws fresh samples without end: set config.max_steps.")
    torch.manual_seed(config.seed)
    encoder = CGNMaskEncoder(cgn.config)
    sample_ids = range(config.max_steps * config.batch_size * config.gradient_accumulation_steps)
    return train(config, encoder, sample_ids, CgnSampleCollator(cgn, tied_fraction), accelerator=accelerator)


__all__ = ["CgnSampleCollator", "fit_mask_encoder", "mask_encoder_training_config"]
