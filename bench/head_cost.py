"""Forward + backward cost of every head (with its matching loss) against the number of classes.

    KERAS_BACKEND=jax python bench/head_cost.py --classes 100 1000 10000 100000 --json out.json --plot out.png

For each head and N, times one jitted step computing the gradient of ``loss(y, head(z))`` w.r.t.
the logits ``z`` (batch B, N classes), and the same step behind a Dense layer (features D → N),
i.e. what a classifier pays per step for its output layer. The baseline is plain Dense + softmax
with cross-entropy on logits. Median of ``--repeats`` timed calls after a warm-up; JAX only.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np


def hierarchy(num_classes: int) -> list[int]:
    """A balanced fine→coarse map with about sqrt(N) superclasses (CIFAR-100's own map at N=100)."""
    if num_classes == 100:
        from keras_softmax.cifar100 import FINE_TO_COARSE

        return list(FINE_TO_COARSE)
    groups = max(2, int(round(math.sqrt(num_classes))))
    return [i * groups // num_classes for i in range(num_classes)]


def head_params(name: str, num_classes: int) -> dict:
    return {"fine_to_coarse": hierarchy(num_classes)} if name == "hierarchical" else {}


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


def plot(rows, path) -> None:
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
    if args.replot:
        with open(args.replot) as handle:
            plot(json.load(handle)["rows"], args.plot)
        return

    import keras

    from keras_softmax import environment, list_heads

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    rows = []
    for name in ["dense_softmax_baseline"] + (args.heads or list_heads()):
        for n in args.classes:
            row = measure(name, n, args.batch, args.features, args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"environment": environment.describe(), "rows": rows}, handle, indent=2)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
