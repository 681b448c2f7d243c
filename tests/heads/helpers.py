"""Helpers shared by the head tests: building heads, numpy conversion, backend autodiff, Hypothesis."""

from __future__ import annotations

import os

import keras
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import keras_softmax as ks

BACKEND = keras.backend.backend()
#: Heads that own their projection take features, not logits: tests/heads/test_projection.py covers
#: them with the same families (references, low precision, serialization, XLA, both backends).
PROJECTION_HEADS = ("adaptive", "sampled")
#: Heads that map logits to a distribution: the parametrised families below run over all of them.
HEADS = tuple(name for name in ks.list_heads() if name not in PROJECTION_HEADS)
#: A small custom superclass map: 6 fine classes in 3 superclasses (9 logits in all).
SMALL_MAP = (0, 0, 1, 1, 1, 2)
FENCHEL_YOUNG_HEADS = ("sparsemax", "entmax15")
STOCHASTIC_HEADS = ("gumbel", "log_gumbel")

#: Few examples, no deadline (eager TF is slow to start), derandomized so CI runs are reproducible.
#: The second-backend run (tests/test_backends.py) sets ``KERAS_SOFTMAX_TEST_EXAMPLES`` lower: it checks
#: that each property holds on that backend, which the first run has already explored more widely.
HYPOTHESIS = settings(
    max_examples=int(os.environ.get("KERAS_SOFTMAX_TEST_EXAMPLES", "30")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def default_params(name: str) -> dict:
    return {"fine_to_coarse": list(SMALL_MAP)} if name == "hierarchical" else {}


def make_head(name: str, **params) -> ks.HeadWithLoss:
    """``ks.get_head`` with the small superclass map for the hierarchical head."""
    return ks.get_head(name, **{**default_params(name), **params})


def is_log(head) -> bool:
    return head.output_kind == "log_probabilities"


def num_outputs(name: str, params: dict | None = None) -> int | None:
    """Classes the head outputs for a test of ``n`` logits (None: as many as logits)."""
    if name == "hierarchical":
        return len((params or {}).get("fine_to_coarse") or default_params(name)["fine_to_coarse"])
    return None


def to_np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def probabilities(head, out) -> np.ndarray:
    """The head's output as probabilities (exp of log heads' output), in float64."""
    out = to_np(out).astype(np.float64)
    return np.exp(out) if is_log(head) else out


def grad(fn, x) -> np.ndarray:
    """d fn(x) / dx by the backend's own autodiff, ``x`` a float32 numpy array, ``fn`` a scalar."""
    x = np.asarray(x, dtype="float32")
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(v)
        return tape.gradient(value, v).numpy()
    if BACKEND == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad.numpy()
    raise NotImplementedError(BACKEND)


def one_hot(labels, n) -> np.ndarray:
    return np.eye(n)[np.asarray(labels).reshape(-1)]


def logits(width: int, batch=(4, 4), bound: float = 20.0):
    """Hypothesis strategy: float32 logits of shape (batch, width) in [-bound, bound].

    Few distinct shapes: JAX compiles every eager op once per shape.
    """
    return hnp.arrays(
        np.float32,
        st.tuples(st.integers(*batch), st.just(width)),
        elements=st.floats(-bound, bound, width=32, allow_nan=False, allow_subnormal=False),
    )


def central_difference(f, x, h) -> np.ndarray:
    """Central finite-difference gradient of the scalar numpy function ``f`` at ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g
