"""`hf-counterfactual bench cgn`: invariant classifiers from CGN counterfactuals vs the unbiased oracle.

Per variant (colored / double_colored / wildlife): build the biased benchmark and its oracle twin (same
items, colours / textures drawn at random), train a CGN on the biased train split, generate
`per_image` counterfactuals per real training image, and train the same classifier on originals, on
counterfactuals, on both and on the oracle data. Every classifier is scored on the same test split
(random colours / textures); `cgn_vs_oracle` = acc_cgn_test / acc_oracle_test. The oracle classifier
also scores the counterfactuals against their shape class (`oracle_shape_acc_counterfactual`): near
chance (0.1) when the shape mechanism has not learnt class shapes, whatever the textures do.
"""

import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

import torch
from datasets import DatasetDict

from ..data import load_item_source
from ..data.cgn_variants import CGN_VARIANTS, CgnVariantConfig, build_cgn_variant
from ..hub import finished_metrics
from ..models.cgn import (
    CGNMaskEncoder,
    CounterfactualGenerativeNetwork,
    color_item_masks,
    generate_counterfactual_dataset,
    save_counterfactual_grid,
    save_mechanism_grid,
)
from ..training import TrainingConfig
from ..training.cgn_config import CgnTrainConfig
from ..training.cgn_mask_encoder import fit_mask_encoder, mask_encoder_training_config
from ..training.cgn_trainer import CgnCollator, run_cgn
from ..training.invariant_classifier import invariant_training_set, train_invariant_classifier
from ..training.pat_config import TINY_RESNET
from .resume import check_resumable

logger = logging.getLogger(__name__)

SCALES = {
    "smoke": {"num_train": 64, "num_test": 40, "cgn_steps": 4, "cgn_batch": 16, "per_image": 1,
              "classifier_epochs": 1, "ngf": 8, "disc_hidden": 32, "cgn_eval_steps": 2,
              "mask_encoder_steps": 2},  # tests: the code path
    "quickstart": {"num_train": 2000, "num_test": 1000, "cgn_steps": 300, "cgn_batch": 32, "per_image": 2,
                   "classifier_epochs": 3, "ngf": 16, "disc_hidden": 512},
    "quick": {"num_train": 5000, "num_test": 2000, "cgn_steps": 400, "cgn_batch": 32, "per_image": 2,
              "classifier_epochs": 3, "ngf": 16, "disc_hidden": 512},
    "long": {"num_train": 20000, "num_test": 2000, "classifier_num_train": 5000, "cgn_steps": 6000, "cgn_batch": 32,
             "per_image": 10, "classifier_epochs": 3, "ngf": 16, "disc_hidden": 512, "cgn_eval_steps": 1500,
             "generators": 2, "binarize": True},  # 2 CPU hours: the quick recipe trained 15x longer, pooled
    "full": {"num_train": 60000, "num_test": 10000, "cgn_steps": 56250, "cgn_batch": 16, "per_image": 10,
             "classifier_epochs": 10, "ngf": 32, "disc_hidden": 512, "cgn_eval_steps": 5625, "generators": 2},
}  # fmt: skip
# "generators": CGNs trained (seeds S, S+1, ...) whose counterfactuals are pooled (not in the paper). A GAN's
# seed decides much of what its counterfactuals teach: four long colored runs scored 0.79-0.94 of the oracle
# alone, every pair of them 0.91-0.93 (benchmarks/README.md, "Pooling generators")
# the centred-object prior L_border (not in the paper): without it several classes learn their mask
# inside out (the background mechanism paints the item), which scrambles counterfactual shapes
LAMBDA_BORDER = 1.0
# the authors' colored-MNIST weight of L_binary (CgnTrainConfig defaults to 1); on double_colored it
# lifts the oracle's shape accuracy on the counterfactuals 0.20 -> 0.28 (800 steps), neutral elsewhere
LAMBDA_BINARY = 0.1
# the mode-seeking loss on same-class mask pairs (MSGAN; not in the paper): without it each class draws
# nearly one shape, and a classifier trained on so few shapes does not carry over to real items
# (seed 0, 400 steps, cgn_vs_oracle 0.64 -> 0.72 colored, 0.52 -> 0.69 double_colored)
LAMBDA_MODE_SEEKING = 0.02
TARGET_CGN_VS_ORACLE = 0.90
# Where the counterfactuals' shapes come from. "generated": the shape mechanism (the paper). The other two
# (not in the paper) make the counterfactuals of the real training images, which keep their shapes, and take
# only texture and background from the CGN; the images' masks come from "color": per-class colour statistics
# of the images' centre against their frame (`color_item_masks`, seconds), or "encoder": a CGNMaskEncoder
# fitted to each CGN's own compositions (minutes). The GAN's shapes are what limits the paper's protocol at
# every scale measured (quick, seed 0, the same CGNs, cgn_vs_oracle: generated 0.77 / 0.83 / 0.76, color
# 0.97 / 1.03 / 0.96; benchmarks/README.md)
SHAPES = ("generated", "encoder", "color")
Shapes = Literal["generated", "encoder", "color"]
DEFAULT_SHAPES = "color"
# the encoder's fit: this many batches of 64, Adam 1e-3
MASK_ENCODER_STEPS = 500
# ... and cut at this value: soft masks copy the real images' class-tied patterns into their counterfactuals
# (quick, seed 0, the first 17 px encoder: cgn_vs_oracle 0.86 / 0.56 / 0.63 soft, 0.91 / 0.84 / 0.72 cut at 0.5)
MASK_THRESHOLD = 0.5


