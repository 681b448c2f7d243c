"""Throughput of the real training pipeline against the same model on synthetic in-memory data.

    KERAS_BACKEND=jax python bench/throughput.py --dataset PATH_OR_NAME --config PRESET --epochs 4 --json out.json

Same as ``keras-softmax bench throughput``; the measurement lives in ``keras_softmax.benchmark``.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", default=None)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()

    from keras_softmax import benchmark
    from keras_softmax.training.config import parse_head_param, resolve

    overrides = dict(parse_head_param(s) for s in args.set)
    overrides["dataset"] = args.dataset
    result = benchmark.throughput_rows(resolve(args.config, overrides), args.epochs, args.skip_synthetic)
    for row in result["rows"]:
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
