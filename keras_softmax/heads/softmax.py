"""Softmax and log-softmax with temperature and optional masking of the lowest logits."""

from __future__ import annotations

import keras

from keras_softmax.heads.base import NormalizedScoresHead, check_fraction, check_positive, mask_lowest


@keras.saving.register_keras_serializable(package="keras_softmax")
class Softmax(NormalizedScoresHead):
    """Softmax with temperature: ``p_i = exp(z_i / T) / sum_j exp(z_j / T)``.

    Pair it with :class:`keras_softmax.ProbabilityCrossEntropy` (``-log p_y`` with a floor); the
    gradient of that loss with respect to the logits is ``(p - y) / T``. Cost is O(N) in the number
    of classes, like every head here.

    Args:
        temperature: T > 0. Larger T flattens the distribution.
        drop_lowest: fraction f in [0, 1) of the lowest logits of each row to mask out before
            normalising (their probability becomes 0).
        axis: (keyword) the axis to normalise along, default -1. As Keras's ``Softmax``, the layer
            also takes ``mask=`` when called (False: probability 0), e.g. for attention weights.

    Example:
        >>> import keras, keras_softmax as ks
        >>> probs = ks.Softmax(temperature=2.0)(keras.ops.array([[1.0, 2.0, 3.0]]))
    """

    def __init__(self, temperature=1.0, drop_lowest=0.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_positive("temperature", temperature)
        self.drop_lowest = check_fraction("drop_lowest", drop_lowest)

    def scores(self, z, training=False):
        return mask_lowest(z / self.temperature, self.drop_lowest)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "drop_lowest": self.drop_lowest}


@keras.saving.register_keras_serializable(package="keras_softmax")
class LogSoftmax(Softmax):
    """Log-softmax with temperature: ``log p_i = z_i / T - logsumexp(z / T)``.

    Pair it with :class:`keras_softmax.NegativeLogLikelihood` (``-log p_y``). It costs the same
    O(N) as softmax (the original study's O(log N) claim is wrong; ``bench/`` measures it). Exp of
    the output sums to 1; masked classes (``drop_lowest``) get a large finite negative value.

    Args:
        temperature: T > 0.
        drop_lowest: fraction in [0, 1) of the lowest logits per row to mask out.

    Example:
        >>> log_probs = ks.LogSoftmax()(keras.ops.array([[1.0, 2.0, 3.0]]))
    """

    log_output = True