def _classifier_config(output_dir: str, seed: int, epochs: int, show_progress: bool) -> TrainingConfig:
    return TrainingConfig(
        output_dir=output_dir,
        seed=seed,
        num_epochs=epochs,
        batch_size=64,
        learning_rate=2e-3,
        weight_decay=1e-4,
        disable_progress_bar=not show_progress,
    )


def cgn_configs(
    variant: str,
    sc: dict,
    seed: int,
    output_dir: str,
    show_progress: bool = True,
    torch_compile: bool = False,
) -> tuple[CgnTrainConfig, TrainingConfig]:
    """The bench's CGN recipe at scale `sc` (a SCALES entry, optionally with `cgn_lr`): what to train, how.

    With `cgn_eval_steps` in `sc` the run keeps its best generator by `transfer_accuracy` (biased data only)
    and saves a checkpoint at every evaluation.

    `torch_compile` compiles the GAN step, with CUDA graphs on a GPU, where the step is bound by kernel
    launches (16-17 ms on an H100; 47-54 ms eager in an earlier run), and drops each epoch's partial batch.
    """
    cgn_cfg = CgnTrainConfig(
        variant=variant,
        num_train=sc["num_train"],
        ngf=sc["ngf"],
        disc_hidden=sc["disc_hidden"],
        disc_type=sc.get("disc_type", "mlp"),
        lambda_border=LAMBDA_BORDER,
        lambda_binary=LAMBDA_BINARY,
        lambda_mode_seeking=LAMBDA_MODE_SEEKING,
    )
    train_cfg = TrainingConfig(
        output_dir=output_dir,
        seed=seed,
        max_steps=sc["cgn_steps"],
        batch_size=sc["cgn_batch"],
        learning_rate=sc.get("cgn_lr", 2e-4 * sc["cgn_batch"] / 16),
        adam_beta1=0.5,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        logging_steps=50,
        disable_progress_bar=not show_progress,
        torch_compile=torch_compile,
        torch_compile_mode="reduce-overhead" if torch_compile and torch.cuda.is_available() else None,
        dataloader_drop_last=torch_compile,
        eval_steps=sc.get("cgn_eval_steps"),
        checkpointing_steps=sc.get("cgn_eval_steps"),  # a long run can resume (`bench cgn --resume`)
        metric_for_best_model="transfer_accuracy" if sc.get("cgn_eval_steps") else None,
        load_best_model_at_end=bool(sc.get("cgn_eval_steps")),
    )
    return cgn_cfg, train_cfg


