"""Benchmarks behind ``keras-softmax bench`` (and ``bench/*.py``): head cost and pipeline throughput.

- :func:`head_cost_rows`: forward + backward time of every head with its matching loss against the
  number of classes, alone and behind a Dense layer, with plain Dense + softmax as the baseline
  (JAX only: one jitted step per head and size, median of repeated calls).
- :func:`throughput_rows`: the real training pipeline (``train``) against the same model fed
  synthetic in-memory arrays in the same process; steady-state epoch time is the median of the
  epochs after the first, compile time the first epoch minus that.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time

import numpy as np


def hierarchy(num_classes: int) -> list[int]:
    """A balanced fine→coarse map with about sqrt(N) superclasses (CIFAR-100's own map at N=100)."""
    from keras_softmax.heads.hierarchical import grouped_classes

    return grouped_classes(num_classes)


def head_params(name: str, num_classes: int, params=None) -> dict:
    """Head ``name``'s parameters completed for ``num_classes`` (the registry's ``complete_params``, with
    a synthetic superclass map for hierarchical)."""
    from keras_softmax.heads.registry import complete_params

    return complete_params(name, params, num_classes, fine_to_coarse=hierarchy(num_classes))


def time_call(fn, args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, num_classes: int, batch: int, features: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import keras

    from keras_softmax import get_head

    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.integers(0, num_classes, size=batch).astype("int32"))
    if name == "dense_softmax_baseline":
        layer, loss = None, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        num_logits = num_classes
    else:
        head = get_head(name, **head_params(name, num_classes))
        layer, loss = head.layer, head.loss
        num_logits = head.num_logits(num_classes)
        layer.build((batch, num_logits))
    state = [v.value for v in layer.non_trainable_variables] if layer is not None else []

    def head_loss(z):
        if layer is None:
            return loss(y, z)
        out, _ = layer.stateless_call([], state, z, training=True)
        return loss(y, out)

    z = jnp.asarray(rng.normal(size=(batch, num_logits)).astype("float32"))
    h = jnp.asarray(rng.normal(size=(batch, features)).astype("float32"))
    w = jnp.asarray((rng.normal(size=(features, num_logits)) / math.sqrt(features)).astype("float32"))
    head_step = jax.jit(jax.grad(head_loss))
    dense_step = jax.jit(jax.grad(lambda w, h: head_loss(h @ w), argnums=(0, 1)))
    return {
        "head": name, "classes": num_classes, "batch": batch, "features": features,
        "head_ms": 1e3 * time_call(head_step, (z,), repeats),
        "dense_plus_head_ms": 1e3 * time_call(dense_step, (w, h), repeats),
    }


def plot_head_cost(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = plt.get_cmap("tab20").colors
    for index, name in enumerate(dict.fromkeys(r["head"] for r in rows)):
        mine = [r for r in rows if r["head"] == name]
        style = {"color": colours[index % len(colours)], "marker": "osD^v<>ph*XP"[index % 11]}
        if name == "dense_softmax_baseline":
            style = {"color": "black", "linewidth": 2.5, "linestyle": "--", "marker": "o"}
        for ax, key in zip(axes, ("head_ms", "dense_plus_head_ms")):
            ax.plot([r["classes"] for r in mine], [r[key] for r in mine], label=name, **style)
    for ax, title in zip(axes, ("head + loss alone (forward + backward)", "Dense(D→N) + head + loss")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of classes N")
        ax.set_ylabel("ms per step")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)



def head_cost_rows(classes=(100, 1000, 10000, 100000), heads=None, batch=512, features=640, repeats=30,
                   log=print) -> list[dict]:
    """Measure every head (default: all, plus the Dense + softmax baseline) at each class count."""
    import keras

    from keras_softmax import list_heads

    if keras.backend.backend() != "jax":
        raise ValueError("the head-cost benchmark needs KERAS_BACKEND=jax")
    from keras_softmax.heads.registry import head_spec

    owning = [h for h in (heads or []) if head_spec(h).owns_projection]
    if owning:
        raise ValueError(f"{', '.join(owning)} own their projection (no logits to time alone): measure them "
                         "with `keras-softmax bench heads --train-step`")
    default = [h for h in list_heads() if not head_spec(h).owns_projection]
    rows = []
    for name in ["dense_softmax_baseline"] + list(heads or default):
        for n in classes:
            row = measure(name, n, batch, features, repeats)
            rows.append(row)
            log(json.dumps(row))
    return rows


def epoch_timer(times: list):
    """A Keras callback that appends each epoch's seconds to ``times``, the device's work included
    (it waits for the optimizer's step counter at both ends, so asynchronous dispatch cannot hide it)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            times.append(time.perf_counter() - self.start)

    return EpochTimer()


def synthetic_epochs(config, num_train: int, num_classes: int, epochs: int) -> list[float]:
    """Epoch times of ``model.fit`` on random in-memory arrays, same model, compile options and devices."""
    from keras_softmax.data.sources import Dataset
    from keras_softmax.training import distribute
    from keras_softmax.training.metrics import training_metrics
    from keras_softmax.training.optim import make_optimizer
    from keras_softmax.training.trainer import build_for, setup_backend

    setup_backend(config)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(num_train, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, num_classes, size=(num_train,)).astype("int32")
    fake = Dataset("synthetic", [str(i) for i in range(num_classes)], x, y, x[:10], y[:10])
    times = []

    placement = distribute.plan(config.devices, config.batch_size)
    with distribute.scope(placement):
        head, model = build_for(config, fake)
        distribute.prepare_model(model, placement)
        steps = num_train // config.batch_size
        model.compile(optimizer=make_optimizer(config, steps), loss=head.make_loss(config.label_smoothing),
                      metrics=training_metrics(head.output_kind), jit_compile=config.jit_compile,
                      steps_per_execution=config.steps_per_execution)
        model.fit(x[: steps * config.batch_size], y[: steps * config.batch_size], batch_size=config.batch_size,
                  epochs=epochs, shuffle=True, callbacks=[epoch_timer(times)], verbose=0)
    return times


def summarize(label: str, epoch_seconds: list[float], images: int) -> dict:
    steady = statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else epoch_seconds[0]
    return {"run": label, "epoch_seconds": epoch_seconds, "steady_epoch_seconds": steady,
            "images_per_second": images / steady, "compile_seconds": epoch_seconds[0] - steady}



def throughput_rows(config, epochs: int, skip_synthetic: bool = False, log=print) -> dict:
    """Train ``config`` for ``epochs`` with the real pipeline, then the synthetic ceiling; compare."""
    from keras_softmax import environment
    from keras_softmax.job import run_job

    config.epochs, config.checkpoint_every = epochs, 0
    with tempfile.TemporaryDirectory() as tmp:
        report = run_job(config, f"{tmp}/run", log=log)
    images = report["split_sizes"]["train"] // config.batch_size * config.batch_size
    rows = [{**summarize("pipeline", report["epoch_seconds"], images), "devices": report.get("devices"),
             "global_batch": config.batch_size}]
    if not skip_synthetic:
        synthetic = synthetic_epochs(config, report["split_sizes"]["train"], len(report["per_class"]), epochs)
        rows.append(summarize("synthetic", synthetic, images))
        rows.append({"run": "ratio", "pipeline_over_synthetic":
                     rows[0]["images_per_second"] / rows[1]["images_per_second"]})
    return {"config": config.to_dict(), "environment": environment.describe(), "rows": rows,
            "val_accuracy": report["accuracy"], "wall_seconds": report["wall_seconds"]}
