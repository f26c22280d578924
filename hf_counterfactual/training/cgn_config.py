"""Settings of a CGN run (arXiv 2101.06046): benchmark data, network sizes, loss weights, evaluation."""

from dataclasses import dataclass, field

from ..data.cgn_variants import CGN_VARIANTS


@dataclass
class CgnTrainConfig:
    """What the MNIST-scale CGN is trained on, how big it is and how its losses are weighted.

    Optimiser settings (Adam 2e-4, betas (0.5, 0.999), batch 16 in the paper) live in `TrainingConfig`
    (`learning_rate`, `adam_beta1`, `adam_beta2`, `batch_size`); see recipes/cgn/.

    Args:
        variant: CGN benchmark to learn: "colored", "double_colored" or "wildlife".
        item_source: items (shapes) of the benchmark: "auto", "fashion_mnist" or "digits".
        item_source_path: folder with Fashion-MNIST IDX files.
        num_train: real training images built with `build_cgn_variant` (class-tied colours / textures).
        image_size: side of the images; a multiple of 4.
        latent_dim: size of the noise u of each mechanism.
        ngf: generator width.
        disc_type: "mlp" (the authors' colored-MNIST discriminator) or "conv" (three strided convs).
        disc_conditioning: "projection" or "concat" (the authors'): how the MLP discriminator sees the class.
        disc_hidden: width of the MLP discriminator.
        disc_dropout: dropout of the MLP discriminator.
        disc_channels: base channels of the conv discriminator.
        lambda_adv: weight of the generator's LSGAN term.
        lambda_binary: weight of L_binary, the mask's binary entropy.
        lambda_mask: weight of L_mask, the mask-size hinge max(0, 0.1 - mean m) + max(0, mean m - 0.9).
        transfer_eval_images, transfer_per_image, transfer_epochs: the evaluation every
            `TrainingConfig.eval_steps` (`counterfactual_transfer_accuracy`, metric "transfer_accuracy":
            set it as `metric_for_best_model` with `load_best_model_at_end` to keep the best generator).
        eval_samples: generated samples (random, independent mechanism classes) for the mask statistics.
        eval_seed: seed of those samples.
    """

    variant: str = field(default="colored", metadata={"help": f"One of {', '.join(CGN_VARIANTS)}."})
    item_source: str = field(
        default="auto", metadata={"help": "Benchmark items: 'auto', 'fashion_mnist' or 'digits'."}
    )
    item_source_path: str | None = field(
        default=None, metadata={"help": "Folder with Fashion-MNIST IDX files."}
    )
    num_train: int = field(default=10000, metadata={"help": "Real training images."})
    image_size: int = field(default=32, metadata={"help": "Side of the images (multiple of 4)."})
    latent_dim: int = field(default=32, metadata={"help": "Noise size of each mechanism."})
    ngf: int = field(default=32, metadata={"help": "Generator width."})
    disc_type: str = field(default="mlp", metadata={"help": "'mlp' or 'conv' discriminator."})
    disc_conditioning: str = field(
        default="projection",
        metadata={"help": "MLP discriminator conditioning: 'projection' or 'concat' (the authors')."},
    )
    disc_hidden: int = field(default=512, metadata={"help": "Width of the MLP discriminator."})
    disc_dropout: float = field(default=0.4, metadata={"help": "Dropout of the MLP discriminator."})
    disc_spectral_norm: bool = field(
        default=True,
        metadata={"help": "Spectral normalisation of the discriminator's layers (conv: else BatchNorm)."},
    )
    disc_channels: int = field(default=32, metadata={"help": "Base channels of the conv discriminator."})
    lambda_adv: float = field(default=1.0, metadata={"help": "Weight of the generator's LSGAN loss."})
    lambda_binary: float = field(default=1.0, metadata={"help": "Weight of L_binary (mask entropy)."})
    lambda_mask: float = field(default=1.0, metadata={"help": "Weight of L_mask (mask size hinge)."})
    lambda_border: float = field(
        default=0.0,
        metadata={
            "help": "Weight of L_border (mask mean on the image frame; a centred-object prior, 0 = off)."
        },
    )
    border_width: int = field(default=2, metadata={"help": "Frame width in pixels for L_border."})
    random_fake_labels: bool = field(
        default=True,
        metadata={
            "help": "Condition fakes on uniformly drawn classes (the authors' y_gen) instead of the batch's."
        },
    )
    lambda_style: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the Gram (style) loss of fakes vs the real batch on RandomConvFeatures (0 = off)."
        },
    )
    lambda_mode_seeking: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the mode-seeking loss (MSGAN) on the masks of same-class fake pairs: "
            "against one shape per class (0 = off)."
        },
    )
    style_seed: int = field(default=0, metadata={"help": "Seed of the random conv feature network."})
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "Keep an exponential moving average of the generator's weights with this decay per step "
            "and save it as the trained generator (0 = off, save the last weights)."
        },
    )
    transfer_eval_images: int = field(
        default=5000,
        metadata={
            "help": "With TrainingConfig.eval_steps: real training images whose labels the counterfactuals of "
            "the transfer evaluation take and on which its classifier is scored."
        },
    )
    transfer_per_image: int = field(
        default=2, metadata={"help": "Counterfactuals per real image in the transfer evaluation."}
    )
    transfer_epochs: int = field(
        default=3, metadata={"help": "Epochs of the transfer evaluation's classifier."}
    )
    mask_encoder_steps: int = field(
        default=0,
        metadata={
            "help": "After training, fit a CGNMaskEncoder to the CGN's own compositions for this many batches of "
            "64 and save it to output_dir/mask_encoder (not in the paper; 0 = none). It finds the masks of real "
            "images, so their counterfactuals keep their shapes: `hf-counterfactual generate --images`."
        },
    )
    eval_samples: int = field(default=256, metadata={"help": "Generated samples for the mask statistics."})
    eval_seed: int = field(default=0, metadata={"help": "Seed of the evaluation samples."})

    def __post_init__(self):
        if self.variant not in CGN_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(CGN_VARIANTS)}, got {self.variant!r}.")
        if self.num_train < 1:
            raise ValueError(f"num_train must be >= 1, got {self.num_train}.")
        if self.border_width < 1 or 2 * self.border_width >= self.image_size:
            raise ValueError(f"border_width must be in [1, {self.image_size // 2}), got {self.border_width}.")
        if min(self.transfer_eval_images, self.transfer_per_image, self.transfer_epochs) < 1:
            raise ValueError(
                "transfer_eval_images, transfer_per_image and transfer_epochs must be >= 1, got "
                f"{self.transfer_eval_images}, {self.transfer_per_image}, {self.transfer_epochs}."
            )
        if self.mask_encoder_steps < 0:
            raise ValueError(
                f"mask_encoder_steps must be >= 0 (0 = no encoder), got {self.mask_encoder_steps}."
            )
        if self.eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1, got {self.eval_samples}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        weights = (
            "lambda_adv",
            "lambda_binary",
            "lambda_mask",
            "lambda_style",
            "lambda_border",
            "lambda_mode_seeking",
        )
        negative = {name: getattr(self, name) for name in weights if getattr(self, name) < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}.")
