"""Train two heads on the same data and seed, then compare their runs.

    python examples/compare_heads.py [HEAD_A] [HEAD_B]

Uses the library API (the CLI's `keras-softmax train` and `keras-softmax compare` do the same) on
scikit-learn's digits with the built-in digits preset, writing runs under ``runs/compare-*``.
"""

import sys
from pathlib import Path

from keras_softmax.evaluation.compare import compare_runs, format_table
from keras_softmax.evaluation.plots import plot_comparison
from keras_softmax.job import run_job
from keras_softmax.training import resolve


def main(head_a: str = "softmax", head_b: str = "sparsemax") -> None:
    runs = []
    for head in (head_a, head_b):
        out = Path("runs") / f"compare-{head}"
        run_job(resolve(None, {"head": head, "dataset": "digits"}), out, overwrite=True)
        runs.append(out)
    rows = compare_runs(runs)
    print(format_table(rows))
    print("plot:", plot_comparison(rows, Path("runs") / "compare.png"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
