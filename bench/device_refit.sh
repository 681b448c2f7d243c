#!/usr/bin/env bash
# Issue 24 item 1 on the lent GPU machine: the refit preset (zoo/presets/cifar100-log_softmax-strong-all.toml,
# all 50,000 training images, scored on the test split at its end), one run per seed in SEEDS (default 0),
# each alone on the GPU, with its wall time (bench/RESULTS.md §9 has the figures and the command):
#
#   run(command="SEEDS=0 bash bench/device_refit.sh", carry=[".whl", ".data"])    # then SEEDS=1
#
# .whl: keras/namex/optree wheels; .data: copies of ../shared/data/*.tar.gz. At the 80-200-400-800 network a run
# took 288.8-289.5 s on a warm H100 and 335 s as a freshly lent machine's first run (2026-12-07, e59624c), so give
# one seed a call. LIMIT (default 420 s, room for a fresh machine's first run) bounds each. Each call trains into
# directories of its own ($TMPDIR/runs/<pid>/), so a seed given again on the same machine trains again.
# FRESH=1 first times the fast preset as the fresh machine's first run (issue 24 item 3,
# bench/cold_start.py; RESULTS §5's command; two files more, so with one seed). What comes back under
# $OUT: all-s<seed>.log (the card and driver, the run's output and "WALL <s> s") and the run's report.json,
# history.csv and config.toml as all-s<seed>-<file>. The device returns at most 8 files a call,
# so the card goes into each log, not a file of its own (on 2026-12-06 a gpu.txt was the ninth and was lost).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    2>/dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
C=${TMPDIR:-/tmp}/c
if [ ! -d "$C/train" ]; then
  mkdir -p "$C" && tar xzf .data/cifar100-train-jpg.tar.gz -C "$C" && tar xzf .data/cifar100-test-jpg.tar.gz -C "$C"
fi
if [ "${FRESH:-0}" = 1 ]; then
  python3 -m compileall -q keras_softmax keras_softmax_cli
  CUDA_CACHE_PATH=/tmp/cuda-fresh timeout 150 python3 bench/cold_start.py --label fresh --cache /tmp/k-fresh \
      --log "$OUT/cold.log" -- --config zoo/presets/cifar100-log_softmax-fast.toml \
      --dataset .data/cifar100-train-jpg.tar.gz --out /tmp/runs/fresh > "$OUT/cold.out" 2>&1
  echo "cold rc=$?" >> "$OUT/cold.out"; tail -1 "$OUT/cold.out"
fi
for s in ${SEEDS:-0}; do
  run=${TMPDIR:-/tmp}/runs/$$/all-s$s  # a directory of this call's own: a seed given again trains again
  { date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1; } > "$OUT/all-s$s.log"
  TIMEFORMAT="WALL %R s"  # bash's own timer: the run's wall time, training and test scoring
  { time timeout "${LIMIT:-420}" python3 -m keras_softmax.cli train \
      --config zoo/presets/cifar100-log_softmax-strong-all.toml --dataset "$C" --seed "$s" --out "$run" \
      >> "$OUT/all-s$s.log" 2>&1; echo "rc=$?" >> "$OUT/all-s$s.log"; } 2>> "$OUT/all-s$s.log"
  for f in report.json history.csv config.toml; do [ -f "$run/$f" ] && cp "$run/$f" "$OUT/all-s$s-$f"; done
done
tail -n 3 "$OUT"/all-s*.log
