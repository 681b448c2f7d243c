"""Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017) and its log form."""

from __future__ import annotations

import operator

import keras
from keras import ops

from keras_softmax.heads.softmax import Softmax
from keras_softmax.ops import along_last_axis, apply_mask, full_mask, tag_output

#: Uniform draws are clipped to [EPS, 1 - EPS] so that -log(-log U) stays finite.
UNIFORM_EPS = 1e-6
#: The float32 smallest normal number and its log: the value a hard sample gives the classes it did
#: not choose where it must stay positive (``log_straight_through``, and every hard log-sample).
TINY = 2.0**-126
LOG_TINY = -87.33654


@keras.saving.register_keras_serializable(package="keras_softmax")
class GumbelSoftmax(Softmax):
    """Gumbel-softmax: ``p = softmax((z + g) / tau)`` in training, ``softmax(z / tau)`` otherwise.

    ``g_i = -log(-log U_i)`` with ``U_i ~ Uniform(0, 1)`` clipped away from 0 and 1, drawn from a
    seeded ``keras.random.SeedGenerator`` only when ``training=True``. With ``hard=True`` the
    training output is the one-hot ``argmax(z + g)`` (an exact sample of ``softmax(z)``, the
    Gumbel-max trick) with the gradient of the soft sample (straight-through estimator).
    Pair it with :class:`keras_softmax.ProbabilityCrossEntropy`.

    Hard samples and the matched loss: ``-log p_y`` of a one-hot sample is 0 or infinite (floored),
    and a wrong sample's ``p_y = 0`` passes no gradient, so the plain straight-through sample gives
    the loss nothing to learn from on every wrong sample. With ``log_straight_through=True`` (what
    ``get_head("gumbel", hard=True)`` pairs with its loss) the straight-through step is taken in log
    space instead: the value is the hard sample (1 for the chosen class, the smallest normal float32
    ``TINY`` ~ 1.2e-38 for the others, so that its log is finite: the exp of
    :class:`LogGumbelSoftmax`'s hard sample) and ``log p`` carries the gradient of the soft sample's
    ``log softmax((z + g) / tau)``. Under ``ProbabilityCrossEntropy`` the logits then get exactly the
    soft sample's gradient ``-grad log softmax((z + g) / tau)_y``, right or wrong, while the loss
    value is the hard sample's. A bare layer (``False``, the default) keeps the textbook estimator,
    whose output has the soft sample's gradient, right for a downstream network that consumes it.

    Args:
        temperature: tau > 0.
        hard: straight-through one-hot samples in training.
        seed: int seed of the noise generator (``None``: a random seed).
        drop_lowest: fraction in [0, 1) of the lowest logits per row to mask out.
        log_straight_through: hard samples only: take the straight-through step in log space, for
            training with :class:`keras_softmax.ProbabilityCrossEntropy` (see above).

    Example:
        >>> layer = ks.GumbelSoftmax(temperature=0.5, seed=0)
        >>> sample = layer(keras.ops.zeros((2, 10)), training=True)
    """

    PAIRED_DEFAULTS = {"log_straight_through": True}

    def __init__(self, temperature=1.0, hard=False, seed=None, drop_lowest=0.0, log_straight_through=False,
                 **kwargs):
        super().__init__(temperature=temperature, drop_lowest=drop_lowest, **kwargs)
        if not isinstance(hard, bool):
            raise ValueError(f"hard must be True or False (got {hard!r})")
        if not isinstance(log_straight_through, bool):
            raise ValueError(f"log_straight_through must be True or False (got {log_straight_through!r})")
        given = seed
        try:
            seed = None if seed is None or isinstance(seed, bool) else operator.index(seed)
        except TypeError:
            seed = -1
        if given is not None and (seed is None or not 0 <= seed < 2**32):  # JAX's seeds are uint32
            raise ValueError(f"seed must be an integer in [0, 2**32) or None (got {given!r})")
        self.hard = hard
        self.seed = seed
        self.log_straight_through = log_straight_through
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

    def call(self, z, training=False, mask=None):
        if not (training and self.hard):
            return super().call(z, training=training, mask=mask)
        z = self._float32(z)
        mask = full_mask(mask, z)
        out = along_last_axis(self._hard_sample, z, self.axis, *([] if mask is None else [mask]))
        if not (self.log_output or self.log_straight_through):
            # The textbook estimator: ProbabilityCrossEntropy reads this tag and refuses it (a wrong
            # sample's p_y = 0 passes no gradient: silently weaker than the paired head).
            tag_output(out, self)
        return out

    def _hard_sample(self, z, *mask):
        s = self.scores(z, training=True)
        if mask:
            s = apply_mask(s, mask[0])
        chosen = ops.one_hot(ops.argmax(s, axis=-1), ops.shape(s)[-1], dtype="float32") > 0
        if self.log_output:
            # The log of a hard sample, with the soft log-sample's gradient.
            log_soft = ops.log_softmax(s, axis=-1)
            return log_soft + ops.stop_gradient(ops.where(chosen, 0.0, LOG_TINY) - log_soft)
        if self.log_straight_through:
            # value: 1 or TINY; d value = value * d log_soft, i.e. d log(value) = d log_soft.
            log_soft = ops.log_softmax(s, axis=-1)
            value = ops.stop_gradient(ops.where(chosen, 1.0, TINY))
            return value + value * (log_soft - ops.stop_gradient(log_soft))
        soft = ops.softmax(s, axis=-1)
        return soft + ops.stop_gradient(ops.cast(chosen, "float32") - soft)

    def get_config(self):
        return {**super().get_config(), "hard": self.hard, "seed": self.seed,
                "log_straight_through": self.log_straight_through}


@keras.saving.register_keras_serializable(package="keras_softmax")
class LogGumbelSoftmax(GumbelSoftmax):
    """Log-Gumbel-softmax: ``log softmax((z + g) / tau)`` in training, ``log softmax(z / tau)`` otherwise.

    Same noise as :class:`GumbelSoftmax`. ``hard=True`` returns ``0`` for the sampled class and
    ``log`` of the smallest normal float32 (about -87.3) elsewhere, with the soft log-sample's
    gradient: the straight-through step is in log space already, so under
    :class:`keras_softmax.NegativeLogLikelihood` the logits get the soft sample's gradient on every
    sample, right or wrong (the loss value is the hard sample's: 0 or 87.3).
    Pair it with :class:`keras_softmax.NegativeLogLikelihood`.

    Example:
        >>> layer = ks.LogGumbelSoftmax(temperature=3.0, seed=0)
    """

    log_output = True
    PAIRED_DEFAULTS = {}

    def __init__(self, temperature=1.0, hard=False, seed=None, drop_lowest=0.0, **kwargs):
        super().__init__(temperature=temperature, hard=hard, seed=seed, drop_lowest=drop_lowest, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("log_straight_through")
        return config