def score_generator(
    generator: CounterfactualGenerativeNetwork | list[CounterfactualGenerativeNetwork],
    biased: DatasetDict,
    oracle: DatasetDict,
    sc: dict,
    output_dir: str,
    seed: int = 0,
    show_progress: bool = True,
    ensemble: bool = False,
    which: tuple[str, ...] = ("original", "cgn", "both", "oracle"),
    shapes: Shapes = "generated",
    mask_encoders: list[CGNMaskEncoder] | None = None,
    mask_threshold: float | None = MASK_THRESHOLD,
) -> dict:
    """Counterfactuals of `biased`'s train labels (pooled, for a list of generators), then the classifiers
    named in `which`, on one test split.

    Returns `acc_<name>_test` for each (plus `acc_original_train`, `oracle_shape_acc_counterfactual`),
    `cgn_vs_oracle` / `both_vs_oracle` when their parts ran, and the generation speed. With `shapes`
    "color" or "encoder" (then `mask_encoders`, one per generator) the counterfactuals keep the real training
    images' shapes, their masks cut at `mask_threshold` (None: soft); see `SHAPES`.
    """
    if shapes not in SHAPES:
        raise ValueError(f"shapes must be one of {', '.join(SHAPES)}, got {shapes!r}.")
    if (shapes == "encoder") != (mask_encoders is not None):
        raise ValueError('mask_encoders go with shapes="encoder", and only with it.')
    start = time.perf_counter()
    image_size = biased["train"][0]["image"].size[0]
    labels = biased["train"]["label"]
    real = None if shapes == "generated" else CgnCollator(image_size)(list(biased["train"]))["pixel_values"]
    generators = generator if isinstance(generator, list) else [generator]
    masks = None
    if shapes == "color":
        masks = color_item_masks(real, torch.tensor(labels), generators[0].config.num_classes)
    counterfactuals = generate_counterfactual_dataset(
        generator,
        labels,
        sc["per_image"],
        seed,
        pixel_values=None if shapes == "color" else real,
        mask_encoders=mask_encoders,
        mask_threshold=mask_threshold,
        masks=masks,
    )
    dataset_seconds = time.perf_counter() - start
    test = {"test": biased["test"]}
    training_sets = {
        "original": lambda: invariant_training_set(biased["train"], None, "original", ensemble),
        "cgn": lambda: invariant_training_set(biased["train"], counterfactuals, "counterfactual", ensemble),
        "both": lambda: invariant_training_set(biased["train"], counterfactuals, "both", ensemble),
        "oracle": lambda: invariant_training_set(oracle["train"], None, "original", ensemble),
    }
    accuracies = {}
    for name in which:
        eval_data = {"train": biased["train"], **test} if name == "original" else test
        # do the counterfactuals show their shape class? (the oracle scores them against `label` = shape)
        if name == "oracle":
            eval_data = {**test, "counterfactual": counterfactuals}
        cfg = _classifier_config(
            os.path.join(output_dir, f"classifier_{name}"), seed, sc["classifier_epochs"], show_progress
        )
        _, metrics = train_invariant_classifier(
            cfg, training_sets[name](), eval_data, TINY_RESNET, image_size, ensemble
        )
        for split in eval_data:
            key = "oracle_shape_acc_counterfactual" if split == "counterfactual" else f"acc_{name}_{split}"
            accuracies[key] = metrics[f"{split}_accuracy"]
        logger.info("CGN bench, %s classifier: %s", name, metrics)
    for name in ("cgn", "both"):
        if f"acc_{name}_test" in accuracies and "acc_oracle_test" in accuracies:
            accuracies[f"{name}_vs_oracle"] = accuracies[f"acc_{name}_test"] / accuracies["acc_oracle_test"]
    return {
        **accuracies,
        "dataset_images_per_second": len(counterfactuals) / dataset_seconds,
        "counterfactual_images": len(counterfactuals),
    }


def benchmark_splits(
    variant: str, sc: dict, seed: int, items: DatasetDict
) -> tuple[DatasetDict, DatasetDict]:
    """The biased benchmark of `variant` at scale `sc` and its oracle twin (same items, colours / textures
    drawn at random), built from `items` (`load_item_source`). `sc["binarize"]`, if set, overrides how the
    items are composed (default: the authors' choice per variant, `CgnVariantConfig.binarize`)."""
    sizes = {"num_train": sc["num_train"], "num_validation": 0, "num_test": sc["num_test"], "seed": seed}
    sizes["binarize"] = sc.get("binarize")
    biased = build_cgn_variant(CgnVariantConfig(variant=variant, **sizes), items)
    oracle = build_cgn_variant(CgnVariantConfig(variant=variant, bias=False, **sizes), items)
    return biased, oracle


def scale_generators(scale: str, generators: int | None) -> int:
    """The CGNs to pool per variant: `generators`, or by default the scale's (1 where it names none)."""
    generators = SCALES[scale].get("generators", 1) if generators is None else generators
    if generators < 1:
        raise ValueError(f"generators must be >= 1, got {generators}.")
    return generators


