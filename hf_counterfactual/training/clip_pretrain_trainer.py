"""Tiny CLIP contrastive pre-training on the shared loop, scored zero-shot on the background-shift tests.

The model robust fine-tuning starts from: a randomly initialised transformers `CLIPModel` (eager
attention) trained on the (image, caption) pairs of the diverse `pretrain` split of
`build_background_shift`, where every class appears on every seen background. Its tokenizer is built
offline from the captions (a closed vocabulary): a CLIP byte-level BPE whose base symbols are the 256
byte characters (so any text tokenizes) and whose merges are learned on the caption words until each
is one token ("word"), or none at all ("letter").

The run saves to `output_dir` the model (`CLIPModel.from_pretrained`; pass `attn_implementation="eager"`
there for attention weights), the tokenizer (`AutoTokenizer`), the image processor
(`AutoImageProcessor`; both together: `CLIPProcessor`) and metrics.json with zero-shot accuracies.
`ClipZeroShotClassifier.from_pretrained(output_dir, class_names)` gives the zero-shot classifier.
"""

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import datasets
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ..data import ImageClassificationCollator
from ..data.background_shift import BackgroundShiftConfig, build_background_shift, item_name
from ..data.transforms import _ImageBatching
from ..hub import save_metrics_and_card
from ..models.adapters import classifier_logits
from ..models.clip_zero_shot import ClipZeroShotClassifier
from .clip_pretrain_config import TOKENIZER_LEVELS, ClipPretrainConfig
from .config import TrainingConfig
from .loop import make_accelerator, predict, train

logger = logging.getLogger(__name__)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_caption_tokenizer(
    texts: list[str], level: str = "word", model_max_length: int = 32
) -> CLIPTokenizer:
    """A `CLIPTokenizer` for a closed vocabulary, built offline.

    Base symbols are the 256 byte-level characters, each also with CLIP's end-of-word "</w>", so every
    text tokenizes without unknown tokens. With level="word", BPE merges are learned on the words of
    `texts` (as CLIP's normaliser and pre-tokeniser split them) until each word is a single token:
    the most frequent pair first, ties broken by the pair's text, so the same texts give the same
    tokenizer. With level="letter" there are no merges (one token per character).
    """
    if level not in TOKENIZER_LEVELS:
        raise ValueError(f"level must be one of {', '.join(TOKENIZER_LEVELS)}, got {level!r}.")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {BOS: 0, EOS: 1}
    for symbol in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab[symbol] = len(vocab)
    merges = []
    if level == "word":
        backend = CLIPTokenizer(vocab=dict(vocab)).backend_tokenizer
        counts = Counter(
            word
            for text in texts
            for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
        )
        words = {(*w[:-1], w[-1] + "</w>"): n for w, n in counts.items()}
        while True:
            pairs = Counter()
            for symbols, n in words.items():
                for pair in zip(symbols, symbols[1:], strict=False):
                    pairs[pair] += n
            if not pairs:
                break
            best = min(pairs, key=lambda p: (-pairs[p], p))
            merged = best[0] + best[1]
            merges.append(best)
            vocab.setdefault(merged, len(vocab))
            new_words = {}
            for symbols, n in words.items():
                out, i = [], 0
                while i < len(symbols):
                    if symbols[i : i + 2] == best:
                        out.append(merged)
                        i += 2
                    else:
                        out.append(symbols[i])
                        i += 1
                new_words[tuple(out)] = n
            words = new_words
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_tiny_clip(cfg: ClipPretrainConfig, tokenizer) -> CLIPModel:
    """A randomly initialised `CLIPModel` of `cfg`'s sizes over `tokenizer`'s vocabulary, eager attention."""
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_text_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
    )
    config = CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=cfg.projection_dim,
        logit_scale_init_value=cfg.logit_scale_init_value,
        attn_implementation="eager",
    )
    return CLIPModel(config)


@dataclass
class ClipCaptionCollator(_ImageBatching):
    """Rows with an image and a caption as CLIP inputs: `pixel_values`, `input_ids`, `attention_mask`.

    Images as `ImageClassificationCollator` (undecodable rows skipped and counted); captions padded to
    the longest of the batch and truncated to the tokenizer's `model_max_length`.
    """

    tokenizer: CLIPTokenizer
    image_size: int
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    convert_rgb: bool = True
    image_column: str = "image"
    caption_column: str = "caption"
    skipped: int = field(default=0, init=False)

    def _caption(self, example: dict, index: int) -> str:
        caption = example[self.caption_column]
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"Sample {index} has caption {caption!r}; a caption must be a non-empty string.")
        return caption

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values, captions = self._collate(examples, self._caption)
        tokens = self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
        return {
            "pixel_values": pixel_values,
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
        }


