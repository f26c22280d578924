"""Train the Space's small checkpoints on CPU and write them to spaces/checkpoints/ (~10 minutes, ~3 MB).

    python spaces/make_checkpoints.py                       # all of them, into spaces/checkpoints/
    python spaces/make_checkpoints.py --only cgn pat         # some of them
    python spaces/make_checkpoints.py --robust-base DIR      # robust FT from a saved CLIPModel (+ tokenizer)

Every model comes from the project's own trainers on its embedded benchmarks (Fashion-MNIST from the
Debian package or the Hub, scikit-learn digits when neither is there), at sizes that fit a git commit:

- fido_classifier: a tiny ResNet trained on localisation scenes (`train_image_classifier`), 64 px.
- pat_plain, pat_t: a plain multi-label ResNet and PAT-T on co-occurrence mosaics (`run_pat`), 64 px.
- cgn_colored: the CGN generator trained on the colored variant (`run_cgn`), 32 px.
- robust_pretrained, robust_vanilla_ft, robust_masked_cf: on the spurious-background benchmark, a tiny
  ViT "pre-trained" on its diverse split, then fine-tuned on the background-biased split by vanilla FT
  and by masked-image counterfactual FT (`run_robust_ft`: object masks from the attention CAM, one patch
  per cell, single refill), 32 px.
  The paper starts from CLIP; pass `--robust-base` a `CLIPModel` folder saved with its tokenizer (the CLIP
  pre-training recipe's output) to fine-tune from it instead.

Each folder loads with `AutoModelForImageClassification` (the CGN with
`CounterfactualGenerativeNetwork`) and has an image processor, metrics.json and a model card. A few test
images of each benchmark go to spaces/examples/ for the Space's example buttons.
"""

import argparse
import json
import logging
import os
import shutil
import time

import datasets
import torch
from accelerate.state import AcceleratorState, GradientState

from hf_counterfactual import CounterfactualGenerativeNetwork
from hf_counterfactual.data import (
    LocalisationSceneConfig,
    MultiLabelCollator,
    build_localisation_scenes,
    load_item_source,
)
from hf_counterfactual.data.background_shift import BackgroundShiftConfig, build_background_shift
from hf_counterfactual.training import TrainingConfig
from hf_counterfactual.training.cgn_config import CgnTrainConfig
from hf_counterfactual.training.cgn_trainer import run_cgn
from hf_counterfactual.training.classification import image_processor_for, train_image_classifier
from hf_counterfactual.training.pat_config import PatTrainConfig
from hf_counterfactual.training.pat_trainer import load_pat_data, run_pat
from hf_counterfactual.training.robust_ft_config import RobustFtConfig
from hf_counterfactual.training.robust_ft_trainer import run_robust_ft

logger = logging.getLogger("make_checkpoints")
HERE = os.path.dirname(os.path.abspath(__file__))

# half the width of the project's TINY_RESNET: 79k parameters, 0.3 MB of safetensors
SPACE_RESNET = {
    "model_type": "resnet",
    "embedding_size": 8,
    "hidden_sizes": [8, 16, 32, 64],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
}
# a 3-block ViT over 4 px patches of 32 px images: masked-CF FT masks patches by its attention CAM (a CNN
# student fails there today: Grad-CAM's layer probe runs BatchNorm in train mode on a single image)
SPACE_VIT = {
    "model_type": "vit",
    "image_size": 32,
    "patch_size": 4,
    "hidden_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 3,
    "intermediate_size": 96,
}
PARTS = ("fido", "pat", "cgn", "robust")
NUM_EXAMPLES = 3


