"""Many classes, measured: training-step cost against N, and accuracy on a synthetic Zipf task.

Two benchmarks behind ``keras-softmax bench`` (GUIDE §10), JAX only (``KERAS_BACKEND=jax``, XLA):

- :func:`train_step_rows` (``bench heads --train-step``): the time of one *training step* —
  forward, backward and optimizer update of projection + head + loss, Keras's own ``train_step``
  under ``jax.jit`` with the state donated, as ``fit`` runs it — and the peak device memory, for each
  head and number of classes, always beside plain ``Dense(N)`` + softmax cross-entropy
  (``dense_softmax_baseline``) in the same run. Each (head, N) runs in a fresh process (``isolate``),
  so that JAX's process-wide ``peak_bytes_in_use`` is that configuration's own peak; XLA's
  ``memory_analysis()`` of the compiled step is recorded as well (deterministic, also on CPU).
- :func:`many_classes_rows` (``bench many-classes``): a seeded synthetic classification task with
  ``N`` classes whose frequencies follow Zipf's law, ``p(rank r) ∝ 1 / (r + 1)^s``. A fixed random
  teacher: class prototypes ``mu_c ~ N(0, I / D)``, inputs ``x = mu_y + noise * eps``,
  ``eps ~ N(0, I / D)``, labels drawn afresh every step (infinite data; class ids are a seeded
  permutation of the frequency ranks, so heads must learn the order from the labels). The same
  model (``Dense(hidden, relu)`` then the head's projection) is trained with each head for the same
  number of steps; reported: top-1 / top-5 on a held-out set, ms per step, and the training time to
  reach the full softmax's final top-1 accuracy.

Both use the Keras ``train_step`` of a compiled model, so what is timed is what ``fit`` does per step,
without the host-side data loop (inputs live on the device).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import statistics
import time

import numpy as np

BASELINE = "dense_softmax_baseline"


def _require_jax():
    import keras

    if keras.backend.backend() != "jax":
        raise ValueError("this benchmark needs KERAS_BACKEND=jax")


def zipf_probabilities(num_classes: int, exponent: float) -> np.ndarray:
    """``p(r) ∝ 1 / (r + 1)^s`` over ranks ``r = 0 .. N-1`` (float64, sums to 1)."""
    p = 1.0 / np.arange(1, num_classes + 1, dtype=np.float64) ** exponent
    return p / p.sum()


def default_head_params(name: str, num_classes: int) -> dict:
    """Head parameters used when none are given (the benchmarks' documented defaults)."""
    if name == "hierarchical":
        from keras_softmax.benchmark import hierarchy

        return {"fine_to_coarse": hierarchy(num_classes)}
    return {}


def completed_head_params(name: str, num_classes: int, head_params=None) -> dict:
    """``head_params`` completed for ``num_classes`` by the registry (the one place that does it)."""
    from keras_softmax.benchmark import head_params as benchmark_params

    return benchmark_params(name, num_classes, head_params)


def build_classifier(name: str, num_classes: int, input_dim: int, hidden: int = 0, head_params=None,
                     seed: int = 0):
    """``Input(input_dim)`` [-> ``Dense(hidden, relu)``] -> the head's projection -> head, and its loss.

    ``name == "dense_softmax_baseline"``: ``Dense(N)`` + ``SparseCategoricalCrossentropy(from_logits)``.
    Heads that own their projection take the features directly; other heads get ``Dense(num_logits)``.
    Layers follow the global dtype policy (bf16 matmuls under ``mixed_bfloat16``).
    """
    import keras

    from keras_softmax.heads import get_head
    from keras_softmax.models.sparse_rows import functional_model

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_dim,), name="features")
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs) if hidden else inputs
    if name == BASELINE:
        outputs = keras.layers.Dense(num_classes, name="logits")(h)
        return keras.Model(inputs, outputs), keras.losses.SparseCategoricalCrossentropy(from_logits=True), None
    head = get_head(name, **completed_head_params(name, num_classes, head_params))
    if head.owns_projection:
        outputs = head.layer(h)
    else:
        outputs = head.layer(keras.layers.Dense(head.num_logits(num_classes), name="logits")(h))
    return functional_model(inputs, outputs, head.layer), head.loss, head


