#!/usr/bin/env bash
# One slice of the study on the lent GPU machine (see README.md here, "Finishing issue 23"): restore the
# scored records, train and score under a time budget, and send back only what was scored.
#
#   run(command="BUDGET=400 LIMIT=560 bash zoo/studies/device_slice.sh", carry=[".whl", ".data", ".gpu"])
#
# .whl: keras/namex/optree wheels; .data: copies of ../shared/data/*.tar.gz; .gpu/jaxcache.tgz (optional):
# the JAX compilation cache the last slice sent back, so a fresh machine compiles less. LIMIT must leave
# the call's 600 s room to pack (a slice killed by the call's own limit sends nothing back), and at least ~140 s
# for one batch of four warm runs to train and score (with LIMIT=118, 2026-12-06, two of four had trained,
# none had scored, so nothing came back). The device
# returns at most 8 files per call, so the records come back as one archive, $OUT/rec.tgz: add it to the
# records with `python zoo/study_records.py merge <the call's files>/rec.tgz RECORDS` (it refuses, changing
# nothing, if a recorded file came back different) and commit. Another spec: SPEC, RECORDS and RUNS, e.g.
# the strong-recipe study
#   SPEC=zoo/studies/cifar100-strong.toml RECORDS=zoo/results/cifar100-strong-records RUNS=runs/strong RPD=1 BUDGET=270 LIMIT=575
# (its runs take 212-263 s alone, and the training process scores its run on the test split in 3-4 s more, measured
# 2026-12-05; two side by side take as long as one after the other. BUDGET=270
# starts a second run only if the first was done by then: a run started later would not finish within LIMIT.)
#
# The records began on H200s, and the lent machines are H100s or H200s. On a GPU that is not KIND (default
# H200), while zoo/results/cifar100-gpu-kinds.json holds fewer than MIN_PAIRS (default 18) pairs, the slice
# trains nothing: it measures the offset between the kinds instead (bench/gpu_kinds.py: 10 recorded runs
# trained again, ~5 minutes on a fresh machine, their pairs added to those of that file) and sends it back
# as $OUT/gpu_kinds.tgz: copy its gpu_kinds.json over that file. With enough pairs (18 since 2026-12-06),
# or MIX=1, it trains the slice there (the report recomputes each comparison across kinds at both ends of
# the measured offset and marks the verdicts that turn on it); MEASURE=1 or KINDS_RUNS measures anyway.
# KINDS_RECORDS and KINDS_PARALLEL measure pairs of another study's records, e.g. at the strong recipe (one
# run at a time, two a call; their own offset file), on an H100:
#   KINDS_RECORDS=zoo/results/cifar100-strong-records KINDS_FILE=zoo/results/cifar100-strong-gpu-kinds.json
#   KINDS_RUNS="log_softmax-seed0 log_softmax-seed2" KINDS_PARALLEL=1 LIMIT=575 bash zoo/studies/device_slice.sh
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
D=.data/cifar100-train-jpg.tar.gz T=.data/cifar100-test-jpg.tar.gz
JC=$HOME/.cache/keras_softmax/jax-compilation
if [ -f .gpu/jaxcache.tgz ]; then mkdir -p "$JC" && tar xzf .gpu/jaxcache.tgz -C "$JC" && echo "jax cache: $(ls "$JC" | wc -l) entries"; fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
E=${KINDS_FILE:-zoo/results/cifar100-gpu-kinds.json}
paired=$( ([ -f "$E" ] && grep -o '"run": ' "$E") | wc -l)
measure=0
if [[ "$gpu" != *"${KIND:-H200}"* && "${MIX:-0}" != 1 ]]; then
  [[ "$paired" -lt "${MIN_PAIRS:-18}" || "${MEASURE:-0}" = 1 || -n "${KINDS_RUNS:-}" ]] && measure=1
  [ $measure = 0 ] && echo "GPU: $gpu, not ${KIND:-H200}; the offset has $paired pairs: a slice (MEASURE=1: more)"
fi
if [ $measure = 1 ]; then
  echo "GPU: $gpu, not ${KIND:-H200}: measuring the offset between the kinds ($paired pairs so far; MIX=1: a slice)"
  S=${KINDS_RECORDS:-zoo/results/cifar100-study5-records} K=${TMPDIR:-/tmp}/kinds && mkdir -p $K
  # The pairs measured so far are in $E; these add to them (KINDS_RUNS: the records to train again here).
  AGAIN=${KINDS_RUNS:-}  # default: the first 10 recorded runs of these that $E holds no pair of yet
  for r in {gumbel,log_gumbel,sparsemax,taylor,entmax15,log_softmax,softmax}-seed{0,1,2,3,4}; do
    [ -z "${KINDS_RUNS:-}" ] && [ "$(wc -w <<< "$AGAIN")" -lt 10 ] && ! grep -q "\"run\": \"$r\"" $E 2>/dev/null && AGAIN+=" $r"
  done
  timeout "${LIMIT:-560}" python3 bench/gpu_kinds.py run $S $AGAIN \
      --dataset $D --test-dataset $T --out runs/kinds --parallel "${KINDS_PARALLEL:-4}" > $K/run.log 2>&1
  echo "run rc=$?; $gpu" >> $K/run.log
  python3 bench/gpu_kinds.py compare $S runs/kinds --repeats zoo/results/cifar100-study-repeats.json \
      $([ -f $E ] && echo "--with $E") --json $K/gpu_kinds.json > $K/compare.log 2>&1
  for d in runs/kinds/*/; do [ -d "$d" ] || continue; mkdir -p "$K/$(basename "$d")" && cp "$d"/{report.json,test.json,config.toml,history.csv} "$K/$(basename "$d")/" 2>/dev/null; done
  tar czf "$OUT/gpu_kinds.tgz" -C $K . && tail -20 $K/compare.log
  mkdir -p "$JC" && tar czf "$OUT/jaxcache.tgz" -C "$JC" .
  exit 0
fi
R=${RECORDS:-zoo/results/cifar100-study5-records} RUNS=${RUNS:-runs/study5}
SPEC=${SPEC:-zoo/studies/cifar100-questions.toml} RPD=${RPD:-4} BUDGET=${BUDGET:-400} LIMIT=${LIMIT:-560}
if [ -d "$R" ] && [ ! -f "$RUNS/study.json" ]; then python3 zoo/study_records.py unpack "$R" "$RUNS" > "$OUT/unpack.log" 2>&1; fi
start=$(date +%s)
timeout "$LIMIT" python3 -m keras_softmax_cli study "$SPEC" --out "$RUNS" --dataset $D --test-dataset $T \
    --runs-per-device "$RPD" --budget "$BUDGET" > "$OUT/study.log" 2>&1
echo "study rc=$? wall=$(( $(date +%s) - start ))s" >> "$OUT/study.log"
REC=${TMPDIR:-/tmp}/rec && rm -rf "$REC" && mkdir -p "$REC"
python3 zoo/study_records.py pack --scored-only "$RUNS" "$REC" > "$OUT/pack.log" 2>&1
tar czf "$OUT/rec.tgz" -C "$REC" .
mkdir -p "$JC" && tar czf "$OUT/jaxcache.tgz" -C "$JC" .
grep -c "scored .* on the test split" "$OUT/study.log" | sed 's/^/scored this slice: /'
tail -4 "$OUT/study.log"
