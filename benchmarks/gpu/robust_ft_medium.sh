# One device call: `bench robust-ft --scale medium` on the GPU, its seeds as processes side by side, merged into one
# JSON the way the CPU runs were (`summarize_robust_ft`). Carry .whl and .gpu_data (see setup.sh). With --resume a
# seed cut off by WORKER_TIMEOUT keeps its pre-trained CLIP and finished models, so calling this again while the
# machine is warm goes on (SCALE=full: nine masked models per seed, more than one call).
# Usage: [SCALE=medium SEEDS="0 1 2" WORKER_TIMEOUT=560] bash benchmarks/gpu/robust_ft_medium.sh
source benchmarks/gpu/setup.sh || exit 1
mkdir -p $OUT/logs
start=$(date +%s)
for seed in ${SEEDS:-0 1 2}; do
  timeout ${WORKER_TIMEOUT:-560} python3 -m hf_counterfactual.cli bench robust-ft --scale ${SCALE:-medium} --seeds $seed --resume \
    --output-dir outputs/gpu/robust_ft_${SCALE:-medium} --json $OUT/logs/robust_ft_${SCALE:-medium}_s$seed.json \
    > $OUT/logs/robust_ft_${SCALE:-medium}_s$seed.log 2>&1 &
done
wait
python3 - "$(( $(date +%s) - start ))" "$OUT" "${SCALE:-medium}" <<'EOF'
import glob, json, sys
from hf_counterfactual.bench.robust_ft import summarize_robust_ft
runs = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[2]}/logs/robust_ft_{sys.argv[3]}_s*.json"))]
result = summarize_robust_ft([r["per_seed"][0] for r in runs], sys.argv[3], float(sys.argv[1]))
result["note"] = f"seeds as {len(runs)} processes side by side on one GPU; seconds = wall time of the call"
json.dump(result, open(f"{sys.argv[2]}/robust_ft_{sys.argv[3]}_gpu.json", "w"), indent=1)
print(json.dumps({k: result[k] for k in ("models", "masked_cf_vs_vanilla", "targets_met")}, indent=1))
EOF
tail -n 3 $OUT/logs/*.log
