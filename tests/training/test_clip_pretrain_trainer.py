"""Tiny CLIP contrastive pre-training (Radford et al., arXiv 2103.00020) on the background-shift captions."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from hf_counterfactual.data import ImageClassificationCollator, load_digits_dataset
from hf_counterfactual.data.background_shift import BackgroundShiftConfig, build_background_shift
from hf_counterfactual.models.clip_zero_shot import ClipZeroShotClassifier
from hf_counterfactual.training.clip_pretrain_config import ClipPretrainConfig
from hf_counterfactual.training.clip_pretrain_trainer import (
    ClipCaptionCollator,
    build_caption_tokenizer,
    build_tiny_clip,
    clip_image_processor,
    clip_step,
    load_clip_pretrain_data,
    zero_shot_accuracy,
)
from hf_counterfactual.training.recipes import load_recipe, run_recipe

RECIPE = os.path.join(os.path.dirname(__file__), "../../recipes", "robust_ft", "clip_pretrain_small.yaml")
TINY = dict(image_size=16, patch_size=8, vision_hidden_size=16, vision_layers=1, vision_heads=2,
            vision_intermediate_size=32, text_hidden_size=16, text_layers=1, text_heads=2,
            text_intermediate_size=32, projection_dim=8)  # fmt: skip
TEXTS = ["a photo of a bag on a plaid background.", "a photo of a t-shirt/top.", "a photo of a 3."]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Models this small run fastest on one thread (on a busy 2-core machine, 100x faster than on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    shift = BackgroundShiftConfig(image_size=16, num_pretrain=48, num_train=8, num_validation=8, num_test=16,
                                  background_in_caption=0.5)  # fmt: skip
    return build_background_shift(shift, load_digits_dataset())


def test_word_tokenizer_makes_each_caption_word_one_token_and_reads_any_text(tmp_path):
    tokenizer = build_caption_tokenizer(TEXTS, "word", model_max_length=24)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(TEXTS[0])["input_ids"])
    assert tokens == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "bag</w>", "on</w>", "a</w>",
                      "plaid</w>", "background</w>", ".</w>", "<|endoftext|>"]  # fmt: skip
    assert len(tokenizer(TEXTS[1])["input_ids"]) == 2 + 10  # a photo of a t - shirt / top .
    unseen = tokenizer("A Zebra, café!")["input_ids"]  # unknown words fall back to bytes, never to unk
    assert tokenizer.unk_token_id not in unseen[1:-1] and len(unseen) > 6
    again = build_caption_tokenizer(list(reversed(TEXTS)), "word", model_max_length=24)
    assert again.get_vocab() == tokenizer.get_vocab()  # the same texts give the same tokenizer
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "CLIPTokenizer" and reloaded.model_max_length == 24
    assert reloaded(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]


def test_letter_tokenizer_has_one_token_per_character():
    tokenizer = build_caption_tokenizer(TEXTS, "letter")
    assert len(tokenizer("a bag.")["input_ids"]) == 2 + 5
    assert len(tokenizer) == 2 + 2 * 256
    with pytest.raises(ValueError, match="level must be one of word, letter"):
        build_caption_tokenizer(TEXTS, "sentencepiece")


def test_tiny_clip_has_eager_attention_and_the_tokenizers_special_ids():
    tokenizer = build_caption_tokenizer(TEXTS)
    model = build_tiny_clip(ClipPretrainConfig(**TINY), tokenizer)
    assert model.config._attn_implementation == "eager"
    assert model.vision_model.config._attn_implementation == "eager"
    text = model.config.text_config
    assert text.vocab_size == len(tokenizer)
    assert text.eos_token_id == text.pad_token_id == tokenizer.eos_token_id  # CLIP pads with its EOS
    out = model.vision_model(pixel_values=torch.rand(1, 3, 16, 16), output_attentions=True)
    assert len(out.attentions) == 1 and out.attentions[0].shape == (1, 2, 5, 5)  # CLS + 2x2 patches


def test_collator_batches_images_and_padded_captions(data):
    tokenizer = build_caption_tokenizer(data["pretrain"]["caption"])
    collator = ClipCaptionCollator(tokenizer, 16)
    rows = [data["pretrain"][i] for i in range(4)]
    batch = collator(rows)
    assert batch["pixel_values"].shape == (4, 3, 16, 16)
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape == (4, int(lengths.max()))
    for ids, n, row in zip(batch["input_ids"], lengths, rows, strict=True):
        assert ids[:n].tolist() == tokenizer(row["caption"])["input_ids"]
        assert (ids[n:] == tokenizer.pad_token_id).all()
    with pytest.raises(ValueError, match="caption must be a non-empty string"):
        collator([{**rows[0], "caption": " "}])


def test_contrastive_loss_falls_when_fitting_one_batch(data):
    """`clip_step` is CLIPModel's symmetric cross-entropy; a few AdamW steps on one batch lower it."""
    tokenizer = build_caption_tokenizer(data["pretrain"]["caption"])
    torch.manual_seed(0)
    model = build_tiny_clip(ClipPretrainConfig(**TINY), tokenizer)
    batch = ClipCaptionCollator(tokenizer, 16)([data["pretrain"][i] for i in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, logs = clip_step(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert logs["logit_scale"] > 0 and np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]
    out = model(**batch)  # by hand: CE both ways with the diagonal as targets
    logits = out.logits_per_image.detach()
    target = torch.arange(8)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(clip_step(model, batch)[0].detach(), expected)


def test_image_processor_prepares_images_as_the_collator(data):
    collator = ImageClassificationCollator(10, 16, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    processor = clip_image_processor(collator)
    for image in (data["test_id"][0]["image"], data["test_id"][1]["image"].resize((24, 24))):
        expected = collator([{"image": image, "label": 0}])["pixel_values"]
        got = processor(image, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(got, expected, atol=2 / 255 / 0.2, rtol=0)


def test_recipe_runs_saves_and_reloads_to_the_same_zero_shot_scores(tmp_path):
    """The recipe's code path on digits at tiny sizes: data built, trained, saved, reloaded, scored again."""
    out = tmp_path / "clip"
    overrides = [f"output_dir={out}", "max_steps=4", "batch_size=16", "disable_progress_bar=true",
                 "background_shift.source=digits", "background_shift.num_pretrain=64",
                 "background_shift.num_train=8", "background_shift.num_validation=8",
                 "background_shift.num_test=24", *(f"{k}={v}" for k, v in TINY.items())]  # fmt: skip
    metrics = run_recipe(RECIPE, overrides)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert "zero-shot accuracy" in (out / "README.md").read_text()  # model card next to the model
    assert metrics["train_batches"] == 4 and np.isfinite([metrics["first_loss"], metrics["final_loss"]]).all()
    accuracies = metrics["zero_shot_accuracy"]
    assert set(accuracies) == {"test_id", "test_ood_shuffled", "test_ood_unseen"}
    assert all(0 <= a <= 1 for a in accuracies.values())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file(), name

    clip = CLIPModel.from_pretrained(out, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    assert clip.config.vision_config.patch_size == 8 and processor.crop_size["height"] == 16
    data = build_background_shift(
        BackgroundShiftConfig(
            source="digits", num_pretrain=64, num_train=8, num_validation=8, num_test=24, image_size=16
        )
    )
    names = [n.lower() for n in data["test_id"].features["label"].names]
    classifier = ClipZeroShotClassifier.from_clip(clip, tokenizer, names)
    mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    images = ImageClassificationCollator(10, 16, mean, std)
    for split, accuracy in accuracies.items():
        assert zero_shot_accuracy(classifier, data[split], images) == accuracy
    # the saved processor and the classifier loaded by id give the same logits as the pieces above
    rows = [data["test_ood_unseen"][i] for i in range(4)]
    x = processor([r["image"] for r in rows], return_tensors="pt")["pixel_values"]
    by_id = ClipZeroShotClassifier.from_pretrained(str(out), names)
    with torch.no_grad():
        torch.testing.assert_close(by_id(pixel_values=x).logits, classifier(pixel_values=x).logits)
        torch.testing.assert_close(x, images(rows)["pixel_values"])


def test_recipe_and_data_checks(data, tmp_path):
    method, train_cfg, cfg = load_recipe(RECIPE)
    assert method == "clip_pretrain" and isinstance(cfg, ClipPretrainConfig)
    assert (cfg.image_size, cfg.patch_size, train_cfg.batch_size) == (32, 8, 64)
    assert cfg.background_shift["num_pretrain"] == 8000
    data.save_to_disk(tmp_path / "shift")
    loaded = load_clip_pretrain_data(ClipPretrainConfig(dataset_path=str(tmp_path / "shift"), **TINY))
    assert set(loaded) == set(data)
    with pytest.raises(ValueError, match=r"missing \['holdout'\]"):
        load_clip_pretrain_data(
            ClipPretrainConfig(dataset_path=str(tmp_path / "shift"), eval_splits=["holdout"], **TINY)
        )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": 30}, "must be a multiple of patch_size"),
        ({"vision_heads": 3}, "multiples of their numbers of heads"),
        ({"templates": ["a photo"]}, "needs a"),
        ({"eval_splits": ["test"]}, r"unknown eval_splits \['test'\]"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClipPretrainConfig(**{**TINY, **kwargs})


def test_undecodable_rows_are_skipped_and_counted(data):
    tokenizer = build_caption_tokenizer(data["pretrain"]["caption"])
    collator = ClipCaptionCollator(tokenizer, 16)
    broken = {"image": {"bytes": b"not a png", "path": None}, "caption": "a photo of a 1."}
    rows = [data["pretrain"][0], broken]
    batch = collator(rows)
    assert batch["pixel_values"].shape[0] == batch["input_ids"].shape[0] == 1 and collator.skipped == 1
