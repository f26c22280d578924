"""Fit a [`CGNMaskEncoder`] to a trained CGN on the shared loop (not in the paper).

The CGN's own compositions are labelled data for free: each generated image comes with the mask that
composed it. An encoder fitted to them finds the shape mask of a real image, so counterfactuals of that
image keep its real shape (`generate_counterfactual_dataset(..., pixel_values=..., mask_encoders=...)`). The
"dataset" is a range of batch seeds: `CgnSampleCollator` turns each seed into a batch of fresh samples,
so runs are deterministic, resumable and need no stored images.
"""

import numpy as np
import torch

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


def fit_mask_encoder(
    cgn: CounterfactualGenerativeNetwork, config: TrainingConfig, tied_fraction: float = 0.5
) -> CGNMaskEncoder:
    """Train a `CGNMaskEncoder` (same config as `cgn`) for `config.max_steps` batches of the CGN's samples
    and save it to `config.output_dir`. Inverted classes come out right side up (`generate` re-orients)."""
    if not config.max_steps:
        raise ValueError("fit_mask_encoder draws fresh samples without end: set config.max_steps.")
    torch.manual_seed(config.seed)
    encoder = CGNMaskEncoder(cgn.config)
    sample_ids = range(config.max_steps * config.batch_size)
    return train(config, encoder, sample_ids, CgnSampleCollator(cgn, tied_fraction))


__all__ = ["CgnSampleCollator", "fit_mask_encoder"]
