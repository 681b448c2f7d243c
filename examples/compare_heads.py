"""Train heads on the same data and seed, then compare their runs.

    python examples/compare_heads.py [HEAD ...]          # default: softmax sparsemax

Any head that `keras-softmax heads` lists works. Uses the library API (the CLI's `keras-softmax train`
and `keras-softmax compare` do the same) on scikit-learn's digits with the built-in digits preset,
writing runs under ``runs/compare-<head>`` and the bar chart to ``runs/compare.png``.
"""

import sys
from pathlib import Path

from keras_softmax.evaluation.compare import compare_runs, format_table
from keras_softmax.evaluation.plots import plot_comparison
from keras_softmax.heads import list_heads
from keras_softmax.job import run_job
from keras_softmax.training import resolve


#: Digits have no superclasses, which the hierarchical head needs: here, even and odd digits.
DIGITS_HEAD_PARAMS = {"hierarchical": {"fine_to_coarse": [digit % 2 for digit in range(10)]}}


def main(*heads: str, out: str = "runs", **settings) -> list[dict]:
    """Train each of ``heads`` (``settings``: any config setting, e.g. ``epochs=2``), print the table."""
    heads = heads or ("softmax", "sparsemax")
    unknown = [h for h in heads if h not in list_heads()]
    if unknown:
        sys.exit(f"unknown head {', '.join(unknown)}; choose from: {', '.join(list_heads())}")
    runs = []
    for head in heads:
        run = Path(out) / f"compare-{head}"
        config = {"dataset": "digits", "head_params": DIGITS_HEAD_PARAMS.get(head, {}), **settings, "head": head}
        run_job(resolve(None, config), run, overwrite=True)
        runs.append(run)
    rows = compare_runs(runs)
    print(format_table(rows))
    print("plot:", plot_comparison(rows, Path(out) / "compare.png"))
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
