"""Plot validation accuracy against wall time (``elapsed_seconds``) from runs' history.csv files.

    python bench/time_to_accuracy.py LABEL=PATH/history.csv [LABEL=...] --out plot.png

``elapsed_seconds`` counts from the start of ``train()`` (data loading and compilation included) to
the end of each epoch; the process's own start-up (imports) is not in it.
"""

from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val_accuracy")]
    return [float(r["elapsed_seconds"]) for r in rows], [100 * float(r["val_accuracy"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=HISTORY_CSV")
    parser.add_argument("--out", required=True)
    parser.add_argument("--targets", type=float, nargs="*", default=[65.0, 72.0])
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(8, 5))
    for spec in args.runs:
        label, _, path = spec.partition("=")
        seconds, accuracy = read(path)
        ax.plot(seconds, accuracy, marker=".", label=label)
    for target in args.targets:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("wall seconds since train() started (data + compilation included)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("CIFAR-100 time to accuracy, log_softmax head")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
