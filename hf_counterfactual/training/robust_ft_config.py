"""Settings of a robust fine-tuning run (masked images as counterfactual samples, arXiv 2303.03052)."""

from dataclasses import dataclass, field, fields

from ..data.imagenet import check_class_groups_spec
from ..robust.masking import MaskingConfig

VARIANTS = ("zero_shot", "linear_probe", "vanilla_ft", "ft_distill", "masked_cf")
CLASS_SETS = ("imagenet",)


@dataclass
class EvalDataset:
    """An extra evaluation set, loaded with `datasets.load_dataset(path, name, split=split)`.

    Args:
        path: Hub id or local folder (e.g. "clip-benchmark/wds_imagenet-r").
        name: the dataset's configuration, if it has several.
        split: the split scored.
        image_column, label_column: columns of the images and of the class ids (ints, in the set's order).
        class_groups: None when the set's class ids are the model's; else "imagenet_r" / "imagenet_a" or a
            JSON file of model class ids per class of the set (see `hf_counterfactual.data.imagenet`).
        ood: counts into `ood_accuracy`.
    """

    path: str
    name: str | None = None
    split: str = "test"
    image_column: str = "image"
    label_column: str = "label"
    class_groups: str | None = None
    ood: bool = True

    def __post_init__(self):
        if self.class_groups is not None:
            check_class_groups_spec(self.class_groups)


