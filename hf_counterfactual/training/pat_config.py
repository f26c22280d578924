"""Settings of a PAT run: data, backbone, PAT variant and evaluation (the training loop's are separate)."""

from dataclasses import dataclass, field

TINY_RESNET = {
    "model_type": "resnet",
    "embedding_size": 16,
    "hidden_sizes": [16, 32, 64, 128],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
}


@dataclass
class PatTrainConfig:
    """What a PAT recipe trains on and how it is evaluated."""

    variant: str = field(
        default="pat_t",
        metadata={
            "help": "'pat_t' (PatForMultiLabelClassification) or 'plain' (AutoModelForImageClassification, "
            "evaluated with and without PAT-I)."
        },
    )
    dataset: str = field(
        default="mosaics",
        metadata={
            "help": "'mosaics' (built on the fly), 'disk' (save_to_disk folder with train/validation/test), "
            "'coco' or 'voc'."
        },
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Folder for 'disk', VOC root for 'voc'."}
    )
    train_annotations: str | None = field(
        default=None, metadata={"help": "COCO instances json of the train split."}
    )
    train_images: str | None = field(default=None, metadata={"help": "COCO train image folder."})
    test_annotations: str | None = field(
        default=None, metadata={"help": "COCO instances json of the test split."}
    )
    test_images: str | None = field(default=None, metadata={"help": "COCO test image folder."})
    validation_fraction: float = field(
        default=0.05, metadata={"help": "Share of train held out to calibrate thresholds (coco / voc)."}
    )
    item_source: str = field(
        default="auto", metadata={"help": "Mosaic items: 'auto', 'fashion_mnist' or 'digits'."}
    )
    item_source_path: str | None = field(
        default=None, metadata={"help": "Folder with Fashion-MNIST IDX files."}
    )
    mosaic: dict = field(
        default_factory=dict,
        metadata={"help": "Overrides of CooccurrenceMosaicConfig fields (seed defaults to `seed`)."},
    )
    image_size: int = field(default=64, metadata={"help": "Input side in pixels (the paper: 448)."})
    image_mean: list[float] = field(
        default_factory=lambda: [0.5, 0.5, 0.5], metadata={"help": "Normalisation mean."}
    )
    image_std: list[float] = field(
        default_factory=lambda: [0.5, 0.5, 0.5], metadata={"help": "Normalisation std."}
    )
    backbone: str | None = field(
        default=None,
        metadata={"help": "Hub id or folder of pretrained backbone weights (overrides backbone_config)."},
    )
    backbone_config: dict = field(
        default_factory=lambda: dict(TINY_RESNET),
        metadata={"help": "Backbone config dict with a 'model_type'."},
    )
    grid_size: int = field(default=2, metadata={"help": "Patches per side (g)."})
    zoom_crop: float = field(
        default=0.0,
        metadata={
            "help": "Probability of a zoom-crop per training image (MultiLabelZoomCrop: labels follow the item "
            "boxes; needs `boxes` / `item_labels` columns, as the mosaics have). 0 = off."
        },
    )
    zoom_crop_scale: list[float] = field(
        default_factory=lambda: [0.5, 1.0],
        metadata={"help": "Crop side range, as a share of the image side."},
    )
    loss: str = field(default="asl", metadata={"help": "'asl' or 'bce', for both variants."})
    asl_gamma_neg: float = field(default=4.0, metadata={"help": "ASL gamma for negatives."})
    asl_gamma_pos: float = field(default=0.0, metadata={"help": "ASL gamma for positives."})
    asl_clip: float = field(default=0.05, metadata={"help": "ASL probability margin."})
    recall: float = field(
        default=0.9, metadata={"help": "Recall the per-class thresholds are calibrated to."}
    )
    eval_pairs: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "[i, j] pairs for CFPR(i|j); default: the mosaics' biased pairs, or the top "
            "co-occurring pairs of the train labels."
        },
    )
    num_eval_pairs: int = field(
        default=10, metadata={"help": "How many top co-occurring pairs when eval_pairs is unset."}
    )

    def __post_init__(self):
        if self.variant not in ("pat_t", "plain"):
            raise ValueError(f"variant must be 'pat_t' or 'plain', got {self.variant!r}.")
        if self.dataset not in ("mosaics", "disk", "coco", "voc"):
            raise ValueError(f"dataset must be 'mosaics', 'disk', 'coco' or 'voc', got {self.dataset!r}.")
        if not 0 <= self.zoom_crop <= 1:
            raise ValueError(f"zoom_crop is a probability in [0, 1], got {self.zoom_crop}.")
        if self.image_size % self.grid_size:
            raise ValueError(f"image_size {self.image_size} must be divisible by grid_size {self.grid_size}.")
