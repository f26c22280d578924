"""Settings of a tiny CLIP pre-training run: caption data, tower sizes, tokenizer, zero-shot evaluation."""

from dataclasses import dataclass, field

from ..data.background_shift import SPLITS

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
TOKENIZER_LEVELS = ("word", "letter")


@dataclass
class ClipPretrainConfig:
    """What the tiny CLIP (Radford et al., arXiv 2103.00020) is pre-trained on, how big it is, how it is scored.

    The model is a randomly initialised transformers `CLIPModel` with eager attention (CAMs need the
    attention weights). The defaults are the quick CPU setting of recipes/robust_ft/clip_pretrain_small.yaml
    (0.23M parameters; patch 4 costs ~3.5x per step and learned less in the same time). Optimiser
    settings live in `TrainingConfig`.

    Args:
        dataset_path: a `save_to_disk` folder of `build_background_shift` (None: build it from
            `background_shift`).
        background_shift: overrides of `BackgroundShiftConfig` fields (seed defaults to the run's seed,
            image_size to `image_size`).
        train_split: split of (image, caption) pairs to pre-train on.
        eval_splits: splits scored zero-shot (top-1 accuracy over the class names).
        image_size: side of the square RGB inputs; a multiple of `patch_size`.
        patch_size: ViT patch side in pixels.
        vision_hidden_size, vision_layers, vision_heads, vision_intermediate_size: vision tower.
        text_hidden_size, text_layers, text_heads, text_intermediate_size: text tower.
        projection_dim: size of the joint embedding.
        max_text_length: longest caption in tokens (the text tower's positions).
        tokenizer: "word" (a CLIP BPE whose merges make every caption word one token), "letter" (no
            merges: one token per character), or a folder / Hub id of a CLIP tokenizer.
        logit_scale_init_value: initial log temperature (CLIP: log(1 / 0.07)).
        templates: prompt templates of the zero-shot head.
        image_mean, image_std: normalisation (CLIP's by default).
    """

    dataset_path: str | None = field(
        default=None, metadata={"help": "save_to_disk folder of build_background_shift (None: build it)."}
    )
    background_shift: dict = field(
        default_factory=dict,
        metadata={"help": "Overrides of BackgroundShiftConfig fields (seed: the run's, image_size: ours)."},
    )
    train_split: str = field(default="pretrain", metadata={"help": "Split of (image, caption) pairs."})
    eval_splits: list[str] = field(
        default_factory=lambda: ["test_id", "test_ood_shuffled", "test_ood_unseen"],
        metadata={"help": "Splits scored zero-shot."},
    )
    image_size: int = field(default=32, metadata={"help": "Input side in pixels (multiple of patch_size)."})
    patch_size: int = field(default=8, metadata={"help": "ViT patch side in pixels."})
    vision_hidden_size: int = field(default=64, metadata={"help": "Vision tower width."})
    vision_layers: int = field(default=3, metadata={"help": "Vision tower blocks."})
    vision_heads: int = field(default=4, metadata={"help": "Vision tower attention heads."})
    vision_intermediate_size: int = field(default=128, metadata={"help": "Vision tower MLP width."})
    text_hidden_size: int = field(default=64, metadata={"help": "Text tower width."})
    text_layers: int = field(default=2, metadata={"help": "Text tower blocks."})
    text_heads: int = field(default=2, metadata={"help": "Text tower attention heads."})
    text_intermediate_size: int = field(default=128, metadata={"help": "Text tower MLP width."})
    projection_dim: int = field(default=64, metadata={"help": "Joint embedding size."})
    max_text_length: int = field(default=32, metadata={"help": "Longest caption in tokens."})
    tokenizer: str = field(
        default="word",
        metadata={
            "help": "'word', 'letter' (built from the captions, offline) or a CLIP tokenizer folder / id."
        },
    )
    logit_scale_init_value: float = field(default=2.6592, metadata={"help": "Initial log temperature."})
    templates: list[str] = field(
        default_factory=lambda: ["a photo of a {}."], metadata={"help": "Zero-shot prompt templates."}
    )
    image_mean: list[float] = field(
        default_factory=lambda: list(OPENAI_CLIP_MEAN), metadata={"help": "Mean."}
    )
    image_std: list[float] = field(default_factory=lambda: list(OPENAI_CLIP_STD), metadata={"help": "Std."})

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}."
            )
        if self.vision_hidden_size % self.vision_heads or self.text_hidden_size % self.text_heads:
            raise ValueError("vision / text hidden sizes must be multiples of their numbers of heads.")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f'every template needs a "{{}}" for the class name, got {self.templates}.')
        unknown = set(self.eval_splits) - set(SPLITS)
        if self.dataset_path is None and unknown:
            raise ValueError(f"unknown eval_splits {sorted(unknown)}; the benchmark has {', '.join(SPLITS)}.")
