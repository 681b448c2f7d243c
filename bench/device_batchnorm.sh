#!/usr/bin/env bash
# Issue 24 on the lent GPU machine: which images the strong recipe's BatchNorm pass should see
# (bench/batchnorm_pass.py; bench/RESULTS.md §9 has the rule, the figures and the commands).
#
#   PHASE=choose: the strong preset (45,000 training images, 5,000 validation) for each seed in SEEDS
#     (default "0 1"), one at a time, each bounded by LIMIT (default 290 s) and timed; each finished run's
#     weights then get every pass (bench/batchnorm_pass.py: validation and test rows), the first run's beside
#     the next run's training. Last, `--choose` prints the setting to keep (validation only) into choice.txt.
#   PHASE=refit: the refit preset (all 50,000 training images, test split) with `--set swa_batchnorm=SETTING`
#     (default: the choose phase's choice.txt, kept on the machine), one run per seed, each alone on the GPU
#     and timed; then, with the time left, every pass on each run's weights (test rows).
#
#   run(command="PHASE=choose bash bench/device_batchnorm.sh", carry=[".whl", ".data"])
#
# Runs, rows and the choice stay under $TMPDIR/bn (a warm machine keeps them between calls): a run whose
# model.keras is there is not trained again, and its rows are not computed twice, so a cut-off call can be
# repeated. BUDGET (default 585 s) bounds the whole call: a step that cannot finish in what is left is not
# started. Back under $OUT, at most 8 files (what a call sends back), in this order: passes.jsonl (every row so
# far), choice.txt, each run's <run>.log (the card, its output, "WALL <s> s", its passes) and <run>-report.json,
# then the runs' <run>-history.csv while there is room (on 2026-12-07 three refit seeds left three files behind).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    2>/dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45  # a training run and a pass side by side
deadline=$(( $(date +%s) + ${BUDGET:-585} ))
left() { echo $(( deadline - $(date +%s) )); }
T=${TMPDIR:-/tmp}; C=$T/c; B=$T/bn
mkdir -p "$B"
if [ ! -d "$C/train" ]; then
  mkdir -p "$C" && tar xzf .data/cifar100-train-jpg.tar.gz -C "$C" && tar xzf .data/cifar100-test-jpg.tar.gz -C "$C"
fi
case "${PHASE:-}" in
  choose) preset=zoo/presets/cifar100-log_softmax-strong.toml; prefix=strong; set=(); overlap=1;;
  refit) setting=${SETTING:-$(head -n 1 "$B/choice.txt" 2>/dev/null)}
    [ -n "$setting" ] || { echo "no SETTING and no choice.txt on this machine: run PHASE=choose or pass SETTING"; exit 2; }
    preset=zoo/presets/cifar100-log_softmax-strong-all.toml; prefix=all-$setting; set=(--set "swa_batchnorm=$setting")
    overlap=0;;
  *) echo "PHASE must be choose or refit"; exit 2;;
esac

passes() {  # the passes of run $1 into its log and the rows, unless its rows are there already
  grep -q "\"run\": \"$B/$1\"" "$B/passes.jsonl" 2>/dev/null && return 0
  timeout "$(( $(left) > 5 ? $(left) - 5 : 1 ))" python3 bench/batchnorm_pass.py "$B/$1" --dataset "$C" \
      --json "$B/passes.jsonl" >> "$B/$1.log" 2>&1
  echo "passes rc=$?" >> "$B/$1.log"
}

pending=
for s in ${SEEDS:-0 1}; do
  run=$prefix-s$s
  if [ ! -f "$B/$run/model.keras" ]; then
    limit=${LIMIT:-290}
    if [ "$(left)" -lt "$limit" ]; then echo "$run: $(left) s left, under LIMIT=$limit: not started"; break; fi
    rm -rf "$B/$run"
    { date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1; } > "$B/$run.log"
    TIMEFORMAT="WALL %R s"  # bash's own timer: the run's wall time, training and its own scoring
    { time timeout "$limit" python3 -m keras_softmax.cli train --config "$preset" --dataset "$C" --seed "$s" \
        "${set[@]}" --out "$B/$run" >> "$B/$run.log" 2>&1; echo "rc=$?" >> "$B/$run.log"; } 2>> "$B/$run.log"
  fi
  [ -n "$pending" ] && wait
  [ "$overlap" = 1 ] && [ -f "$B/$run/model.keras" ] && { passes "$run" & pending=1; }
done
wait
for s in ${SEEDS:-0 1}; do  # the refit's passes after its runs, so that each run had the GPU alone
  [ "$overlap" = 0 ] && [ -f "$B/$prefix-s$s/model.keras" ] && [ "$(left)" -gt 60 ] && passes "$prefix-s$s"
done
if [ "$PHASE" = choose ]; then
  python3 bench/batchnorm_pass.py --choose "$B/passes.jsonl" > "$B/choice.txt" 2>&1
fi
send() {  # copy $1 to $OUT as $2 while fewer than 8 files are there: the device sends back no more
  [ -f "$1" ] && [ "$(ls "$OUT" | wc -l)" -lt 8 ] && cp "$1" "$OUT/$2"
}
for f in passes.jsonl choice.txt; do send "$B/$f" "$f"; done  # the rows first, then each run's log and report
for f in "$B/$prefix"-s*.log; do run=$(basename "$f" .log); send "$f" "$run.log"; send "$B/$run/report.json" "$run-report.json"; done
for f in "$B/$prefix"-s*.log; do run=$(basename "$f" .log); send "$B/$run/history.csv" "$run-history.csv"; done
tail -n 2 "$B/$prefix"-s*.log; cat "$B/choice.txt" 2>/dev/null || true