@dataclass
class RobustFtConfig:
    """What a robust fine-tuning recipe starts from, which variant it trains and how it is scored.

    Optimiser settings live in `TrainingConfig` (the paper: AdamW (0.9, 0.999), weight decay 0.1, lr 3e-5,
    one-cycle with 2% warm-up, gradient clip 1, 10 epochs); see recipes/robust_ft/.

    Args:
        base_model: folder (or Hub id) of the pre-trained model: a `CLIPModel` saved with its tokenizer (the
            student is `ClipImageClassifier.from_zero_shot` of it, eager attention) or an image classifier
            (`AutoModelForImageClassification`, with a `classifier` head and the data's classes).
        dataset_path: a `save_to_disk` DatasetDict; dataset_name: a Hub id or folder for `datasets.load_dataset`
            (e.g. "ILSVRC/imagenet-1k"); neither builds `build_background_shift(background_shift)`.
        background_shift: overrides of `BackgroundShiftConfig` fields (seed: the run's, image_size: ours).
        train_split: split trained on; eval_splits: splits scored (None: every other split).
        eval_datasets: extra evaluation sets by name, each the fields of `EvalDataset` (ImageNet-V2, -R,
            -Sketch, -A, ObjectNet: other datasets, some with a subset of the classes).
        id_split: split whose accuracy is reported as `id_accuracy`; `ood_accuracy` is the mean over the
            eval splits with "ood" in their name and the eval datasets with `ood` set.
        selection_split: held-out split scored every `TrainingConfig.eval_steps` as "<split>_accuracy" (the
            paper selects its model on held-out train images: set that metric as `metric_for_best_model`
            with `load_best_model_at_end`).
        selection_size: when the data has no `selection_split`, this many train images (drawn with the run's
            seed) are held out as it.
        image_column, label_column: columns of the images and the class ids (a `ClassLabel`, or ints when
            class_names or class_set name the classes).
        class_set: "imagenet": CLIP's 1000 ImageNet class names and 80 templates, unless set below.
        class_names: names in the CLIP prompts (None: the class set's, else the label names, lower case).
        templates: prompt templates of the CLIP zero-shot head (None: the class set's, else "a photo of a {}.").
        variant: "zero_shot" (no training), "linear_probe" (head only, CE), "vanilla_ft" (CE), "ft_distill"
            (CE + w * MSE of embeddings on clean images) or "masked_cf" (the paper: on masked images).
        masking_strategy, masking_refill, masking_threshold, mask_cell: `MaskingConfig` of "masked_cf"
            (threshold None: the paper's value; cell None: one ViT patch).
        distill_weight: w (the paper: 30).
        wise_alphas: WiSE-FT mixing weights scored after training (theta = (1 - a) theta_zs + a theta_ft).
        image_size: input side (None: the base model's `image_size`).
        image_mean, image_std: normalisation (None: the base model's saved image processor).
        center_crop: resize the short side to image_size and crop the centre (CLIP's preprocessing), instead
            of resizing to a square.
    """

    base_model: str | None = field(
        default=None,
        metadata={"help": "Folder / Hub id of a CLIPModel with tokenizer, or of an image classifier."},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "save_to_disk folder (None: build the background-shift benchmark)."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id or folder for datasets.load_dataset, e.g. ILSVRC/imagenet-1k."},
    )
    background_shift: dict = field(
        default_factory=dict, metadata={"help": "Overrides of BackgroundShiftConfig fields."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to fine-tune on."})
    eval_splits: list[str] | None = field(
        default=None, metadata={"help": "Splits to score (None: every split but train_split)."}
    )
    eval_datasets: dict[str, dict] = field(
        default_factory=dict, metadata={"help": "Extra evaluation sets: name -> EvalDataset fields."}
    )
    id_split: str | None = field(
        default="test_id",
        metadata={"help": "Split of id_accuracy (ood_accuracy: mean over splits named *ood*)."},
    )
    selection_split: str = field(
        default="validation",
        metadata={"help": "Held-out split scored every TrainingConfig.eval_steps, for model selection."},
    )
    selection_size: int = field(
        default=0, metadata={"help": "Train images held out as selection_split when the data has none."}
    )
    image_column: str = field(default="image", metadata={"help": "Column of the images."})
    label_column: str = field(
        default="label", metadata={"help": "Column of the class ids (ClassLabel, or ints with class_names)."}
    )
    class_set: str | None = field(
        default=None, metadata={"help": "'imagenet': CLIP's ImageNet class names and prompt templates."}
    )
    class_names: list[str] | None = field(
        default=None, metadata={"help": "Class names in the prompts (None: class_set's, else label names)."}
    )
    templates: list[str] | None = field(
        default=None,
        metadata={"help": "Zero-shot prompt templates (None: class_set's, else 'a photo of a {}.')."},
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
    center_crop: bool = field(
        default=False,
        metadata={"help": "Resize the short side and crop the centre, as CLIP's preprocessing."},
    )

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}.")
        if self.base_model is None:
            raise ValueError("set base_model: a CLIPModel folder with its tokenizer, or an image classifier.")
        if self.dataset_path is not None and self.dataset_name is not None:
            raise ValueError(
                "set dataset_path (a save_to_disk folder) or dataset_name (load_dataset), not both."
            )
        if self.class_set is not None and self.class_set not in CLASS_SETS:
            raise ValueError(f"class_set must be one of {', '.join(CLASS_SETS)}, got {self.class_set!r}.")
        if self.selection_size < 0:
            raise ValueError(f"selection_size must be >= 0, got {self.selection_size}.")
        keys = {f.name for f in fields(EvalDataset)}
        for name, spec in self.eval_datasets.items():
            unknown = set(spec) - keys
            if unknown or "path" not in spec:
                raise ValueError(
                    f"eval_datasets[{name!r}] needs a path and takes {sorted(keys)}; got {sorted(spec)}."
                )
            EvalDataset(**spec)
        if self.templates is not None and (not self.templates or any("{}" not in t for t in self.templates)):
            raise ValueError(f'every template needs a "{{}}" for the class name, got {self.templates}.')
        if any(not 0 <= a <= 1 for a in self.wise_alphas):
            raise ValueError(f"wise_alphas must lie in [0, 1], got {self.wise_alphas}.")
        self.masking()  # checks strategy, refill, threshold and cell now, not after loading the model

    def masking(self) -> MaskingConfig:
        """The `MaskingConfig` of these settings."""
        return MaskingConfig(
            self.masking_strategy, self.masking_refill, self.masking_threshold, self.mask_cell
        )