def make_optimizer(name: str, learning_rate: float):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"optimizer must be sgd, momentum or adam (got {name!r})")


def model_state(model):
    """The state tuple Keras's JAX ``train_step`` takes."""
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )


def memory_stats() -> dict:
    """``bytes_in_use`` / ``peak_bytes_in_use`` of the first device, or Nones where unavailable (CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - some platforms raise instead of returning None
        stats = {}
    return {"bytes_in_use": stats.get("bytes_in_use"), "peak_bytes_in_use": stats.get("peak_bytes_in_use")}


def _memory_analysis(compiled) -> dict:
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        analysis = None
    if analysis is None:
        return {}
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes")
    return {f"xla_{k}": int(getattr(analysis, k)) for k in keys if hasattr(analysis, k)}


# --------------------------------------------------------------------------- training-step cost
def train_step_row(name: str, num_classes: int, features: int = 640, batch: int = 512,
                   precision: str = "mixed_bfloat16", optimizer: str = "sgd", learning_rate: float = 0.01,
                   repeats: int = 20, rounds: int = 5, head_params=None, zipf: float = 1.0, seed: int = 0) -> dict:
    """One training step of ``Input(features)`` -> projection + head + loss, in this process.

    Labels are Zipf-distributed (exponent ``zipf``; class id = frequency rank), features standard
    normal. Returns the median over ``rounds`` of the mean step time of ``repeats`` back-to-back steps
    (milliseconds; the device is synchronised once per round), the compile time, parameter count,
    and memory (see the module docstring).
    """
    _require_jax()
    import jax
    import keras

    keras.config.set_dtype_policy(precision)
    started = time.perf_counter()
    model, loss, head = build_classifier(name, num_classes, features, head_params=head_params, seed=seed)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss, jit_compile=True)
    rng = np.random.default_rng(seed)
    x = jax.numpy.asarray(rng.standard_normal((batch, features), dtype=np.float32))
    y = jax.numpy.asarray(rng.choice(num_classes, size=batch, p=zipf_probabilities(num_classes, zipf)).astype("int32"))
    model.train_on_batch(x, y)  # builds the optimizer and the compiled loss (and compiles Keras's own step)
    resident = memory_stats()["bytes_in_use"]
    state = model_state(model)
    grad_ms = _grad_only_ms(model, state, x, y, repeats, rounds)
    step = jax.jit(model.train_step, donate_argnums=0)
    compile_started = time.perf_counter()
    compiled = step.lower(state, (x, y)).compile()
    compile_seconds = time.perf_counter() - compile_started
    logs, state = compiled(state, (x, y))
    jax.block_until_ready(state)
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            logs, state = compiled(state, (x, y))
        jax.block_until_ready(state)
        means.append((time.perf_counter() - start) / repeats)
    memory = memory_stats()
    row = {
        "head": name, "classes": num_classes, "features": features, "batch": batch, "precision": precision,
        "optimizer": optimizer, "step_ms": 1e3 * statistics.median(means), "grad_ms": grad_ms,
        "step_ms_rounds": [1e3 * m for m in means], "compile_seconds": compile_seconds,
        "params": int(model.count_params()),
        "head_params": _jsonable_params(head.params if head is not None else {}),
        "loss": float(np.asarray(logs["loss"])),
        "resident_bytes": resident, "peak_bytes": memory["peak_bytes_in_use"],
        "setup_seconds": compile_started - started,
    }
    row.update(_memory_analysis(compiled))
    return row


def _grad_only_ms(model, state, x, y, repeats: int, rounds: int) -> float:
    """Milliseconds of forward + backward alone (Keras's loss and gradients, no optimizer update; for a
    model with sparse row updates, the gradients its training step computes: by row)."""
    import jax

    from keras_softmax.models.sparse_rows import SparseRowsModel

    trainable, non_trainable, optimizer_variables, metrics_variables = state

    def grads(trainable):
        if isinstance(model, SparseRowsModel) and model.row_update_rule() == "sparse":
            return model.jax_gradients((trainable, non_trainable, optimizer_variables, metrics_variables), (x, y))
        (loss, _), g = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)(
            trainable, non_trainable, metrics_variables, x, y, None, training=True,
            optimizer_variables=optimizer_variables)
        return loss, g

    fn = jax.jit(grads)
    jax.block_until_ready(fn(trainable))
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(trainable)
        jax.block_until_ready(out)
        means.append((time.perf_counter() - start) / repeats)
    return 1e3 * statistics.median(means)


def _jsonable_params(params: dict) -> dict:
    """Head parameters for a JSON row: long lists (class orders, maps) summarised by their length."""
    out = {}
    for key, value in params.items():
        if isinstance(value, (list, tuple)) and len(value) > 16:
            out[key] = f"<{len(value)} entries>"
        else:
            out[key] = value
    return out


def _run_isolated(fn, kwargs: dict, isolate: bool) -> dict:
    """``fn(**kwargs)`` in a fresh spawned process (``isolate``) or here; errors become a row."""
    if not isolate:
        return fn(**kwargs)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(fn, **kwargs).result()
        except Exception as error:  # noqa: BLE001 - e.g. out of memory at 1M classes: report, go on
            return {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}"}


def train_step_rows(classes=(10_000, 100_000, 1_000_000), heads=("adaptive", "sampled"), features=640,
                    batch=512, precision="mixed_bfloat16", optimizer="sgd", repeats=20, rounds=5,
                    head_params=None, isolate=True, log=print) -> list[dict]:
    """:func:`train_step_row` for the baseline and every head at every class count.

    ``head_params``: ``{head: {param: value}}`` applied at every N. ``speedup`` is the baseline's step
    time at the same N over the head's; ``memory_ratio`` likewise for the peak memory.
    """
    _require_jax()
    rows = []
    names = [BASELINE] + [h for h in heads if h != BASELINE]
    for n in classes:
        for name in names:
            kwargs = dict(name=name, num_classes=int(n), features=features, batch=batch, precision=precision,
                          optimizer=optimizer, repeats=repeats, rounds=rounds,
                          head_params=(head_params or {}).get(name))
            row = _run_isolated(train_step_row, kwargs, isolate)
            row.setdefault("head", name)
            row.setdefault("classes", int(n))
            rows.append(row)
            log(json.dumps(row))
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``speedup`` and ``memory_ratio`` of each row against the baseline row at the same N."""
    base = {r["classes"]: r for r in rows if r["head"] == BASELINE and "step_ms" in r}
    for row in rows:
        ref = base.get(row["classes"])
        if ref is None or "step_ms" not in row:
            continue
        row["speedup"] = ref["step_ms"] / row["step_ms"]
        if row.get("peak_bytes") and ref.get("peak_bytes"):
            row["memory_ratio"] = ref["peak_bytes"] / row["peak_bytes"]


