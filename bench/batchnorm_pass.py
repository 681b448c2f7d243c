"""Which images the averaged weights' BatchNorm statistics come from: every pass on the same trained weights.

A run with weight averaging ends with one pass over the training images that recomputes every BatchNorm
layer's statistics for the averaged weights (``swa_batchnorm``; keras_softmax.training.batchnorm). Its
images can be augmented as in training (``recompute``), cropped and flipped only (``recompute_crop_flip``)
or left as at inference (``recompute_plain``). The pass is the run's last step, so the three settings train
the same weights: this loads each finished run's ``model.keras``, runs each pass on its weights (the
trainer's pass: the run's batch size and seed) and scores the model after each on the run's validation
split and, where its dataset has one, its test split. Differences between the rows of one run are the
pass's alone, with no training noise in them.

    python bench/batchnorm_pass.py runs/strong-s0 runs/strong-s1 --dataset /tmp/c --json passes.jsonl

One JSON line per (run, setting, split): top-1, NLL (p floored at 1e-12), ECE (15 bins) and the pass's
seconds. The rows of the setting the run trained with reproduce its own report (a check of the tool).

    python bench/batchnorm_pass.py --choose passes.jsonl

prints the setting to keep, by the rule declared before any GPU run (bench/RESULTS.md §9): the highest mean
validation top-1 over the runs that have every setting's validation row; on a tie the preset's ``recompute``.
Test rows never enter it. A tie is a difference within ``--margin`` (default 0.05 points): two passes of one
setting on the same weights differ by that much (their draws of the augmentation; 0.02 and 0.04 points of
validation top-1 on 2026-12-07), so a smaller lead is not the setting's. (The margin came after the first
rows: declared as an exact tie, the rule kept ``recompute_crop_flip`` by 0.01 points; RESULTS §9 says so.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_softmax.training.config import BATCHNORM_PASSES  # noqa: E402  (after the path, for a plain checkout)

SETTINGS = tuple(BATCHNORM_PASSES)  # the preset's "recompute" first


def scores(model, output_kind: str, images, labels, batch_size: int) -> dict:
    """Top-1, NLL and ECE of ``model`` on ``images`` at inference."""
    from keras_softmax.evaluation.calibration import negative_log_likelihood
    from keras_softmax.evaluation.evaluate import predict_probabilities
    from keras_softmax.evaluation.metrics import expected_calibration_error

    probabilities = predict_probabilities(model, images, output_kind, batch_size=batch_size)
    return {"accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "nll": float(negative_log_likelihood(labels, probabilities)),
            "ece": float(expected_calibration_error(labels, probabilities))}


def passes(run_dir, dataset: str | None = None, settings=SETTINGS):
    """The rows of one finished run: each setting's pass on the run's final weights, then its scores."""
    from keras_softmax.data import load_dataset
    from keras_softmax.export import load_keras_file
    from keras_softmax.heads import get_head
    from keras_softmax.training.batchnorm import recompute_batchnorm_statistics
    from keras_softmax.training.config import resolve
    from keras_softmax.training.rundir import RunDirectory

    run = RunDirectory(run_dir)
    config = resolve(run.config)
    data = load_dataset(dataset or config.dataset, val_split=config.val_split, seed=config.seed,
                        limit=config.limit or None, labels=config.labels)
    model = load_keras_file(run.model_keras)
    output_kind = get_head(config.head).output_kind
    weights = model.get_weights()
    splits = [name for name, images in (("val", data.x_val), ("test", data.x_test))
              if images is not None and len(images)]
    for setting in settings:
        model.set_weights(weights)
        started = time.perf_counter()
        recompute_batchnorm_statistics(model, data.x_train, config.batch_size, seed=config.seed,
                                       augmentation=BATCHNORM_PASSES[setting])
        seconds = time.perf_counter() - started
        for split in splits:
            images, labels = data.split(split)
            yield {"run": str(run_dir), "seed": config.seed, "trained_with": config.swa_batchnorm,
                   "swa_batchnorm": setting, "split": split, "examples": int(len(labels)),
                   "pass_seconds": round(seconds, 2), **scores(model, output_kind, images, labels, 500)}


#: Two passes of one setting on the same weights differ by up to this much validation top-1 (a fraction).
PASS_NOISE = 0.0005


def choose(rows, margin: float = PASS_NOISE) -> tuple[str, dict]:
    """The setting to keep from ``rows`` (validation rows only) and each setting's mean validation top-1: the
    highest mean, if it leads the preset's ``recompute`` by more than ``margin``; else ``recompute``."""
    by_run = {}
    for row in rows:
        if row["split"] == "val":
            by_run.setdefault(row["run"], {})[row["swa_batchnorm"]] = row["accuracy"]
    complete = [run for run in by_run.values() if set(SETTINGS) <= set(run)]
    if not complete:
        raise SystemExit("no run has a validation row for every setting: nothing to choose by")
    means = {setting: float(np.mean([run[setting] for run in complete])) for setting in SETTINGS}
    best = max(SETTINGS, key=lambda setting: (means[setting], -SETTINGS.index(setting)))
    return (best if means[best] > means[SETTINGS[0]] + margin else SETTINGS[0]), means


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="finished run directories (with model.keras)")
    parser.add_argument("--choose", metavar="JSONL", help="print the setting to keep by the rows of this file")
    parser.add_argument("--margin", type=float, default=100 * PASS_NOISE,
                        help="points of validation top-1 a setting must lead recompute by (default %(default)g)")
    parser.add_argument("--dataset", help="the runs' dataset, if not where their config.toml says")
    parser.add_argument("--json", help="append one JSON line per row to this file")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated swa_batchnorm passes")
    args = parser.parse_args(argv)
    if args.choose:
        with open(args.choose) as handle:
            setting, means = choose([json.loads(line) for line in handle if line.strip()], args.margin / 100)
        print(setting)  # the first line: what a script reads
        print("mean validation top-1: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in means.items()))
        return 0
    if not args.runs:
        parser.error("give finished run directories, or --choose JSONL")
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)} (choose from {', '.join(SETTINGS)})")
    for run_dir in args.runs:
        for row in passes(run_dir, args.dataset, settings):
            print(f"{row['run']} {row['swa_batchnorm']:<20} {row['split']:<4} top-1 {100 * row['accuracy']:.2f} % "
                  f"NLL {row['nll']:.4f} ECE {row['ece']:.4f} (pass {row['pass_seconds']:.1f} s)", flush=True)
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
