"""Forward + backward cost of every head (with its matching loss) against the number of classes.

    KERAS_BACKEND=jax python bench/head_cost.py --classes 100 1000 10000 100000 --json out.json --plot out.png
    python bench/head_cost.py --replot out.json --plot out.png

Same as ``keras-softmax bench heads``; the measurement lives in ``keras_softmax.benchmark``.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--features", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--heads", nargs="*", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--replot", metavar="JSON", help="only redraw --plot from an earlier --json file")
    args = parser.parse_args()

    from keras_softmax import benchmark, environment

    if args.replot:
        with open(args.replot) as handle:
            benchmark.plot_head_cost(json.load(handle)["rows"], args.plot)
        return
    rows = benchmark.head_cost_rows(args.classes, args.heads, args.batch, args.features, args.repeats)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"environment": environment.describe(), "rows": rows}, handle, indent=2)
    if args.plot:
        benchmark.plot_head_cost(rows, args.plot)


if __name__ == "__main__":
    main()
