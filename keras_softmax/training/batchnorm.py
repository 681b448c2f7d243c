"""Recompute BatchNormalization statistics for a model's current weights (SWA's last step).

The weights of stochastic weight averaging are a mean of several points of training; the moving
means and variances the BatchNormalization layers carry belong to none of them. Izmailov et al.
(2018) recompute them with one pass over the training data in training mode; this is that pass
(PyTorch's ``torch.optim.swa_utils.update_bn``), for a Keras functional model on every backend.

For each trainable BatchNormalization layer ℓ and each batch b of the training images, the model
runs in training mode (every earlier BatchNormalization normalising with its batch's statistics,
the augmentation inside the model drawing as it does in training), and ℓ's input x gives its batch
statistics over every axis but the channel one, in float32 as the layer computes them:

    μ_b = mean(x),   σ²_b = mean((x − μ_b)²)    (biased, as Keras's layer uses)

The layer's moving statistics become the means over the B full batches (a remainder of fewer than
a batch's images is left out, as training leaves it out):

    moving_mean = Σ_b μ_b / B,    moving_variance = Σ_b σ²_b / B

the cumulative average ``update_bn`` takes (momentum None), in place of the exponential one training
keeps. Frozen (``trainable = False``) layers keep theirs: in training mode they do not update either.
"""

from __future__ import annotations

import keras
import numpy as np


def batchnorm_layers(model) -> list:
    """Every trainable BatchNormalization layer of ``model``, nested models included, in order."""
    found, seen = [], set()

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            if id(inner) in seen:
                continue
            seen.add(id(inner))
            if isinstance(inner, keras.layers.BatchNormalization):
                if inner.trainable:
                    found.append(inner)
            else:
                walk(inner)

    walk(model)
    return found


def _statistics_model(model, layers):
    """A functional model from ``model``'s inputs to each layer's input's (mean, variance) per channel."""
    outputs = []
    for layer in layers:
        try:
            tensor = layer.input
        except (AttributeError, ValueError):
            raise ValueError(f"BatchNormalization layer {layer.name!r} is not a node of the model's functional "
                             "graph: its statistics cannot be recomputed") from None
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        axes = [a % len(tensor.shape) for a in axes]
        reduce = [a for a in range(len(tensor.shape)) if a not in axes]
        outputs.extend(keras.ops.moments(keras.ops.cast(tensor, "float32"), axes=reduce))
    return keras.Model(model.input, outputs, name="batchnorm_statistics")


def _training_forward(probe):
    """``f(x) -> [mean, variance, ...]`` of ``probe`` in training mode; on JAX one compiled program
    whose random state (the augmentation's seeds) advances from batch to batch, as in training."""
    if keras.backend.backend() != "jax":
        return lambda x: probe(x, training=True)
    import jax

    trainable = [v.value for v in probe.trainable_variables]
    state = {"non_trainable": [v.value for v in probe.non_trainable_variables]}

    @jax.jit
    def step(trainable, non_trainable, x):
        return probe.stateless_call(trainable, non_trainable, x, training=True)

    def forward(x):
        outputs, state["non_trainable"] = step(trainable, state["non_trainable"], x)
        return outputs

    return forward


def recompute_batchnorm_statistics(model, images, batch_size: int) -> tuple[int, int]:
    """Set every trainable BatchNormalization layer's moving mean and variance to their average over
    ``images`` in batches of ``batch_size`` (the model in training mode); returns (layers, images used).

    ``images`` are what the model takes (e.g. the uint8 training images; the augmentation layer
    inside the model transforms them as in training). Only the moving statistics change. Full batches
    only, as training takes them: the statistics are those of batches of the training size, and one
    program shape compiles (fewer images than a batch: one batch of them all).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0, 0
    if len(images) == 0:
        raise ValueError("no images to recompute the BatchNormalization statistics from")
    batch_size = min(batch_size, len(images))
    count = len(images) - len(images) % batch_size
    forward = _training_forward(_statistics_model(model, layers))
    sums = None
    for start in range(0, count, batch_size):
        batch = forward(images[start:start + batch_size])
        stats = [np.asarray(keras.ops.convert_to_numpy(s), np.float64) for s in batch]
        sums = stats if sums is None else [total + s for total, s in zip(sums, stats)]
    batches = count // batch_size
    for i, layer in enumerate(layers):
        layer.moving_mean.assign((sums[2 * i] / batches).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((sums[2 * i + 1] / batches).astype(layer.moving_variance.dtype))
    return len(layers), count
