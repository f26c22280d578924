# One device call: `bench cgn --scale long` on the GPU (compiled step), one process per variant and seed side by
# side; --resume, so a call cut off by its time limit goes on in the next one while the machine is still warm
# (outputs/ stays). Each seed's variants are then read back from their results.json into one JSON.
# SHAPES (color by default; generated: the paper's protocol; encoder) goes to --shapes, into folders and JSONs
# of its own (cgn_long_$SHAPES; its CGNs are trained anew there).
# Carry .whl and .gpu_data (see setup.sh). Usage: [SEEDS="0 1" WORKER_TIMEOUT=560 SHAPES=generated] bash benchmarks/gpu/cgn_bench_long.sh
source benchmarks/gpu/setup.sh || exit 1
bench="python3 -m hf_counterfactual.cli bench cgn --scale long --resume --torch-compile --shapes ${SHAPES:=color}"
tag=cgn_long_$SHAPES
for seed in ${SEEDS:-0}; do
  for v in colored double_colored wildlife; do
    timeout ${WORKER_TIMEOUT:-560} $bench --seeds $seed --variants $v \
      --output-dir outputs/gpu/${tag}_s$seed --json $OUT/${tag}_${v}_s$seed.json > $OUT/${tag}_${v}_s$seed.log 2>&1 &
  done
done
wait
for seed in ${SEEDS:-0}; do  # immediate when every variant finished; a variant still to train is cut off
  timeout 60 $bench --seeds $seed --output-dir outputs/gpu/${tag}_s$seed --json $OUT/${tag}_s$seed.json \
    > /dev/null 2>&1 && python3 -c "import json; r = json.load(open('$OUT/${tag}_s$seed.json')); print($seed, {v: round(x['cgn_vs_oracle'], 3) for v, x in r['variants'].items()})"
done
