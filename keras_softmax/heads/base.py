"""Shared machinery of the output heads.

A head maps the logits ``z`` of the final Dense layer to a distribution over classes. Every head
computes in float32 whatever the global dtype policy, so that mixed precision never produces NaN or
Inf in the output (GUIDE §3).
"""

from __future__ import annotations

import math

import keras
from keras import ops

#: Logits removed by ``drop_lowest`` are replaced by this finite value: exp() of it is 0 in float32,
#: and unlike -inf it keeps log-probabilities finite.
MASKED_LOGIT = -1e9


def check_positive(name: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is a finite number > 0."""
    if isinstance(value, (str, bytes)):  # float("2") would accept it: parse strings at the CLI
        raise ValueError(f"{name} must be a number > 0, not a string (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0 (got {value!r})") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return number


def check_fraction(name: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless 0 <= value < 1."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number in [0, 1), not a string (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1) (got {value!r})") from None
    if isinstance(value, bool) or not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (got {value!r})")
    return number


class Head(keras.layers.Layer):
    """Base class of every head: a float32 layer from logits to a distribution.

    Subclasses set ``output_kind`` to ``"probabilities"`` or ``"log_probabilities"`` and implement
    ``call``. ``num_logits(num_classes)`` says how many logits the head consumes for a problem of
    ``num_classes`` classes (the hierarchical head needs extra ones for the superclasses).

    ``PAIRED_DEFAULTS`` are parameter defaults that apply where the head is paired with its own loss
    (``get_head``, ``build_model``, the CLI) instead of the layer's own, e.g. the Fenchel-Young
    gradient of the sparse heads, which is right only under their matching loss (GUIDE §3).

    ``owns_projection`` is True for heads that take features and hold the classifier weights
    themselves (:class:`keras_softmax.heads.projection.ProjectionHead`); ``build_model`` then adds
    no Dense layer before them.
    """

    output_kind = "probabilities"
    PAIRED_DEFAULTS: dict = {}
    owns_projection = False

    def __init__(self, **kwargs):
        dtype = kwargs.pop("dtype", None)
        if dtype is not None and keras.DTypePolicy(dtype).compute_dtype != "float32":
            raise ValueError(f"heads compute in float32; dtype={dtype!r} is not allowed")
        super().__init__(dtype="float32", **kwargs)

    def num_logits(self, num_classes: int) -> int:
        return num_classes

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @staticmethod
    def _float32(z):
        return ops.cast(z, "float32")


class NormalizedScoresHead(Head):
    """A head of the form ``p = softmax(s(z))`` (or ``log p = log_softmax(s(z))``).

    Subclasses define the score function ``scores(z, training)``; ``log_output`` selects whether
    the layer returns probabilities or log-probabilities. Normalising through ``softmax`` /
    ``log_softmax`` subtracts the row maximum, so any finite scores give a finite output.
    """

    log_output = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.output_kind = "log_probabilities" if cls.log_output else "probabilities"

    def scores(self, z, training=False):
        raise NotImplementedError

    def call(self, z, training=False):
        s = self.scores(self._float32(z), training=bool(training))
        return ops.log_softmax(s, axis=-1) if self.log_output else ops.softmax(s, axis=-1)


def mask_lowest(s, fraction: float):
    """Replace the lowest ``floor(fraction * N)`` entries of each row by ``MASKED_LOGIT``.

    Ties at the threshold are kept, so at least ``N - floor(fraction * N)`` entries survive.
    """
    n = s.shape[-1]
    # round() first: 0.29 * 100 is 28.999999999999996 in binary, and 29% of 100 logits is 29.
    k = int(math.floor(round(fraction * n, 9))) if n is not None else 0
    if k <= 0:
        return s
    threshold = ops.sort(s, axis=-1)[..., k : k + 1]  # the (k+1)-th smallest entry of each row
    return ops.where(s >= threshold, s, ops.full_like(s, MASKED_LOGIT))
