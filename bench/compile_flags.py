"""Compile time against steady step time of the real train step under different XLA flags.

    KERAS_BACKEND=jax python bench/compile_flags.py --config zoo/presets/cifar100-log_softmax-fast.toml \
        --flags "" --flags "--xla_gpu_autotune_level=1" --json OUT/flags.json

Each flag set runs in a fresh process with the compilation cache off: ``model.fit`` of the preset's
model on synthetic in-memory batches for a few short epochs. The first epoch minus a steady one is
the train step's compile time; the median of the others is the steady epoch time, so a flag that
compiles faster but trains slower shows both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, sys
from keras_softmax import benchmark
from keras_softmax.training.config import resolve
config = resolve(sys.argv[1], {"dataset": "cifar100", "compile_cache": False})
times = benchmark.synthetic_epochs(config, int(sys.argv[2]), 100, int(sys.argv[3]))
print("RESULT " + json.dumps(times))
"""


def run(flags: str, config: str, images: int, epochs: int, timeout: float) -> dict:
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip())
    try:
        result = subprocess.run([sys.executable, "-c", CHILD, config, str(images), str(epochs)], env=env,
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"flags": flags, "error": f"did not finish {epochs} epochs in {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        return {"flags": flags, "error": (result.stderr or result.stdout).strip().splitlines()[-3:]}
    times = json.loads(lines[-1][len("RESULT "):])
    steady = sorted(times[1:])[len(times[1:]) // 2]
    return {"flags": flags, "epoch_seconds": times, "steady_epoch_seconds": steady,
            "compile_seconds": times[0] - steady, "images_per_second": images // 512 * 512 / steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--flags", action="append", default=[], help="an XLA_FLAGS set (repeatable)")
    parser.add_argument("--images", type=int, default=45056, help="synthetic images per epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for flags in args.flags or [""]:
        rows.append(run(flags, args.config, args.images, args.epochs, args.timeout))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
