"""Settings of a robust fine-tuning run (masked images as counterfactual samples, arXiv 2303.03052)."""

from dataclasses import dataclass, field

from ..robust.masking import MaskingConfig

VARIANTS = ("zero_shot", "linear_probe", "vanilla_ft", "ft_distill", "masked_cf")


@dataclass
class RobustFtConfig:
    """What a robust fine-tuning recipe starts from, which variant it trains and how it is scored.

    Optimiser settings live in `TrainingConfig` (the paper: AdamW (0.9, 0.999), weight decay 0.1, lr 3e-5,
    one-cycle with 2% warm-up, gradient clip 1, 10 epochs); see recipes/robust_ft/.

    Args:
        base_model: folder (or Hub id) of the pre-trained model: a `CLIPModel` saved with its tokenizer (the
            student is `ClipImageClassifier.from_zero_shot` of it, eager attention) or an image classifier
            (`AutoModelForImageClassification`, with a `classifier` head and the data's classes).
        dataset_path: a `save_to_disk` DatasetDict; None builds `build_background_shift(background_shift)`.
        background_shift: overrides of `BackgroundShiftConfig` fields (seed: the run's, image_size: ours).
        train_split: split trained on; eval_splits: splits scored (None: every other split).
        id_split: split whose accuracy is reported as `id_accuracy`; `ood_accuracy` is the mean over the
            eval splits with "ood" in their name.
        selection_split: held-out split scored every `TrainingConfig.eval_steps` as "<split>_accuracy" (the
            paper selects its model on held-out train images: set that metric as `metric_for_best_model`
            with `load_best_model_at_end`).
        image_column, label_column: columns of the images and the class ids (a `ClassLabel`).
        class_names: names in the CLIP prompts (None: the label names, lower case).
        templates: prompt templates of the CLIP zero-shot head.
        variant: "zero_shot" (no training), "linear_probe" (head only, CE), "vanilla_ft" (CE), "ft_distill"
            (CE + w * MSE of embeddings on clean images) or "masked_cf" (the paper: on masked images).
        masking_strategy, masking_refill, masking_threshold, mask_cell: `MaskingConfig` of "masked_cf"
            (threshold None: the paper's value; cell None: one ViT patch).
        distill_weight: w (the paper: 30).
        wise_alphas: WiSE-FT mixing weights scored after training (theta = (1 - a) theta_zs + a theta_ft).
        image_size: input side (None: the base model's `image_size`).
        image_mean, image_std: normalisation (None: the base model's saved image processor).
    """

    base_model: str | None = field(
        default=None,
        metadata={"help": "Folder / Hub id of a CLIPModel with tokenizer, or of an image classifier."},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "save_to_disk folder (None: build the background-shift benchmark)."}
    )
    background_shift: dict = field(
        default_factory=dict, metadata={"help": "Overrides of BackgroundShiftConfig fields."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to fine-tune on."})
    eval_splits: list[str] | None = field(
        default=None, metadata={"help": "Splits to score (None: every split but train_split)."}
    )
    id_split: str | None = field(
        default="test_id",
        metadata={"help": "Split of id_accuracy (ood_accuracy: mean over splits named *ood*)."},
    )
    selection_split: str = field(
        default="validation",
        metadata={"help": "Held-out split scored every TrainingConfig.eval_steps, for model selection."},
    )
    image_column: str = field(default="image", metadata={"help": "Column of the images."})
    label_column: str = field(default="label", metadata={"help": "Column of the class ids (ClassLabel)."})
    class_names: list[str] | None = field(
        default=None, metadata={"help": "Class names in the prompts (None: label names, lower case)."}
    )
    templates: list[str] = field(
        default_factory=lambda: ["a photo of a {}."], metadata={"help": "Zero-shot prompt templates."}
    )
    variant: str = field(default="masked_cf", metadata={"help": f"One of {', '.join(VARIANTS)}."})
    masking_strategy: str = field(default="object", metadata={"help": "'object', 'context' or 'random'."})
    masking_refill: str = field(default="single", metadata={"help": "'none', 'single' or 'multi'."})
    masking_threshold: float | None = field(
        default=None, metadata={"help": "CAM threshold (random: mask probability); None = paper's value."}
    )
    mask_cell: int | None = field(default=None, metadata={"help": "Mask unit in pixels (None: one patch)."})
    distill_weight: float = field(default=30.0, metadata={"help": "Weight w of the distillation MSE."})
    wise_alphas: list[float] = field(
        default_factory=lambda: [0.5], metadata={"help": "WiSE-FT mixing weights to score."}
    )
    image_size: int | None = field(default=None, metadata={"help": "Input side (None: the model's)."})
    image_mean: list[float] | None = field(
        default=None, metadata={"help": "Normalisation mean (None: the base's image processor)."}
    )
    image_std: list[float] | None = field(
        default=None, metadata={"help": "Normalisation std (None: the base's image processor)."}
    )

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}.")
        if self.base_model is None:
            raise ValueError("set base_model: a CLIPModel folder with its tokenizer, or an image classifier.")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f'every template needs a "{{}}" for the class name, got {self.templates}.')
        if any(not 0 <= a <= 1 for a in self.wise_alphas):
            raise ValueError(f"wise_alphas must lie in [0, 1], got {self.wise_alphas}.")
        self.masking()  # checks strategy, refill, threshold and cell now, not after loading the model

    def masking(self) -> MaskingConfig:
        """The `MaskingConfig` of these settings."""
        return MaskingConfig(
            self.masking_strategy, self.masking_refill, self.masking_threshold, self.mask_cell
        )