def _gib(value):
    return "—" if not value else f"{value / 2**30:.2f}"


def step_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`train_step_rows` (for ``bench/RESULTS.md``)."""
    lines = ["| head | N | step ms | fwd+bwd ms | speedup vs Dense+softmax | peak GiB | XLA temp GiB | params |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['head']}` | {r['classes']:,} | {r['error']} | | | | | |")
            continue
        speedup = f"{r['speedup']:.2f}×" if "speedup" in r else "—"
        lines.append(f"| `{r['head']}` | {r['classes']:,} | {r['step_ms']:.3f} | {r['grad_ms']:.3f} | {speedup} "
                     f"| {_gib(r.get('peak_bytes'))} "
                     f"| {_gib(r.get('xla_temp_size_in_bytes'))} | {r['params']:,} |")
    return "\n".join(lines)


def plot_train_steps(rows: list[dict], path) -> None:
    """Step time and peak memory against N, one line per head, the baseline dashed black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = plt.get_cmap("tab10").colors
    for index, name in enumerate(dict.fromkeys(r["head"] for r in rows)):
        mine = [r for r in rows if r["head"] == name and "step_ms" in r]
        style = {"color": colours[index % 10], "marker": "osD^v<>ph*"[index % 10]}
        if name == BASELINE:
            style = {"color": "black", "linewidth": 2.5, "linestyle": "--", "marker": "o"}
        axes[0].plot([r["classes"] for r in mine], [r["step_ms"] for r in mine], label=name, **style)
        memory = [(r["classes"], r.get("peak_bytes") or r.get("xla_temp_size_in_bytes")) for r in mine]
        memory = [(n, b / 2**30) for n, b in memory if b]
        if memory:
            axes[1].plot(*zip(*memory), label=name, **style)
    axes[0].set_title("training step: forward + backward + update (ms)")
    axes[1].set_title("peak device memory (GiB; XLA temp bytes where no device stats)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of classes N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- synthetic Zipf task
class ZipfTask:
    """The seeded synthetic task (module docstring); arrays live on the JAX device.

    Args:
        num_classes: N.
        input_dim: D, the size of the inputs x.
        zipf: exponent s of the class frequencies.
        noise: scale of the input noise relative to the prototypes (both ~unit norm). At N = 100,000,
            D = 128, s = 1 the Bayes classifier (true prototypes and priors) scores top-1 ~0.99 at
            noise 1.5, ~0.93 at 2.0 (the default), ~0.73 at 2.5 (1,000 held-out draws, numpy): learnt
            models fall short of it mainly on the rare classes, which the heads treat differently.
        seed: seeds the prototypes, the class permutation and the held-out set.
    """

    def __init__(self, num_classes=100_000, input_dim=128, zipf=1.0, noise=2.0, seed=0):
        import jax.numpy as jnp

        self.num_classes, self.input_dim, self.zipf, self.noise, self.seed = num_classes, input_dim, zipf, noise, seed
        rng = np.random.default_rng(seed)
        self.prototypes_np = (rng.standard_normal((num_classes, input_dim)) / math.sqrt(input_dim)).astype("float32")
        self.class_of_rank_np = rng.permutation(num_classes).astype("int32")  # rank -> class id
        self.probabilities = zipf_probabilities(num_classes, zipf)
        cdf = np.cumsum(self.probabilities)
        cdf[-1] = 1.0
        self.prototypes = jnp.asarray(self.prototypes_np)
        self.class_of_rank = jnp.asarray(self.class_of_rank_np)
        self.cdf = jnp.asarray(cdf.astype("float32"))

    @property
    def tables(self):
        """The device arrays :meth:`draw` needs; pass them into jitted code as arguments (not closed
        over: a closed-over array would be baked into the compiled program as a constant)."""
        return self.prototypes, self.class_of_rank, self.cdf

    def draw(self, key, batch: int, tables=None):
        """A batch ``(x, y)`` drawn on the device from ``key`` (jittable)."""
        import jax
        import jax.numpy as jnp

        prototypes, class_of_rank, cdf = tables if tables is not None else self.tables
        k_label, k_noise = jax.random.split(key)
        u = jax.random.uniform(k_label, (batch,))
        rank = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), self.num_classes - 1)
        y = class_of_rank[rank]
        eps = jax.random.normal(k_noise, (batch, self.input_dim)) / math.sqrt(self.input_dim)
        return prototypes[y] + self.noise * eps, y.astype("int32")

    def held_out(self, size: int):
        """A fixed held-out set (numpy), drawn with its own seed."""
        rng = np.random.default_rng(self.seed + 1)
        ranks = rng.choice(self.num_classes, size=size, p=self.probabilities)
        y = self.class_of_rank_np[ranks]
        eps = rng.standard_normal((size, self.input_dim)) / math.sqrt(self.input_dim)
        return (self.prototypes_np[y] + self.noise * eps).astype("float32"), y.astype("int32")

    def class_order_from(self, labels) -> list[int]:
        """Class ids by decreasing count in ``labels`` (what the trainer gives adaptive / sampled)."""
        counts = np.bincount(np.asarray(labels), minlength=self.num_classes)
        return [int(c) for c in np.argsort(-counts, kind="stable")]

    def describe(self) -> dict:
        return {"num_classes": self.num_classes, "input_dim": self.input_dim, "zipf": self.zipf,
                "noise": self.noise, "seed": self.seed}