def _mask_encoder(
    cgn: CounterfactualGenerativeNetwork, folder: str, sc: dict, seed: int, resume: bool
) -> CGNMaskEncoder:
    """`cgn`'s mask encoder: fitted into `folder`, or with `resume` the one an earlier run saved there."""
    if resume and Path(folder, "model.safetensors").is_file():
        return CGNMaskEncoder.from_pretrained(folder).to(cgn.device)
    steps = sc.get("mask_encoder_steps", MASK_ENCODER_STEPS)
    return fit_mask_encoder(cgn, mask_encoder_training_config(folder, steps, seed, disable_progress_bar=True))


def run_cgn_variant(
    variant: str,
    scale: str = "quick",
    seed: int = 0,
    item_source: str = "auto",
    output_dir: str = "outputs/bench/cgn",
    show_progress: bool = True,
    ensemble: bool = False,
    torch_compile: bool = False,
    generators: int | None = None,
    resume: bool = False,
    shapes: Shapes = DEFAULT_SHAPES,
) -> dict:
    """The figures of one variant: CGN training, generation speed, and the five classifier accuracies.

    `generators` > 1 (default: the scale's, else 1) trains that many CGNs on the same data (seeds `seed`,
    `seed + 1`, ...) and pools their counterfactuals; mask statistics are then their means, per-CGN
    figures lists, one per CGN. The figures also go to `output_dir/<variant>/results.json`. `resume`
    keeps what an earlier run into `output_dir` finished: the variant's results.json, or each CGN saved
    with its metrics.json; a CGN cut off mid-training goes on from its last checkpoint. The variant's
    bench_run.json records what its CGNs were trained with (`check_resumable`). `shapes` says
    where the counterfactuals' shapes come from (see `SHAPES`); "encoder" fits a `CGNMaskEncoder` to each
    CGN (saved to its folder's `mask_encoder/`).
    """
    if shapes not in SHAPES:
        raise ValueError(f"shapes must be one of {', '.join(SHAPES)}, got {shapes!r}.")
    sc = SCALES[scale]
    generators = scale_generators(scale, generators)
    out = os.path.join(output_dir, variant)
    finished = Path(out, "results.json")
    start = time.perf_counter()
    asked = {
        "scale": scale,
        "seed": seed,
        "generators": generators,
        "ensemble": ensemble,
        "items": item_source,
        "shapes": shapes,
    }
    if shapes != "generated":
        asked["mask_threshold"] = MASK_THRESHOLD
    if resume and finished.is_file():
        earlier = json.loads(finished.read_text())
        if earlier["run"] != asked:
            raise ValueError(
                f"{finished} was measured with {earlier['run']}, not {asked}: use another output_dir."
            )
        logger.info("CGN bench, %s: finished by an earlier run, figures from %s", variant, finished)
        return earlier["figures"]
    checkpoints = any(Path(out).glob("cgn*/checkpoints/checkpoint_*"))
    if not resume and checkpoints:
        raise ValueError(
            f"{out} holds CGN checkpoints of an earlier run: go on from them with resume=True "
            "(`bench cgn --resume`) or write to another output_dir."
        )
    # what the CGNs themselves depend on (CGN j is trained with seed + j); the rest only scores them
    trained = checkpoints or any(Path(out).glob("cgn*/metrics.json"))
    check_resumable(out, {"scale": scale, "seed": seed, "items": item_source}, resume, trained)
    biased, oracle = benchmark_splits(variant, sc, seed, load_item_source(item_source))
    n = sc.get("classifier_num_train", sc["num_train"])  # the classifiers' share of the CGN's images
    scored = [DatasetDict({**d, "train": d["train"].select(range(n))}) for d in (biased, oracle)]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs, pool, encoders = [], [], []
    for j in range(generators):
        folder = os.path.join(out, "cgn" if j == 0 else f"cgn_{j}")
        cgn_cfg, cgn_train_cfg = cgn_configs(variant, sc, seed + j, folder, show_progress, torch_compile)
        trained = finished_metrics(folder) if resume else None
        if trained is not None:
            logger.info("CGN bench, %s: the CGN in %s was trained by an earlier run", variant, folder)
            runs.append(trained)
        else:
            cgn_train_cfg.resume_from_checkpoint = "latest" if resume else None
            runs.append(run_cgn(cgn_train_cfg, cgn_cfg, biased))
        pool.append(CounterfactualGenerativeNetwork.from_pretrained(folder).to(device))
        if shapes == "encoder":
            encoders.append(
                _mask_encoder(pool[-1], os.path.join(folder, "mask_encoder"), sc, seed + j, resume)
            )
    save_counterfactual_grid(pool[0], os.path.join(out, "counterfactual_grid.png"), seed=seed)
    save_mechanism_grid(pool[0], os.path.join(out, "mechanism_grid.png"), seed=seed)
    scores = score_generator(
        pool, *scored, sc, out, seed, show_progress, ensemble, shapes=shapes, mask_encoders=encoders or None
    )

    def each(key: str):  # one CGN's figure, or the list of the pool's
        values = [run.get(key) for run in runs]
        return values if generators > 1 else values[0]

    def mean(key: str) -> float | None:  # the pool's mean of a per-CGN figure
        values = [run.get(key) for run in runs]
        return None if None in values else sum(values) / len(values)

    figures = {
        **scores,
        "mask_mean": mean("mask_mean"),
        "mask_binariness": mean("mask_binariness"),
        "mask_iou": mean("mask_iou"),
        "images_per_second": mean("images_per_second"),
        "cgn_train_seconds": sum(run["train_seconds"] for run in runs),
        "cgn_transfer_accuracy": each("transfer_accuracy"),  # per evaluated step, with cgn_eval_steps
        "cgn_selected_step": each("best_step"),
        "cgn_inverted_classes": each("inverted_classes"),  # learned inside out; generate re-orients them
        "generators": generators,
        "binary_items": CgnVariantConfig(variant=variant, binarize=sc.get("binarize")).binary_items,
        "seconds": time.perf_counter() - start,  # this call's: a resumed variant's earlier calls not counted
    }
    finished.write_text(json.dumps({"run": asked, "figures": figures}, indent=2))
    return figures