def clip_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Step function: `CLIPModel`'s symmetric contrastive loss (`return_loss=True`), and the learned scale.

    Identical captions in a batch need no special care: their text embeddings are identical, so the
    summed loss is the same as with each one's images as shared positives.
    """
    loss = model(**batch, return_loss=True).loss
    scale = (model.module if hasattr(model, "module") else model).logit_scale.exp().item()
    return loss, {"loss": loss.item(), "logit_scale": scale}


def clip_image_processor(collator: _ImageBatching) -> CLIPImageProcessorPil:
    """The CLIP image processor that prepares images as `collator` does (bilinear resize to a square)."""
    size = collator.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        resample=PIL.Image.Resampling.BILINEAR,
        image_mean=list(collator.image_mean),
        image_std=list(collator.image_std),
    )


def zero_shot_accuracy(
    classifier: ClipZeroShotClassifier,
    dataset: datasets.Dataset,
    collator: ImageClassificationCollator,
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
) -> float:
    """Top-1 accuracy of `classifier` on `dataset` (its `label` column indexes the classifier's classes)."""
    logits, labels = predict(
        classifier,
        dataset,
        collator,
        lambda m, b: classifier_logits(m, b["pixel_values"]),
        batch_size,
        accelerator,
        desc="zero-shot",
    )
    return float((logits.argmax(-1) == labels).mean()) if len(labels) else float("nan")


def load_clip_pretrain_data(cfg: ClipPretrainConfig, seed: int = 0) -> datasets.DatasetDict:
    """The background-shift benchmark of `cfg` (from `dataset_path`, or built), with its splits checked."""
    if cfg.dataset_path is not None:
        data = datasets.load_from_disk(cfg.dataset_path)
    else:
        shift = BackgroundShiftConfig(**{"seed": seed, "image_size": cfg.image_size, **cfg.background_shift})
        data = build_background_shift(shift)
    missing = {cfg.train_split, *cfg.eval_splits} - set(data)
    if missing:
        raise ValueError(f"the dataset has splits {sorted(data)}; missing {sorted(missing)}.")
    columns = set(data[cfg.train_split].column_names)
    if not {"image", "caption", "label"} <= columns:
        raise ValueError(
            f"split {cfg.train_split!r} needs image, caption and label columns; has {sorted(columns)}."
        )
    return data


def run_clip_pretrain(
    train_cfg: TrainingConfig, cfg: ClipPretrainConfig, data: datasets.DatasetDict | None = None
) -> dict:
    """Pre-train a tiny CLIP on captions, save model + tokenizer + image processor, score it zero-shot.

    `data` (with `cfg.train_split` of image / caption / label and `cfg.eval_splits`) replaces the
    benchmark `cfg` describes. Returns (and writes to metrics.json) the train time, the first loss and
    the mean of the last 20, and `zero_shot_accuracy` per eval split.
    """
    accelerator = make_accelerator(train_cfg)
    if data is None:
        data = load_clip_pretrain_data(cfg, seed=train_cfg.seed)
    train_split = data[cfg.train_split]
    names = train_split.features["label"].names
    class_names = [item_name(n) for n in names]
    if cfg.tokenizer in TOKENIZER_LEVELS:
        texts = sorted(set(train_split["caption"])) + [
            t.format(c) for t in cfg.templates for c in class_names
        ]
        tokenizer = build_caption_tokenizer(texts, cfg.tokenizer, cfg.max_text_length)
    else:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer, model_max_length=cfg.max_text_length)
    mean, std = tuple(cfg.image_mean), tuple(cfg.image_std)
    collator = ClipCaptionCollator(tokenizer, cfg.image_size, mean, std)
    set_seed(train_cfg.seed)  # the same initial weights in every run and process
    model = build_tiny_clip(cfg, tokenizer)
    losses = []

    def logged_step(model, batch):
        loss, logs = clip_step(model, batch)
        losses.append(logs["loss"])
        return loss, logs

    start = time.perf_counter()
    model = train(
        train_cfg, model, train_split.select_columns(["image", "caption"]), collator, logged_step, accelerator
    )
    results = {
        "train_seconds": time.perf_counter() - start,
        "train_images": len(train_split),
        "train_batches": len(losses),  # micro-batches this process ran (after a resume: since it)
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "first_loss": losses[0] if losses else float("nan"),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else float("nan"),
        "zero_shot_accuracy": {},
    }
    if accelerator.is_main_process:
        tokenizer.save_pretrained(train_cfg.output_dir)
        clip_image_processor(collator).save_pretrained(train_cfg.output_dir)
    model.eval()
    classifier = ClipZeroShotClassifier.from_clip(model, tokenizer, class_names, tuple(cfg.templates))
    images = ImageClassificationCollator(len(names), cfg.image_size, mean, std)
    for split in cfg.eval_splits:
        results["zero_shot_accuracy"][split] = zero_shot_accuracy(
            classifier, data[split], images, train_cfg.eval_batch_size, accelerator
        )
    if collator.skipped or images.skipped:
        results["skipped_samples"] = collator.skipped + images.skipped
    if accelerator.is_main_process:
        logger.info("CLIP pre-training: %s", results)
        save_metrics_and_card(
            train_cfg.output_dir,
            "classifier",
            results,
            dataset="background shift",
            training_config={**asdict(train_cfg), **asdict(cfg)},
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
