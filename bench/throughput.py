"""Throughput of the real training pipeline against the same model on synthetic in-memory data.

    KERAS_BACKEND=jax python bench/throughput.py --dataset PATH_OR_NAME --epochs 4 --json out.json

Both runs use the same config (``--config``/``--set``), model, optimizer and batch size in one
process. The synthetic run feeds random uint8 arrays straight to ``model.fit`` (the ceiling); the
real run is ``keras_softmax.training.train`` end to end. Steady-state epoch time is the median of the
epochs after the first; compile time is the first epoch minus that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np


def synthetic_epochs(config, num_train: int, num_classes: int, epochs: int) -> list[float]:
    """Epoch times of ``model.fit`` on random in-memory arrays, same model and compile options."""
    import keras

    from keras_softmax.data.sources import Dataset
    from keras_softmax.training.metrics import accuracy_metric
    from keras_softmax.training.optim import make_optimizer
    from keras_softmax.training.trainer import build_for, setup_backend

    setup_backend(config)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(num_train, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, num_classes, size=(num_train,)).astype("int32")
    fake = Dataset("synthetic", [str(i) for i in range(num_classes)], x, y, x[:10], y[:10])
    head, model = build_for(config, fake)
    steps = num_train // config.batch_size
    model.compile(optimizer=make_optimizer(config, steps), loss=head.make_loss(config.label_smoothing),
                  metrics=[accuracy_metric()], jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            times.append(time.perf_counter() - self.start)

    model.fit(x[: steps * config.batch_size], y[: steps * config.batch_size], batch_size=config.batch_size,
              epochs=epochs, shuffle=True, callbacks=[Timer()], verbose=0)
    return times


def summarize(label: str, epoch_seconds: list[float], images: int) -> dict:
    steady = statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else epoch_seconds[0]
    return {"run": label, "epoch_seconds": epoch_seconds, "steady_epoch_seconds": steady,
            "images_per_second": images / steady, "compile_seconds": epoch_seconds[0] - steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", default=None)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()

    from keras_softmax import environment
    from keras_softmax.training.config import parse_head_param, resolve
    from keras_softmax.training.trainer import train

    overrides = dict(parse_head_param(s) for s in args.set)
    overrides.update(dataset=args.dataset, epochs=args.epochs, checkpoint_every=0)
    config = resolve(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        report = train(config, f"{tmp}/run")
    images = report["split_sizes"]["train"] // config.batch_size * config.batch_size
    rows = [summarize("pipeline", report["epoch_seconds"], images)]
    if not args.skip_synthetic:
        rows.append(summarize("synthetic", synthetic_epochs(config, report["split_sizes"]["train"],
                                                             len(report["per_class"]), args.epochs), images))
        rows.append({"run": "ratio", "pipeline_over_synthetic":
                     rows[0]["images_per_second"] / rows[1]["images_per_second"]})
    result = {"config": config.to_dict(), "environment": environment.describe(), "rows": rows,
              "val_accuracy": report["accuracy"], "wall_seconds": report["wall_seconds"]}
    for row in rows:
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
