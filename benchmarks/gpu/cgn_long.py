"""Long CGN training under a wall-clock budget (a GPU job), scored with the `bench cgn --quick` protocol.

Reads top to bottom: build the quick benchmark's biased / oracle splits and a larger biased split for the
CGN; time a short probe run; train for as many steps as the budget allows, with a checkpoint and the
trainer's transfer evaluation (`counterfactual_transfer_accuracy`, biased data only) at each quarter;
then score every checkpoint's generator with the quick bench's classifiers (the counterfactual
classifier and the oracle), and the last one with all four. `selected_step` is the checkpoint the
transfer evaluation ranks best (the generator the run saves), to compare with the last one. Writes one
JSON per variant.

    python benchmarks/gpu/cgn_long.py --variant colored --train-seconds 360 --json out.json
"""

import argparse
import json
import os
import time

import torch
from safetensors.torch import load_file

from hf_counterfactual.bench.cgn import SCALES, benchmark_splits, cgn_configs, score_generator
from hf_counterfactual.data import load_item_source
from hf_counterfactual.data.cgn_variants import CgnVariantConfig, build_cgn_variant
from hf_counterfactual.models.cgn import CGNConfig, CounterfactualGenerativeNetwork, save_counterfactual_grid
from hf_counterfactual.training.cgn_trainer import run_cgn

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--variant", required=True)
p.add_argument("--train-seconds", type=float, required=True, help="Budget for the CGN's training steps.")
p.add_argument("--max-steps", type=int, default=56_250)
p.add_argument("--cgn-num-train", type=int, default=20_000, help="Biased images the CGN trains on.")
p.add_argument("--ngf", type=int, default=16)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=4e-4)
p.add_argument("--disc-type", default="mlp", choices=["mlp", "conv"], help="The CGN's discriminator.")
p.add_argument(
    "--binarize",
    action=argparse.BooleanOptionalAction,
    help="Items composed with their binary mask, or (--no-binarize) their intensity; default: the variant's.",
)
p.add_argument(
    "--per-image",
    type=int,
    default=2,
    help="Counterfactuals per real image in the scoring (full protocol: 10).",
)
p.add_argument("--checkpoints", type=int, default=4, help="Checkpoints scored along the run.")
p.add_argument(
    "--ema-decay", type=float, default=0.0, help="Score the moving average of G's weights (0: off)."
)
p.add_argument(
    "--torch-compile", action="store_true", help="Compile the GAN step (drops the last partial batch)."
)
p.add_argument(
    "--compile-mode",
    default=None,
    help="torch.compile mode (default: reduce-overhead, i.e. CUDA graphs, on a GPU).",
)
p.add_argument("--seed", type=int, default=0)
p.add_argument(
    "--data-seed",
    type=int,
    default=None,
    help="Seed of the benchmark data (default: --seed); other --seed values then train other GANs on the same data.",
)
p.add_argument("--output-dir", default="outputs/gpu/cgn")
p.add_argument("--json", required=True)
args = p.parse_args()
data_seed = args.seed if args.data_seed is None else args.data_seed

start = time.perf_counter()
quick = {**SCALES["quick"], "binarize": args.binarize, "per_image": args.per_image}
items = load_item_source("auto")
biased, oracle = benchmark_splits(args.variant, quick, data_seed, items)
cgn_data = build_cgn_variant(
    CgnVariantConfig(
        variant=args.variant,
        num_train=args.cgn_num_train,
        num_validation=0,
        num_test=0,
        binarize=args.binarize,
        seed=data_seed + 100,
    ),
    items,
)
sc = {**quick, "num_train": args.cgn_num_train, "ngf": args.ngf, "cgn_batch": args.batch, "cgn_lr": args.lr,
      "disc_type": args.disc_type}  # fmt: skip
mode = args.compile_mode or ("reduce-overhead" if torch.cuda.is_available() else "default")  # as bench cgn
compiled = f"_compile-{mode}" if args.torch_compile else ""
compiled += f"_ema{args.ema_decay:g}" if args.ema_decay else ""
compiled += "_conv" if args.disc_type == "conv" else ""
compiled += {True: "_binary", False: "_soft", None: ""}[args.binarize]
compiled += f"_d{data_seed}" if data_seed != args.seed else ""
out = os.path.join(args.output_dir, f"{args.variant}_ngf{args.ngf}_b{args.batch}{compiled}_s{args.seed}")


