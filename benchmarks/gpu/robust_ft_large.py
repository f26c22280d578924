"""Robust fine-tuning with a larger CLIP than `bench robust-ft` (a GPU job), over several background biases.

Reads top to bottom: pre-train one CLIP (wider and deeper than the bench's) contrastively on the captioned
background-shift images, then for each downstream bias fine-tune it as zero-shot / vanilla FT (+ WiSE-FT)
/ FT + distillation / masked-CF FT (object, single) with the bench's recipe, and score ID and OOD. The
question it answers: with a vision tower that fine-tuning can push far on the items, does masked-CF FT
keep the ID gain while keeping OOD accuracy? Writes the JSON after every model, so a run stopped by its
deadline keeps what it finished. `--distill-weights` sweeps w; with `--reuse-pretrained`, processes run side
by side on one pre-trained CLIP.

    python benchmarks/gpu/robust_ft_large.py --bias 0.95 0.8 0.6 --deadline-seconds 480 --json out.json
    python benchmarks/gpu/robust_ft_large.py --reuse-pretrained --bias 0.6 --distill-weights 3 \
        --variants masked_cf_object_single --json w3.json
"""

import argparse
import json
import os
import time

import torch

from hf_counterfactual.bench.robust_ft import EVAL_SPLITS, WISE_ALPHA, _scores, _train_config
from hf_counterfactual.data.background_shift import BackgroundShiftConfig, build_background_shift
from hf_counterfactual.training.clip_pretrain_config import ClipPretrainConfig
from hf_counterfactual.training.clip_pretrain_trainer import run_clip_pretrain
from hf_counterfactual.training.robust_ft_config import RobustFtConfig
from hf_counterfactual.training.robust_ft_trainer import run_robust_ft

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--bias", type=float, nargs="+", default=[0.95, 0.8, 0.6])
p.add_argument(
    "--variants", nargs="+", default=["zero_shot", "vanilla_ft", "ft_distill", "masked_cf_object_single"]
)
p.add_argument("--width", type=int, default=256, help="Vision tower width (heads = width / 64).")
p.add_argument("--layers", type=int, default=6, help="Vision tower blocks.")
p.add_argument("--num-pretrain", type=int, default=40_000)
p.add_argument("--num-train", type=int, default=8000)
p.add_argument("--pretrain-epochs", type=int, default=10)
p.add_argument("--pretrain-lr", type=float, default=1e-3)
p.add_argument("--pretrain-batch", type=int, default=256)
p.add_argument("--ft-epochs", type=int, default=10)
p.add_argument("--ft-lr", type=float, default=1e-4)
p.add_argument(
    "--distill-weights",
    type=float,
    nargs="+",
    default=[30.0],
    help="w of ft_distill and masked-CF FT (a sweep).",
)
p.add_argument(
    "--masking-threshold", type=float, help="CAM threshold t of masked-CF FT (default: the paper's 0.3)."
)
p.add_argument(
    "--masking",
    nargs=2,
    default=["object", "single"],
    metavar=("STRATEGY", "REFILL"),
    help="Masking of masked-CF FT, run as variant masked_cf_STRATEGY_REFILL (the paper's headline: object single).",
)
p.add_argument(
    "--select-every",
    type=int,
    help="Score the validation split every N steps and keep the best model (the paper's model selection).",
)
p.add_argument(
    "--reuse-pretrained", action="store_true", help="Use the CLIP already pre-trained under --output-dir."
)
p.add_argument("--deadline-seconds", type=float, default=1e9, help="Start no new model after this long.")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--output-dir", default="outputs/gpu/robust_ft")
p.add_argument("--json", required=True)
args = p.parse_args()

start = time.perf_counter()
w = args.width
clip_cfg = ClipPretrainConfig(
    vision_hidden_size=w, vision_layers=args.layers, vision_heads=w // 64, vision_intermediate_size=4 * w,
    text_hidden_size=w // 2, text_layers=3, text_heads=max(1, w // 128), text_intermediate_size=2 * w,
    projection_dim=128,
)  # fmt: skip
sizes = {"num_pretrain": args.num_pretrain, "num_train": args.num_train, "seed": args.seed}
shift = {**sizes, "image_size": clip_cfg.image_size}
base = os.path.join(args.output_dir, f"clip_w{w}_l{args.layers}")
pretrain_train = _train_config(
    base, args.seed, args.pretrain_epochs, False, learning_rate=args.pretrain_lr, weight_decay=0.1,
    warmup_ratio=0.1, batch_size=args.pretrain_batch,
)  # fmt: skip
result = {
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    "settings": vars(args),
    "bias": {},
}
if not (args.reuse_pretrained and os.path.isfile(os.path.join(base, "metrics.json"))):
    pretrain = run_clip_pretrain(
        pretrain_train, clip_cfg, build_background_shift(BackgroundShiftConfig(**shift, bias=args.bias[0]))
    )
    result["pretrain"] = {
        "zero_shot": pretrain["zero_shot_accuracy"],
        "train_seconds": pretrain["train_seconds"],
    }
    print("pretrain:", result["pretrain"], flush=True)

for bias in args.bias:
    data = build_background_shift(BackgroundShiftConfig(**shift, bias=bias))
    runs = result["bias"][str(bias)] = {}
    masked = "masked_cf_{}_{}".format(*args.masking)
    masking = {"masking_strategy": args.masking[0], "masking_refill": args.masking[1]}
    threshold = ""
    if args.masking_threshold is not None:
        masking["masking_threshold"] = args.masking_threshold
        threshold = f"_t{args.masking_threshold:g}"
    variants = [(v, "", {}) for v in ("zero_shot", "vanilla_ft")]
    for w in args.distill_weights:  # w = 30 keeps the names of the first runs
        suffix = "" if w == 30 else f"_w{w:g}"
        variants += [("ft_distill", suffix, {"distill_weight": w})]
        variants += [(masked, suffix + threshold, {**masking, "distill_weight": w})]
    for base_name, suffix, settings in (v for v in variants if v[0] in args.variants):
        name = base_name + suffix
        if time.perf_counter() - start > args.deadline_seconds:
            runs[name] = "skipped: past the deadline"
            continue
        variant = "masked_cf" if name.startswith("masked_cf") else base_name
        cfg = RobustFtConfig(
            base_model=base, variant=variant, eval_splits=EVAL_SPLITS, wise_alphas=[WISE_ALPHA], **settings
        )
        select = {}
        if args.select_every:
            name += "_selected"
            select = {"eval_steps": args.select_every, "metric_for_best_model": "validation_accuracy",
                      "load_best_model_at_end": True}  # fmt: skip
        ft = _train_config(
            os.path.join(args.output_dir, f"bias{bias}", name), args.seed, args.ft_epochs, False,
            learning_rate=args.ft_lr, **select,
        )  # fmt: skip
        metrics = run_robust_ft(ft, cfg, data)
        runs[name] = {**_scores(metrics, variant), "step_seconds": metrics.get("step_seconds")}
        if variant == "vanilla_ft":
            runs["wise_ft"] = _scores(metrics["wise_ft"], str(WISE_ALPHA))
        print(f"bias {bias} {name}: {runs[name]}", flush=True)
        result["seconds"] = time.perf_counter() - start
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