def run_cgn_benchmark(
    scale: str = "quick",
    seed: int = 0,
    item_source: str = "auto",
    output_dir: str = "outputs/bench/cgn",
    variants: tuple[str, ...] = CGN_VARIANTS,
    show_progress: bool = True,
    ensemble: bool = False,
    torch_compile: bool = False,
    generators: int | None = None,
    resume: bool = False,
    shapes: Shapes = DEFAULT_SHAPES,
) -> dict:
    """Every variant's figures, the settings they were measured with, and whether the target is met.

    `resume` goes on from what an earlier run into `output_dir` finished (see `run_cgn_variant`).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}.")
    generators = scale_generators(scale, generators)
    unknown = set(variants) - set(CGN_VARIANTS)
    if unknown:
        raise ValueError(f"unknown CGN variants {sorted(unknown)}; valid: {', '.join(CGN_VARIANTS)}.")
    start = time.perf_counter()
    options = dict(show_progress=show_progress, ensemble=ensemble, torch_compile=torch_compile, resume=resume)
    options["shapes"] = shapes
    results = {
        v: run_cgn_variant(v, scale, seed, item_source, output_dir, generators=generators, **options)
        for v in variants
    }
    return {
        "benchmark": "cgn",
        "scale": scale,
        "seed": seed,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "settings": {
            **SCALES[scale],
            "discriminator": f"{SCALES[scale].get('disc_type', CgnTrainConfig.disc_type)}, "
            f"{CgnTrainConfig.disc_conditioning} conditioning"
            + (", spectral norm" if CgnTrainConfig.disc_spectral_norm else ""),
            "lambda_border": LAMBDA_BORDER,
            "lambda_binary": LAMBDA_BINARY,
            "lambda_mode_seeking": LAMBDA_MODE_SEEKING,
            "classifier": TINY_RESNET,
            "ensemble": ensemble,
            "torch_compile": torch_compile,
            "generators": generators,
            "shapes": shapes,
            "mask_encoder_steps": SCALES[scale].get("mask_encoder_steps", MASK_ENCODER_STEPS)
            if shapes == "encoder"
            else None,
            "mask_threshold": None if shapes == "generated" else MASK_THRESHOLD,
        },
        "variants": results,
        "target_cgn_vs_oracle": TARGET_CGN_VS_ORACLE,
        "targets_met": {v: r["cgn_vs_oracle"] >= TARGET_CGN_VS_ORACLE for v, r in results.items()},
        "seconds": time.perf_counter() - start,
    }


__all__ = [
    "SCALES",
    "SHAPES",
    "benchmark_splits",
    "cgn_configs",
    "run_cgn_benchmark",
    "run_cgn_variant",
    "score_generator",
]