def configs(steps: int, output_dir: str):
    cgn_cfg, train_cfg = cgn_configs(
        args.variant, {**sc, "cgn_steps": steps}, args.seed, output_dir, False, args.torch_compile
    )
    train_cfg.torch_compile_mode = mode
    cgn_cfg.ema_decay = args.ema_decay
    return cgn_cfg, train_cfg


# probe: steady-state seconds per step on this machine, next to whatever else runs on it, and the
# one-off cost (compilation) that the main run pays again, mostly from the compile cache
probe_steps = 200
probe = run_cgn(*reversed(configs(probe_steps, out + "_probe")), cgn_data)
step_seconds = probe["step_seconds"]
overhead = probe["train_seconds"] - probe_steps * step_seconds
steps = min(args.max_steps, int((args.train_seconds - overhead / 2) / step_seconds))
steps -= steps % args.checkpoints
print(f"probe: {step_seconds * 1000:.1f} ms/step, {overhead:.0f} s one-off -> {steps} steps", flush=True)

cgn_cfg, train_cfg = configs(steps, out)
train_cfg.checkpointing_steps = train_cfg.eval_steps = steps // args.checkpoints
train_cfg.checkpoints_total_limit = None  # keep every checkpoint: each is scored
train_cfg.metric_for_best_model, train_cfg.load_best_model_at_end = "transfer_accuracy", True
cgn = run_cgn(train_cfg, cgn_cfg, cgn_data)

device = "cuda" if torch.cuda.is_available() else "cpu"
config = CGNConfig.from_pretrained(out)
checkpoints = {}
for k in range(1, args.checkpoints + 1):
    step = k * steps // args.checkpoints
    # accelerate's save_state of the CGNGAN wrapper: the generator's weights under "generator."
    state = load_file(os.path.join(out, "checkpoints", f"checkpoint_{k - 1}", "model.safetensors"))
    generator = CounterfactualGenerativeNetwork(config)
    prefix = "generator_ema." if args.ema_decay else "generator."
    generator.load_state_dict({n[len(prefix) :]: t for n, t in state.items() if n.startswith(prefix)})
    generator.orient_classes(border_width=cgn_cfg.border_width, seed=cgn_cfg.eval_seed)  # as run_cgn does
    which = ("original", "cgn", "both", "oracle") if k == args.checkpoints else ("cgn", "oracle")
    generator.to(device).eval()
    scores = score_generator(generator, biased, oracle, quick, os.path.join(out, f"score_{step}"), args.seed, False,
                             which=which)  # fmt: skip
    checkpoints[step] = {**scores, "transfer_accuracy": cgn["transfer_accuracy"][str(step)]}
    print(f"step {step}: cgn_vs_oracle {scores['cgn_vs_oracle']:.3f}, transfer {checkpoints[step]['transfer_accuracy']:.3f}", flush=True)  # fmt: skip
generator = CounterfactualGenerativeNetwork.from_pretrained(out).to(device)  # the selected one
save_counterfactual_grid(generator, os.path.join(out, "counterfactual_grid.png"), seed=args.seed)

result = {
    "variant": args.variant,
    "seed": args.seed,
    "data_seed": data_seed,
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    "settings": {
        **sc,
        "cgn_steps": steps,
        "torch_compile": args.torch_compile,
        "compile_mode": mode,
    },
    "probe": {"ms_per_step": step_seconds * 1000, "one_off_seconds": overhead},
    "cgn": {
        k: cgn[k]
        for k in (
            "train_seconds",
            "step_seconds",
            "mask_mean",
            "mask_binariness",
            "mask_iou",
            "images_per_second",
        )
    },
    "checkpoints": checkpoints,
    "final": checkpoints[steps],
    "selected_step": cgn["best_step"],
    "selected": checkpoints[cgn["best_step"]],
    "seconds": time.perf_counter() - start,
}
with open(args.json, "w") as f:
    json.dump(result, f, indent=1)
print(
    json.dumps(
        {
            "variant": args.variant,
            "steps": steps,
            "ms_per_step": round(cgn["step_seconds"] * 1000, 1),
            "compile": compiled,
            "batch": args.batch,
            **{s: round(c["cgn_vs_oracle"], 3) for s, c in checkpoints.items()},
            "selected_step": cgn["best_step"],
        }
    )
)
