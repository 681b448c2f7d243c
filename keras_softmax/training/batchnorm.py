"""Recompute BatchNormalization statistics for a model's current weights (SWA's last step).

The weights of stochastic weight averaging are a mean of several points of training; the moving
means and variances the BatchNormalization layers carry belong to none of them. Izmailov et al.
(2018) recompute them with one pass over the training data in training mode; this is that pass
(PyTorch's ``torch.optim.swa_utils.update_bn``), for a Keras functional model on every backend.

For each trainable BatchNormalization layer ℓ and each batch b of the training images, the model
runs in training mode (every earlier BatchNormalization normalising with its batch's statistics,
the augmentation inside the model drawing as it does in training, or less of it: ``augmentation``),
and ℓ's input x gives its batch statistics over every axis but the channel one, in float32 as the
layer computes them:

    μ_b = mean(x),   σ²_b = mean((x − μ_b)²)    (biased, as Keras's layer uses)

The batches are a seeded shuffle of the images, as training's are (a dataset stored class by class
would otherwise give batches of one or two classes). The layer's moving statistics become the means
over the B full batches (a remainder of fewer than a batch's images is left out, as training leaves
it out):

    moving_mean = Σ_b μ_b / B,    moving_variance = Σ_b σ²_b / B

the cumulative average ``update_bn`` takes (momentum None), in place of the exponential one training
keeps. Frozen (``trainable = False``) layers keep theirs: in training mode they do not update either.

Which images: ``update_bn`` takes training's (augmented) batches, which with a strong augmentation
policy differ from the images the model meets at inference. ``augmentation = "none"`` takes the
statistics from the training images as the model sees them at inference instead, ``"crop_flip"`` with
the crop and flip alone. Measured on the same trained weights at the strong recipe (TrivialAugmentWide;
bench/RESULTS.md §9), training's batches are the right ones: the weights were trained behind statistics
of augmented batches and work with those (the plain pass cost 2.4 points of validation top-1, the crop
and flip alone tied).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_softmax.models.augment import AUGMENTATION_HOLDS, augmentation_held
from keras_softmax.models.walk import all_layers


def batchnorm_layers(model) -> list:
    """Every trainable BatchNormalization layer of ``model``, nested models included, in order."""
    return [layer for layer in all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


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
    whose random state (the augmentation's seeds) advances from batch to batch, as in training; on
    PyTorch without recording a graph for gradients."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        def forward(x):
            with torch.no_grad():
                return probe(x, training=True)

        return forward
    if backend != "jax":
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


def shuffled_batches(count: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """The image indices of the pass's batches: ``np.random.default_rng(seed).permutation(count)`` cut
    into full batches of ``batch_size`` (each batch's indices sorted; a remainder left out; fewer images
    than a batch: one batch of them all). Shuffled as training shuffles: a dataset stored class by class
    (class folders are) would otherwise give batches of one or two classes, whose variances miss the
    spread between classes."""
    batch_size = min(batch_size, count)
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(order[start:start + batch_size]) for start in range(0, count - batch_size + 1, batch_size)]


def recompute_batchnorm_statistics(model, images, batch_size: int, seed: int = 0,
                                   augmentation: str = "training") -> tuple[int, int]:
    """Set every trainable BatchNormalization layer's moving mean and variance to their average over
    ``images`` in shuffled batches of ``batch_size`` (the model in training mode); returns (layers,
    images used).

    ``images`` are what the model takes (e.g. the uint8 training images). ``augmentation`` says what
    the model's augmentation layer does to them in the pass (:func:`augmentation_held`): ``"training"``
    all of training's augmentation, ``"crop_flip"`` the crop and flip only, ``"none"`` nothing, so
    the statistics are those of images as the model sees them at inference. Only the moving statistics
    change. Full batches only, as training takes them (:func:`shuffled_batches`): the statistics are
    those of batches of the training size, and one program shape compiles.
    """
    if augmentation not in AUGMENTATION_HOLDS:
        raise ValueError(f"augmentation must be one of {AUGMENTATION_HOLDS} (got {augmentation!r})")
    layers = batchnorm_layers(model)
    if not layers:
        return 0, 0
    if len(images) == 0:
        raise ValueError("no images to recompute the BatchNormalization statistics from")
    batches = shuffled_batches(len(images), batch_size, seed)
    sums = None
    with augmentation_held(model, augmentation):
        forward = _training_forward(_statistics_model(model, layers))
        for indices in batches:
            stats = [np.asarray(keras.ops.convert_to_numpy(s), np.float64) for s in forward(images[indices])]
            sums = stats if sums is None else [total + s for total, s in zip(sums, stats)]
    for i, layer in enumerate(layers):
        layer.moving_mean.assign((sums[2 * i] / len(batches)).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((sums[2 * i + 1] / len(batches)).astype(layer.moving_variance.dtype))
    return len(layers), sum(len(indices) for indices in batches)
