"""Re-score a trained CGN generator (or a pool of them) with the `bench cgn --quick` protocol at several counterfactuals per image.

Reads top to bottom: rebuild the quick benchmark's biased / oracle splits for the seed the generator was
scored with, train the oracle classifier once, then the counterfactual classifier on 2 / 5 / 10 (or
--per-image) counterfactuals per real training image. Several --generator folders pool their counterfactuals
(`generate_counterfactual_dataset` of the list; e.g. CGNs trained with different seeds). Runs on a CPU in
minutes per generator.

    python benchmarks/gpu/cgn_rescore.py --generator outputs/gpu/cgn/colored_..._s0 --variant colored --seed 0 \\
        --json out.json
"""

import argparse
import json
import os

import torch

from hf_counterfactual.bench.cgn import SCALES, benchmark_splits, score_generator
from hf_counterfactual.data import load_item_source
from hf_counterfactual.models.cgn import CounterfactualGenerativeNetwork

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument(
    "--generator", nargs="+", required=True, help="Folder(s) of saved CounterfactualGenerativeNetworks."
)
p.add_argument("--variant", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--per-image", type=int, nargs="+", default=[2, 5, 10])
p.add_argument(
    "--binarize",
    action=argparse.BooleanOptionalAction,
    help="Items composed with their binary mask, or (--no-binarize) their intensity; default: the variant's.",
)
p.add_argument("--output-dir", default="outputs/gpu/cgn_rescore")
p.add_argument("--json", required=True)
args = p.parse_args()

quick = {**SCALES["quick"], "binarize": args.binarize}
items = load_item_source("auto")
biased, oracle = benchmark_splits(args.variant, quick, args.seed, items)
device = "cuda" if torch.cuda.is_available() else "cpu"
pool = [CounterfactualGenerativeNetwork.from_pretrained(g).to(device).eval() for g in args.generator]
# as the trainer does before saving (generators saved before it did)
inverted = [g.orient_classes() for g in pool]
name = "+".join(os.path.basename(g.rstrip("/")) for g in args.generator)

result = {"generator": args.generator, "variant": args.variant, "seed": args.seed, "binarize": args.binarize}
result |= {"inverted_classes": inverted if len(pool) > 1 else inverted[0], "per_image": {}}
for k in args.per_image:
    which = ("cgn",) if "acc_oracle_test" in result else ("cgn", "oracle")
    out = os.path.join(args.output_dir, f"{name}_{k}")
    scores = score_generator(
        pool, biased, oracle, {**quick, "per_image": k}, out, args.seed, False, which=which
    )
    for key in ("acc_oracle_test", "oracle_shape_acc_counterfactual"):
        result.setdefault(key, scores.get(key))
    acc = scores["acc_cgn_test"]
    result["per_image"][k] = {"acc_cgn_test": acc, "cgn_vs_oracle": acc / result["acc_oracle_test"]}
    print(json.dumps({"per_image": k, **result["per_image"][k]}), flush=True)
with open(args.json, "w") as f:
    json.dump(result, f, indent=1)