def topk_function(model, k: int = 5):
    """A jitted ``(trainable, non_trainable, x) -> top-k class indices`` of ``model``'s inference output."""
    import jax

    k = min(k, model.output_shape[-1])

    def topk(trainable, non_trainable, x):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return jax.lax.top_k(out.astype("float32"), k)[1]

    return jax.jit(topk)


def topk_indices(fn, state, x, batch: int = 1024) -> np.ndarray:
    """``(len(x), k)`` top-k class indices of ``fn = topk_function(model)`` with the train ``state``."""
    import jax.numpy as jnp

    parts = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        if len(xb) < batch:  # one compiled shape: pad the last batch
            xb = np.concatenate([xb, np.zeros((batch - len(xb),) + xb.shape[1:], xb.dtype)])
        parts.append(np.asarray(fn(state[0], state[1], jnp.asarray(xb)))[: len(x) - start])
    return np.concatenate(parts)


def topk_accuracy(idx: np.ndarray, y) -> tuple[float, float]:
    """Top-1 and top-k accuracy of the ``(n, k)`` indices of :func:`topk_indices` against labels ``y``."""
    labels = np.asarray(y)[:, None]
    return float((idx[:, 0] == labels[:, 0]).mean()), float((idx == labels).any(-1).mean())


def frequency_bands(task: "ZipfTask", labels, predictions, cutoffs=None) -> list[dict]:
    """Top-1 by band of class-frequency ranks: where a head gains or loses against another.

    Bands are ``[0, c_0), [c_0, c_1), ...`` of the classes' true frequency ranks (``cutoffs``: by
    default :func:`keras_softmax.heads.adaptive.default_cutoffs`, adaptive's clusters). Per band:
    ``share`` of the rows whose label is in it, ``top1`` on those rows, ``predicted_share`` of all
    rows predicted into it (above ``share``: the head predicts that band's classes too often), and
    ``in_band`` (the rows of the band whose prediction stays in it).
    """
    from keras_softmax.heads.adaptive import default_cutoffs

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    rank_of_class = np.empty(task.num_classes, dtype=np.int64)
    rank_of_class[task.class_of_rank_np] = np.arange(task.num_classes)
    bounds = [0] + list(default_cutoffs(task.num_classes) if cutoffs is None else cutoffs) + [task.num_classes]
    true_rank, predicted_rank = rank_of_class[labels], rank_of_class[predictions]
    bands = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = (true_rank >= lo) & (true_rank < hi)
        predicted_in = (predicted_rank >= lo) & (predicted_rank < hi)
        bands.append({"ranks": [int(lo), int(hi)], "share": float(rows.mean()),
                      "predicted_share": float(predicted_in.mean()),
                      "top1": float((predictions[rows] == labels[rows]).mean()) if rows.any() else None,
                      "in_band": float(predicted_in[rows].mean()) if rows.any() else None})
    return bands


