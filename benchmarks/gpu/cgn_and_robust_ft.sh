# One device call (under 10 minutes), side by side on one GPU: long CGN runs (VARIANTS x BATCHES x SEEDS; COMPILE=1
# compiles the step, COMPILE_MODE e.g. reduce-overhead), the larger-CLIP robust-FT sweep (pre-train once,
# then vanilla FT per RFT_BIAS and masked-CF FT per RFT_BIAS x RFT_W, for each of RFT_SEEDS; NO_RFT=1 skips it) and, with PYTEST=1,
# the test suite; EXTRA='--variant .. ' adds one more CGN run.
# ITEMS=--no-binarize (or --binarize) overrides the variant's item composition, PER_IMAGE=10 scores with the full
# protocol's counterfactuals per image. DATA_SEED=0 trains every seed of SEEDS on seed 0's data (GANs to pool:
# cgn_rescore.py --generator A B).
# Usage: [VARIANTS=.. BATCHES=.. SEEDS=.. NGF=.. DISC=conv COMPILE=1 CHECKPOINTS=.. WORKER_TIMEOUT=..] bash benchmarks/gpu/cgn_and_robust_ft.sh TRAIN_SECONDS
source benchmarks/gpu/setup.sh || exit 1
T=${1:-330}
mkdir -p $OUT/logs
rm -rf outputs/gpu
compile=${COMPILE:+--torch-compile ${COMPILE_MODE:+--compile-mode $COMPILE_MODE}}
for v in ${VARIANTS:-colored double_colored wildlife}; do
  for b in ${BATCHES:-32}; do
    for seed in ${SEEDS:-0}; do
      timeout ${WORKER_TIMEOUT:-560} python3 benchmarks/gpu/cgn_long.py --variant $v --ngf ${NGF:-16} --batch $b \
        --seed $seed --train-seconds $T --checkpoints ${CHECKPOINTS:-4} $compile ${DISC:+--disc-type $DISC} \
        ${ITEMS} ${PER_IMAGE:+--per-image $PER_IMAGE} ${DATA_SEED:+--data-seed $DATA_SEED} \
        --json $OUT/logs/cgn_${v}_b${b}_s$seed.json > $OUT/logs/cgn_${v}_b${b}_s$seed.log 2>&1 &
    done
  done
done
[ -n "$EXTRA" ] && timeout ${WORKER_TIMEOUT:-560} python3 benchmarks/gpu/cgn_long.py $EXTRA --train-seconds $T \
  --checkpoints ${CHECKPOINTS:-4} --json $OUT/logs/cgn_extra.json > $OUT/logs/cgn_extra.log 2>&1 &
rft() {  # per seed: pre-train one CLIP, then fine-tune it side by side
  local seed=$1 run="timeout ${WORKER_TIMEOUT:-560} python3 benchmarks/gpu/robust_ft_large.py --reuse-pretrained"
  run="$run --seed $seed --output-dir outputs/gpu/robust_ft_s$seed" logs=$OUT/logs/rft_s$seed
  $run --bias ${RFT_BIAS%% *} --variants zero_shot --json ${logs}_pretrain.json > ${logs}_pretrain.log 2>&1
  for bias in ${RFT_BIAS:-0.8 0.6}; do
    $run --bias $bias --variants vanilla_ft --json ${logs}_${bias}_vanilla.json > ${logs}_${bias}_vanilla.log 2>&1 &
    for w in ${RFT_W:-3 10}; do
      $run --bias $bias --variants masked_cf_object_single --distill-weights $w \
        --json ${logs}_${bias}_w$w.json > ${logs}_${bias}_w$w.log 2>&1 &
    done
  done
  wait
}
if [ -z "$NO_RFT" ]; then for seed in ${RFT_SEEDS:-0}; do rft $seed & done; fi
[ -n "$PYTEST" ] && timeout 400 python3 -m pytest -q -p no:cacheprovider --ignore=tests/spaces > $OUT/logs/pytest.log 2>&1 &
wait
[ -n "$PYTEST" ] && tail -3 $OUT/logs/pytest.log
grep -h '^{"variant"' $OUT/logs/cgn_*.log
grep -h "probe:" $OUT/logs/cgn_*.log
grep -ho "pretrain: .*\|bias [0-9.]* [a-z_0-9.]*: .*" $OUT/logs/rft_*.log  # after tqdm's bars
tar czf $OUT/logs.tar.gz -C $OUT logs && rm -r $OUT/logs
tar cf $OUT/generators.tar --exclude='checkpoints' --exclude='score_*' --exclude='*_probe' --exclude='discriminator' outputs/gpu/cgn
ls -la $OUT