def _reset_accelerate() -> None:
    """Each trainer makes its own Accelerator; the process-wide state must not carry over."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _training(output_dir: str, seed: int, **kwargs) -> TrainingConfig:
    _reset_accelerate()
    settings = {"batch_size": 64, "learning_rate": 3e-3, "weight_decay": 1e-4, "disable_progress_bar": True}
    return TrainingConfig(output_dir=output_dir, seed=seed, **{**settings, **kwargs})


def _save_examples(split: datasets.Dataset, examples_dir: str, prefix: str) -> None:
    os.makedirs(examples_dir, exist_ok=True)
    for i in range(NUM_EXAMPLES):
        split[i]["image"].convert("RGB").save(os.path.join(examples_dir, f"{prefix}_{i}.png"))


def make_fido(out: str, examples_dir: str, item_source: str, seed: int) -> dict:
    """The classifier FIDO explains: localisation scenes (one item on clutter), 64 px."""
    scenes = LocalisationSceneConfig(
        canvas_size=64, num_train=4000, num_validation=200, num_test=200, seed=seed
    )
    data = build_localisation_scenes(scenes, load_item_source(item_source))
    train_cfg = _training(os.path.join(out, "fido_classifier"), seed, num_epochs=15)
    _, metrics = train_image_classifier(train_cfg, data, SPACE_RESNET, scenes.canvas_size)
    with open(os.path.join(train_cfg.output_dir, "metrics.json"), "w") as f:
        json.dump({**metrics, "dataset": "localisation scenes", "backbone": SPACE_RESNET}, f, indent=2)
    _save_examples(data["test"], examples_dir, "fido")
    return {"fido_classifier": metrics}


def make_pat(out: str, examples_dir: str, item_source: str, seed: int) -> dict:
    """A plain multi-label model (PAT-I runs over it in the Space) and PAT-T, on the same mosaics."""
    mosaic = {"num_train": 4000, "num_validation": 400, "num_test": 400}
    results = {}
    data = pairs = None
    for variant, name in (("plain", "pat_plain"), ("pat_t", "pat_t")):
        cfg = PatTrainConfig(
            variant=variant, item_source=item_source, mosaic=mosaic, backbone_config=dict(SPACE_RESNET)
        )
        if data is None:
            data, pairs = load_pat_data(cfg, seed=seed)
        train_cfg = _training(
            os.path.join(out, name),
            seed,
            num_epochs=10,
            learning_rate=2e-3,
            lr_scheduler="onecycle",
            warmup_ratio=0.2,
        )
        result = run_pat(train_cfg, cfg, data, pairs)
        collator = MultiLabelCollator(len(data["train"].features["labels"].feature.names), cfg.image_size)
        image_processor_for(collator).save_pretrained(train_cfg.output_dir)
        results[name] = {k: v for k, v in result.items() if k != "pairs"}
    _save_examples(data["test"], examples_dir, "pat")
    results["biased_pairs"] = pairs
    return results


def make_cgn(out: str, item_source: str, seed: int) -> dict:
    """The CGN generator on colored items; the discriminator is not needed by the Space and is dropped."""
    output_dir = os.path.join(out, "cgn_colored")
    cfg = CgnTrainConfig(variant="colored", item_source=item_source, num_train=3000, ngf=16, eval_samples=128)
    train_cfg = _training(
        output_dir, seed, max_steps=1000, batch_size=32, learning_rate=2e-4, weight_decay=0.0,
        adam_beta1=0.5, adam_beta2=0.999, lr_scheduler="constant", warmup_ratio=0.0,
    )  # fmt: skip
    metrics = run_cgn(train_cfg, cfg)
    shutil.rmtree(os.path.join(output_dir, "discriminator"), ignore_errors=True)
    names = load_item_source(item_source)["train"].features["label"].names
    cgn = CounterfactualGenerativeNetwork.from_pretrained(output_dir)
    cgn.config.id2label = dict(enumerate(names))
    cgn.config.label2id = {name: i for i, name in enumerate(names)}
    cgn.save_pretrained(output_dir)  # with class names, for the Space's class pickers
    return {"cgn_colored": metrics}


def make_robust(out: str, examples_dir: str, item_source: str, seed: int, base: str | None = None) -> dict:
    """Pre-train (diverse split) unless `base` is given, then vanilla FT and masked-CF FT (biased split)."""
    shift = {"source": item_source, "image_size": 32, "num_pretrain": 3000, "num_train": 2000,
             "num_validation": 200, "num_test": 400}  # fmt: skip
    data = build_background_shift(BackgroundShiftConfig(seed=seed, **shift))
    results = {}
    if base is None:
        base = os.path.join(out, "robust_pretrained")
        pretrain = datasets.DatasetDict(
            train=data["pretrain"], test_id=data["test_id"], test_ood_unseen=data["test_ood_unseen"]
        )
        _, results["robust_pretrained"] = train_image_classifier(
            _training(base, seed, num_epochs=25, learning_rate=2e-3), pretrain, SPACE_VIT, 32
        )
        with open(os.path.join(base, "metrics.json"), "w") as f:
            json.dump({**results["robust_pretrained"], "dataset": "background shift: pretrain"}, f, indent=2)
    splits = ["validation", "test_id", "test_ood_shuffled", "test_ood_unseen"]
    for variant in ("vanilla_ft", "masked_cf"):
        cfg = RobustFtConfig(base_model=base, variant=variant, wise_alphas=[0.5], eval_splits=splits)
        train_cfg = _training(
            os.path.join(out, f"robust_{variant}"), seed, num_epochs=3, learning_rate=1e-3, weight_decay=0.1,
            lr_scheduler="onecycle", warmup_ratio=0.02, max_grad_norm=1.0,
        )  # fmt: skip
        results[f"robust_{variant}"] = run_robust_ft(train_cfg, cfg, data)
    _save_examples(data["test_ood_shuffled"], examples_dir, "robust")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "checkpoints"))
    parser.add_argument("--examples", default=os.path.join(HERE, "examples"))
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--item-source", default="auto", choices=["auto", "fashion_mnist", "digits"])
    parser.add_argument("--robust-base", help="Fine-tune from this saved model instead of pre-training one.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: these tiny models run fastest on few cores).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    examples = os.path.abspath(args.examples)
    base = args.robust_base
    if base and os.path.isdir(base):
        base = os.path.abspath(base)
    # cards and configs record the models' paths relative to the Space folder ("checkpoints/pat_t")
    os.chdir(os.path.dirname(os.path.abspath(args.out)))
    out = os.path.basename(os.path.abspath(args.out))

    start = time.perf_counter()
    summary_path = os.path.join(out, "summary.json")
    summary = {}
    if os.path.isfile(summary_path):  # --only updates the parts it trains
        with open(summary_path) as f:
            summary = json.load(f)
    for part in args.only:
        part_start = time.perf_counter()
        if part == "fido":
            summary.update(make_fido(out, examples, args.item_source, args.seed))
        elif part == "pat":
            summary.update(make_pat(out, examples, args.item_source, args.seed))
        elif part == "cgn":
            summary.update(make_cgn(out, args.item_source, args.seed))
        else:
            summary.update(make_robust(out, examples, args.item_source, args.seed, base))
        logger.info("%s: %.0f s", part, time.perf_counter() - part_start)
    sizes = {
        name: sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)
        for name in sorted(os.listdir(out))
        if os.path.isdir(folder := os.path.join(out, name))
    }
    for name, size in sizes.items():
        print(f"{name}: {size / 1e6:.2f} MB")
    print(
        f"total {sum(sizes.values()) / 1e6:.2f} MB in {os.path.abspath(out)}; {time.perf_counter() - start:.0f} s"
    )
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=2, default=str)


if __name__ == "__main__":
    main()