def many_classes_run(name: str, task_kwargs: dict, steps: int = 5000, batch: int = 512, hidden: int = 640,
                     precision: str = "mixed_bfloat16", optimizer: str = "adam", learning_rate: float = 1e-3,
                     eval_every: int = 250, test_size: int = 20_000, head_params=None, order_sample: int = 200_000,
                     seed: int = 0) -> dict:
    """Train one head on the task for ``steps`` steps; evaluate every ``eval_every`` steps.

    adaptive and sampled get ``class_order`` from the labels of ``order_sample`` training draws (as the
    trainer derives it from a dataset's training labels) unless ``head_params`` sets it. Timing: the
    training clock runs only over the steps (synchronised before each evaluation), not evaluation or
    compilation; each step draws its batch on the device, and the steps between two evaluations run
    as one compiled scan, so the time is the device's, not Python's dispatch of each step.
    """
    _require_jax()
    import jax
    import keras

    keras.config.set_dtype_policy(precision)
    task = ZipfTask(**task_kwargs)
    params = dict(head_params or {})
    from keras_softmax.heads.registry import head_spec

    if name != BASELINE and "class_order" in head_spec(name).parameters() and "class_order" not in params:
        keys = jax.random.split(jax.random.PRNGKey(seed + 7), max(1, order_sample // batch))
        labels = np.concatenate([np.asarray(task.draw(k, batch)[1]) for k in keys])
        params["class_order"] = task.class_order_from(labels)
    model, loss, head = build_classifier(name, task.num_classes, task.input_dim, hidden=hidden, head_params=params,
                                         seed=seed)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss, jit_compile=True)
    x0, y0 = task.draw(jax.random.PRNGKey(seed + 11), batch)
    model.train_on_batch(x0, y0)  # builds optimizer and loss: step 1 of `steps`
    state = model_state(model)

    def segment(state, keys, tables):
        """``len(keys)`` training steps in one device program (a scan; no host round trip per step)."""
        def one_step(state, key):
            x, y = task.draw(key, batch, tables)
            logs, state = model.train_step(state, (x, y))
            return state, logs["loss"]

        state, losses = jax.lax.scan(one_step, state, keys)
        return losses[-1], state

    run_segment = jax.jit(segment, donate_argnums=0)
    key, tables = jax.random.PRNGKey(seed + 12), task.tables
    compile_started = time.perf_counter()
    first = min(eval_every - 1, steps - 1)  # step 1 was train_on_batch
    compiled = {first: run_segment.lower(state, jax.random.split(key, first), tables).compile()} if first else {}
    compile_seconds = time.perf_counter() - compile_started
    x_test, y_test = task.held_out(test_size)
    topk = topk_function(model)

    history, train_seconds, done, loss_value = [], 0.0, 1, float("nan")
    segment_ms = []
    while done < steps:
        todo = min(eval_every - done % eval_every, steps - done)
        keys = jax.random.split(jax.random.fold_in(key, done), todo)
        if todo not in compiled:  # a full segment after the first, or the last one
            compiled[todo] = run_segment.lower(state, keys, tables).compile()
        jax.block_until_ready((state, keys))
        start = time.perf_counter()
        loss_value, state = compiled[todo](state, keys, tables)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - start
        segment_ms.append(1e3 * elapsed / todo)
        train_seconds += elapsed
        done += todo
        predictions = topk_indices(topk, state, x_test)
        top1, top5 = topk_accuracy(predictions, y_test)
        history.append({"step": done, "train_seconds": train_seconds, "loss": float(np.asarray(loss_value)),
                        "top1": top1, "top5": top5})
    bands = frequency_bands(task, y_test, predictions[:, 0])  # of the last evaluation
    # steady state: the median of the per-segment step times after the first (warm-up) segment
    steady = statistics.median(segment_ms[1:] if len(segment_ms) > 1 else segment_ms)
    last = history[-1] if history else {"top1": math.nan, "top5": math.nan}
    return {
        "head": name, "steps": steps, "batch": batch, "hidden": hidden, "precision": precision,
        "optimizer": optimizer, "learning_rate": learning_rate, "task": task.describe(),
        "head_params": _jsonable_params(head.params if head is not None else {}),
        "params": int(model.count_params()), "top1": last["top1"], "top5": last["top5"],
        "ms_per_step": steady, "train_seconds": train_seconds, "compile_seconds": compile_seconds,
        "history": history, "bands": bands,
        # process-wide: this head's own peak when it ran in a fresh process (isolate), else cumulative
        "peak_bytes": memory_stats()["peak_bytes_in_use"],
    }


def time_to_accuracy(history: list[dict], target: float):
    """``(train_seconds, step)`` of the first evaluation with top-1 >= ``target``, else ``(None, None)``."""
    for point in history:
        if point["top1"] >= target - 1e-12:
            return point["train_seconds"], point["step"]
    return None, None


def many_classes_rows(heads=("adaptive", "sampled"), num_classes=100_000, input_dim=128, zipf=1.0, noise=2.0,
                      task_seed=0, steps=5000, batch=512, hidden=640, precision="mixed_bfloat16",
                      optimizer="adam", learning_rate=1e-3, eval_every=250, test_size=20_000, head_params=None,
                      isolate=True, log=print) -> dict:
    """Full softmax (``dense_softmax_baseline``) and ``heads`` on one :class:`ZipfTask`, same steps.

    Each row gains ``top1_gap_points`` (100 × (head − softmax) final top-1), ``step_speedup`` (softmax
    ms/step over the head's) and ``seconds_to_softmax_top1`` / ``steps_to_softmax_top1`` (first
    evaluation at or above the full softmax's final top-1; ``None`` if never) plus the same for the
    softmax's final top-1 minus one point.
    """
    _require_jax()
    task_kwargs = {"num_classes": num_classes, "input_dim": input_dim, "zipf": zipf, "noise": noise,
                   "seed": task_seed}
    rows = []
    for name in [BASELINE] + [h for h in heads if h != BASELINE]:
        kwargs = dict(name=name, task_kwargs=task_kwargs, steps=steps, batch=batch, hidden=hidden,
                      precision=precision, optimizer=optimizer, learning_rate=learning_rate, eval_every=eval_every,
                      test_size=test_size, head_params=(head_params or {}).get(name))
        row = _run_isolated(many_classes_run, kwargs, isolate)
        row.setdefault("head", name)
        rows.append(row)
        log(json.dumps({k: v for k, v in row.items() if k != "history"}))
    base = rows[0]
    if "top1" in base:
        for row in rows:
            if "top1" not in row:
                continue
            row["top1_gap_points"] = 100 * (row["top1"] - base["top1"])
            row["step_speedup"] = base["ms_per_step"] / row["ms_per_step"]
            seconds, step = time_to_accuracy(row["history"], base["top1"])
            row["seconds_to_softmax_top1"], row["steps_to_softmax_top1"] = seconds, step
            seconds, step = time_to_accuracy(row["history"], base["top1"] - 0.01)
            row["seconds_to_softmax_top1_minus_1pt"], row["steps_to_softmax_top1_minus_1pt"] = seconds, step
    return {"task": task_kwargs, "steps": steps, "batch": batch, "hidden": hidden, "precision": precision,
            "optimizer": optimizer, "learning_rate": learning_rate, "rows": rows}


def many_classes_table(result: dict) -> str:
    """A Markdown table of :func:`many_classes_rows` (for ``bench/RESULTS.md``)."""
    lines = ["| head | top-1 | top-5 | Δ top-1 vs softmax (pts) | ms/step | step speedup | train s | "
             "s to softmax's top-1 | s to softmax's top-1 − 1 pt |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def seconds(value):
        return "never" if value is None else f"{value:.1f}"

    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| `{r['head']}` | {r['error']} | | | | | | | |")
            continue
        lines.append(
            f"| `{r['head']}` | {100 * r['top1']:.2f} % | {100 * r['top5']:.2f} % | {r.get('top1_gap_points', 0):+.2f} "
            f"| {r['ms_per_step']:.3f} | {r.get('step_speedup', 1.0):.2f}× | {r['train_seconds']:.1f} "
            f"| {seconds(r.get('seconds_to_softmax_top1'))} | {seconds(r.get('seconds_to_softmax_top1_minus_1pt'))} |")
    return "\n".join(lines + _band_lines(result["rows"]))


def _band_lines(rows: list[dict]) -> list[str]:
    """The second table: top-1 and predicted share per band of class-frequency ranks."""
    rows = [r for r in rows if r.get("bands")]
    if not rows:
        return []
    bands = rows[0]["bands"]
    head = " | ".join(f"ranks {b['ranks'][0]:,}-{b['ranks'][1]:,} ({100 * b['share']:.1f} % of rows)" for b in bands)
    lines = ["", "Top-1 on the rows of each band of class-frequency ranks (in brackets: the share of all rows "
             "predicted into the band):", "", f"| head | {head} |", "|---|" + "---:|" * len(bands)]
    for r in rows:
        cells = " | ".join("–" if b["top1"] is None else f"{100 * b['top1']:.2f} % ({100 * b['predicted_share']:.1f} %)"
                           for b in r["bands"])
        lines.append(f"| `{r['head']}` | {cells} |")
    return lines


def plot_many_classes(result: dict, path) -> None:
    """Top-1 against training seconds, one line per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for r in result["rows"]:
        if "history" not in r:
            continue
        style = {"color": "black", "linestyle": "--"} if r["head"] == BASELINE else {}
        ax.plot([p["train_seconds"] for p in r["history"]], [100 * p["top1"] for p in r["history"]],
                marker="o", label=r["head"], **style)
    task = result["task"]
    ax.set_title(f"Zipf task: N={task['num_classes']:,}, s={task['zipf']}, batch {result['batch']}")
    ax.set_xlabel("training seconds (steps only)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
