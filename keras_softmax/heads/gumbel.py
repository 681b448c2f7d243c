"""Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017) and its log form."""

from __future__ import annotations

import keras
from keras import ops

from keras_softmax.heads.softmax import Softmax

#: Uniform draws are clipped to [EPS, 1 - EPS] so that -log(-log U) stays finite.
UNIFORM_EPS = 1e-6
#: log of the float32 smallest normal number: the value a hard log-sample gives non-chosen classes.
LOG_TINY = -87.33654


@keras.saving.register_keras_serializable(package="keras_softmax")
class GumbelSoftmax(Softmax):
    """Gumbel-softmax: ``p = softmax((z + g) / tau)`` in training, ``softmax(z / tau)`` otherwise.

    ``g_i = -log(-log U_i)`` with ``U_i ~ Uniform(0, 1)`` clipped away from 0 and 1, drawn from a
    seeded ``keras.random.SeedGenerator`` only when ``training=True``. With ``hard=True`` the
    training output is the one-hot ``argmax(z + g)`` (an exact sample of ``softmax(z)``, the
    Gumbel-max trick) with the gradient of the soft sample (straight-through estimator).
    Pair it with :class:`keras_softmax.ProbabilityCrossEntropy`.

    Args:
        temperature: tau > 0.
        hard: straight-through one-hot samples in training.
        seed: int seed of the noise generator (``None``: a random seed).
        drop_lowest: fraction in [0, 1) of the lowest logits per row to mask out.

    Example:
        >>> layer = ks.GumbelSoftmax(temperature=0.5, seed=0)
        >>> sample = layer(keras.ops.zeros((2, 10)), training=True)
    """

    def __init__(self, temperature=1.0, hard=False, seed=None, drop_lowest=0.0, **kwargs):
        super().__init__(temperature=temperature, drop_lowest=drop_lowest, **kwargs)
        if not isinstance(hard, bool):
            raise ValueError(f"hard must be True or False (got {hard!r})")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (got {seed!r})")
        self.hard = hard
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def scores(self, z, training=False):
        # drop_lowest masks the lowest *logits* before the noise, so training samples only the
        # classes that inference keeps: (mask(z) + g) / tau.
        s = super().scores(z)
        if training:
            u = keras.random.uniform(
                ops.shape(z), minval=UNIFORM_EPS, maxval=1.0 - UNIFORM_EPS, seed=self.seed_generator
            )
            s = s - ops.log(-ops.log(u)) / self.temperature
        return s

    def call(self, z, training=False):
        soft = super().call(z, training=training)
        if not (training and self.hard):
            return soft
        index = ops.argmax(soft, axis=-1)
        one_hot = ops.one_hot(index, ops.shape(soft)[-1], dtype="float32")
        if self.log_output:
            sample = ops.where(one_hot > 0, 0.0, LOG_TINY)
        else:
            sample = one_hot
        return soft + ops.stop_gradient(sample - soft)

    def get_config(self):
        return {**super().get_config(), "hard": self.hard, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_softmax")
class LogGumbelSoftmax(GumbelSoftmax):
    """Log-Gumbel-softmax: ``log softmax((z + g) / tau)`` in training, ``log softmax(z / tau)`` otherwise.

    Same noise as :class:`GumbelSoftmax`. ``hard=True`` returns ``0`` for the sampled class and
    ``log`` of the smallest normal float32 (about -87.3) elsewhere, with the soft sample's gradient.
    Pair it with :class:`keras_softmax.NegativeLogLikelihood`.

    Example:
        >>> layer = ks.LogGumbelSoftmax(temperature=3.0, seed=0)
    """

    log_output = True
