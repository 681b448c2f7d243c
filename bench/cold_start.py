"""Where a fresh machine's first minute goes: one CLI run, every output line timestamped.

    python bench/cold_start.py --label cold --cache /tmp/fresh-cache --log OUT/cold.log -- \
        --config zoo/presets/cifar100-log_softmax-fast.toml --dataset PATH --out runs/cold

Runs ``keras-softmax train ARGS`` in a subprocess (``python -m keras_softmax_cli``, the console
script's entry point; the rows of 2026-12-04 and before ran ``python -m keras_softmax.cli``) with
``JAX_LOG_COMPILES=1`` (JAX then logs every compilation and its duration) and ``KERAS_SOFTMAX_CACHE``
pointed at ``--cache`` (an empty folder means a cold start: no compiled programs, no decoded JPEGs).
Each line of the child's output is written to ``--log`` prefixed by the seconds since the child
started. The last line printed is a JSON summary: wall seconds, the seconds spent compiling per
function, and the first and steady epoch.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

# JAX_LOG_COMPILES lines: "Finished tracing + transforming f for pjit in 1.2 sec",
# "Finished jaxpr to MLIR module conversion jit(f) in 0.3 sec", "Finished XLA compilation of jit(f) in 9.8 sec".
COMPILE = re.compile(r"Finished (tracing \+ transforming|jaxpr to MLIR module conversion|XLA compilation of) "
                     r"(.+?)(?: for pjit)? in ([0-9.e+-]+) s")
EPOCH = re.compile(r"epoch (\d+)/\d+ .*img/s\s+([0-9.]+)s(?:\s+\(\+([0-9.]+)s val\))?")
DONE = re.compile(r"done: val accuracy ([0-9.]+)%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--cache", required=True, help="KERAS_SOFTMAX_CACHE for the child (empty = cold)")
    parser.add_argument("--log", required=True)
    parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the child")
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args

    # KERAS_SOFTMAX_VERBOSE: the CLI then prints the library's log lines (JAX's compile lines among them)
    # instead of keeping them in its log file.
    env = dict(os.environ, JAX_LOG_COMPILES="1", KERAS_SOFTMAX_VERBOSE="1", KERAS_SOFTMAX_CACHE=args.cache,
               PYTHONUNBUFFERED="1")
    if args.xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    compiles: dict[str, float] = collections.defaultdict(float)
    epochs = []
    accuracy = None
    start = time.perf_counter()
    with open(args.log, "w") as log, subprocess.Popen(
        # The console script's entry point (``-m keras_softmax.cli`` would import the package, and Keras
        # with it, before the entry point could defer Keras's optional imports).
        [sys.executable, "-m", "keras_softmax_cli", "train", *train_args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as child:
        for line in child.stdout:
            elapsed = time.perf_counter() - start
            log.write(f"{elapsed:8.2f}  {line}")
            log.flush()
            if match := COMPILE.search(line):
                stage = {"tracing + transforming": "trace", "jaxpr to MLIR module conversion": "lower"}.get(
                    match.group(1), "compile")
                compiles[f"{stage} {match.group(2)}"] += float(match.group(3))
            if match := DONE.search(line):
                accuracy = float(match.group(1))
            if match := EPOCH.search(line):
                epochs.append({"epoch": int(match.group(1)), "at": round(elapsed, 2),
                               "seconds": float(match.group(2)), "val_seconds": float(match.group(3) or 0)})
    wall = time.perf_counter() - start
    steady = sorted(e["seconds"] for e in epochs[1:])
    summary = {
        "label": args.label, "exit": child.returncode, "wall_seconds": round(wall, 2),
        "first_epoch_ends_at": epochs[0]["at"] if epochs else None,
        "first_epoch_seconds": epochs[0]["seconds"] if epochs else None,
        "first_val_seconds": epochs[0]["val_seconds"] if epochs else None,
        "steady_epoch_seconds": steady[len(steady) // 2] if steady else None,
        "val_accuracy_percent": accuracy,
        "seconds_by_stage": {stage: round(sum(v for k, v in compiles.items() if k.startswith(stage)), 2)
                             for stage in ("trace", "lower", "compile")},
        "slowest": dict(sorted(((k, round(v, 2)) for k, v in compiles.items()), key=lambda kv: -kv[1])[:8]),
        "xla_flags": args.xla_flags,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
