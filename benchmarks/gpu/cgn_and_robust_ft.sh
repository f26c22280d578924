# One device call (under 10 minutes): long CGN runs (VARIANTS x NGFS, default 3 x 2), the larger-CLIP
# robust-FT sweep (RFT_ARGS; NO_RFT=1 skips it) and, with PYTEST=1, the test suite, side by side on one GPU.
# Usage: [VARIANTS=.. NGFS=.. CHECKPOINTS=.. WORKER_TIMEOUT=..] bash benchmarks/gpu/cgn_and_robust_ft.sh TRAIN_SECONDS
source benchmarks/gpu/setup.sh || exit 1
T=${1:-330}
mkdir -p $OUT/logs
rm -rf outputs/gpu
for v in ${VARIANTS:-colored double_colored wildlife}; do
  for ngf in ${NGFS:-16 32}; do
    timeout ${WORKER_TIMEOUT:-560} python3 benchmarks/gpu/cgn_long.py --variant $v --ngf $ngf --train-seconds $T --checkpoints ${CHECKPOINTS:-4} \
      --json $OUT/logs/cgn_${v}_ngf${ngf}.json > $OUT/logs/cgn_${v}_ngf${ngf}.log 2>&1 &
  done
done
[ -z "$NO_RFT" ] && timeout ${WORKER_TIMEOUT:-560} python3 benchmarks/gpu/robust_ft_large.py --deadline-seconds 420 $RFT_ARGS \
  --json $OUT/logs/robust_ft_large.json > $OUT/logs/robust_ft_large.log 2>&1 &
[ -n "$PYTEST" ] && timeout 400 python3 -m pytest -q -p no:cacheprovider --ignore=tests/spaces > $OUT/logs/pytest.log 2>&1 &
wait
[ -n "$PYTEST" ] && tail -3 $OUT/logs/pytest.log
grep -h '^{"variant"' $OUT/logs/cgn_*.log
grep -ho "pretrain: .*\|bias [0-9.]* [a-z_]*: .*" $OUT/logs/robust_ft_large.log  # after tqdm's bars
tar czf $OUT/logs.tar.gz -C $OUT logs && rm -r $OUT/logs
tar cf $OUT/generators.tar --exclude='checkpoints' --exclude='score_*' --exclude='*_probe' --exclude='discriminator' outputs/gpu/cgn
ls -la $OUT
