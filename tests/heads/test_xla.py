"""Every head's forward pass, and the matched-loss gradient, compile under XLA.

JAX: ``jax.jit``; TensorFlow: ``tf.function(jit_compile=True)``. Compiled results equal eager ones.
"""

import numpy as np
import pytest
from keras import ops

from .helpers import BACKEND, HEADS, make_head, to_np

pytestmark = pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="XLA via jax or tf")

GRADIENT_HEADS = ("softmax", "log_softmax", "sparsemax", "entmax15", "taylor", "hierarchical", "entmax_alpha")


def xla(fn):
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, reduce_retracing=True)


def value_and_grad(fn):
    """x -> (fn(x), d fn / dx), differentiable inside the compiled function."""
    if BACKEND == "jax":
        import jax

        return jax.value_and_grad(fn)
    import tensorflow as tf

    def vg(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)

    return vg


def logits_for(name, batch=4):
    width = 9 if name == "hierarchical" else 7
    z = np.random.default_rng(0).normal(size=(batch, width)).astype("float32") * 2
    z[0, :3] = [1e4, -1e4, 0.0]  # compiled code keeps the stability tricks
    return z


@pytest.mark.parametrize("name", HEADS)
def test_forward_compiles(name):
    layer = make_head(name).layer
    z = logits_for(name)
    eager = to_np(layer(z))
    compiled = xla(lambda v: layer(v, training=False))
    got = to_np(compiled(ops.convert_to_tensor(z)))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", GRADIENT_HEADS)
def test_matched_loss_gradient_compiles(name):
    head = make_head(name)
    z = logits_for(name)
    y = np.array([0, 1, 2, 3])

    def loss_of(v):
        return head.loss(y, head.layer(v, training=True))

    value, gradient = value_and_grad(loss_of)(ops.convert_to_tensor(z))
    c_value, c_gradient = xla(value_and_grad(loss_of))(ops.convert_to_tensor(z))
    assert np.all(np.isfinite(to_np(c_gradient)))
    np.testing.assert_allclose(to_np(c_value), to_np(value), rtol=1e-5)
    np.testing.assert_allclose(to_np(c_gradient), to_np(gradient), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gumbel", "log_gumbel"])
def test_gumbel_training_compiles(name):
    """Training noise inside a compiled step: JAX through the stateless API, TF with its variables."""
    head = make_head(name, seed=0, hard=True)
    layer = head.layer
    z = ops.convert_to_tensor(logits_for(name))
    if BACKEND == "jax":
        import jax

        @jax.jit
        def step(state, v):
            out, new_state = layer.stateless_call([], state, v, training=True)
            return out, new_state

        layer(z)  # build (inference: no noise drawn)
        state = [variable.value for variable in layer.non_trainable_variables]
        assert state, "the seed generator's state should be a non-trainable variable"
        first, state = step(state, z)
        second, state = step(state, z)
    else:
        step = xla(lambda v: layer(v, training=True))
        first, second = step(z), step(z)
    first, second = to_np(first), to_np(second)
    assert np.all(np.isfinite(first)) and np.all(np.isfinite(second))
    assert not np.array_equal(first, second)  # the state advanced between the compiled calls
    probabilities = np.exp(first) if name == "log_gumbel" else first
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-6)
