"""Settings of an inpainter run: data, `InpainterUNet` size, training masks and evaluation."""

from dataclasses import dataclass, field

from ..models.inpainter import MASK_KINDS


@dataclass
class InpainterTrainConfig:
    """What the generative infiller of FIDO is trained on, how big it is and how it is evaluated.

    Args:
        dataset: "localisation" (scenes built on the fly with `build_localisation_scenes`) or "disk"
            (a `save_to_disk` DatasetDict with `train_split` and `eval_split` and an image column).
        dataset_path: the save_to_disk folder for "disk".
        image_column: column holding the images (any form `decode_image` reads).
        train_split: split to train on.
        eval_split: held-out split for the L1 comparison (localisation: "test" has unseen items).
        item_source: items of the localisation scenes: "auto", "fashion_mnist" or "digits".
        item_source_path: folder with Fashion-MNIST IDX files.
        localisation: overrides of `LocalisationSceneConfig` fields (seed defaults to the run's seed).
        image_size: images are resized to image_size x image_size RGB.
        block_out_channels: `InpainterUNet` channels per resolution level.
        layers_per_block: resnet blocks per level.
        mid_layers: resnet blocks at the lowest resolution.
        norm_num_groups: GroupNorm groups.
        keep_ratio: range of the training masks' keep ratio (min, max).
        mask_kinds: kinds of training masks, drawn uniformly (see `random_inpainting_masks`).
        eval_mask_seed: seed of the held-out masks, the same for every infiller compared.
        blur_sigma: sigma of the blur infiller in the comparison.
    """

    dataset: str = field(
        default="localisation",
        metadata={"help": "'localisation' (scenes built on the fly) or 'disk' (save_to_disk folder)."},
    )
    dataset_path: str | None = field(default=None, metadata={"help": "save_to_disk folder for 'disk'."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(default="test", metadata={"help": "Held-out split for the L1 comparison."})
    item_source: str = field(
        default="auto", metadata={"help": "Localisation items: 'auto', 'fashion_mnist' or 'digits'."}
    )
    item_source_path: str | None = field(
        default=None, metadata={"help": "Folder with Fashion-MNIST IDX files."}
    )
    localisation: dict = field(
        default_factory=dict,
        metadata={"help": "Overrides of LocalisationSceneConfig fields (seed defaults to `seed`)."},
    )
    image_size: int = field(default=64, metadata={"help": "Side of the square RGB inputs in pixels."})
    block_out_channels: list[int] = field(
        default_factory=lambda: [16, 32, 64, 64], metadata={"help": "InpainterUNet channels per level."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "Resnet blocks per level."})
    mid_layers: int = field(default=2, metadata={"help": "Resnet blocks at the lowest resolution."})
    norm_num_groups: int = field(default=8, metadata={"help": "GroupNorm groups."})
    keep_ratio: list[float] = field(
        default_factory=lambda: [0.1, 0.9], metadata={"help": "Training masks' keep ratio (min, max)."}
    )
    mask_kinds: list[str] = field(
        default_factory=lambda: list(MASK_KINDS),
        metadata={"help": "Training mask kinds: 'blob', 'noise', 'rect' (drawn uniformly)."},
    )
    eval_mask_seed: int = field(default=1234, metadata={"help": "Seed of the held-out masks."})
    blur_sigma: float = field(default=10.0, metadata={"help": "Sigma of the blur infiller compared."})

    def __post_init__(self):
        if self.dataset not in ("localisation", "disk"):
            raise ValueError(f"dataset must be 'localisation' or 'disk', got {self.dataset!r}.")
        if self.dataset == "disk" and not self.dataset_path:
            raise ValueError("dataset='disk' needs dataset_path (a DatasetDict saved with save_to_disk).")
        if len(self.keep_ratio) != 2 or not 0 < self.keep_ratio[0] <= self.keep_ratio[1] < 1:
            raise ValueError(f"keep_ratio must be [min, max] with 0 < min <= max < 1, got {self.keep_ratio}.")
        unknown = set(self.mask_kinds) - set(MASK_KINDS)
        if not self.mask_kinds or unknown:
            raise ValueError(
                f"mask_kinds must be a non-empty subset of {list(MASK_KINDS)}, got {self.mask_kinds}."
            )
