"""Calling a random layer twice inside one ``jax.jit``-compiled function, its seed state threaded through."""

import numpy as np


def twice_under_jax_jit(layer, x):
    """The layer's two training-mode outputs for ``x``, from one compiled stateless call used twice."""
    import jax

    layer.build(x.shape)

    @jax.jit
    def call(state, inputs):
        return layer.stateless_call([], state, inputs, training=True)

    state = [v.value for v in layer.non_trainable_variables]
    first, state = call(state, x)
    second, state = call(state, x)
    return np.asarray(first), np.asarray(second)
