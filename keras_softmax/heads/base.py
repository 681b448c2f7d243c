"""Shared machinery of the output heads.

A head maps the logits ``z`` of the final Dense layer to a distribution over classes. Every head
computes in float32 whatever the global dtype policy, so that mixed precision never produces NaN or
Inf in the output (GUIDE §3).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_softmax.ops import (
    MASKED_LOGIT,
    along_last_axis,
    apply_mask,
    check_fraction,
    check_positive,
    full_mask,
    tag_output,
)

__all__ = ["MASKED_LOGIT", "Head", "NormalizedScoresHead", "check_axis", "check_fraction", "check_positive",
           "mask_lowest", "tag_output"]


def check_axis(axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"axis must be an integer (got {axis!r})")
    return axis


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

    ``complete_params(params, num_classes, ...)`` fills in the parameters a head needs from the
    problem (the number of classes, a superclass map, the class frequencies): the one place where
    ``build_model``, the trainer and the benchmarks complete a head's parameters.
    """

    output_kind = "probabilities"
    PAIRED_DEFAULTS: dict = {}
    owns_projection = False

    @classmethod
    def complete_params(cls, params: dict, num_classes=None, *, fine_to_coarse=None, labels=None) -> dict:
        """``params`` completed for a problem of ``num_classes`` classes (nothing to add by default).

        Args:
            params: the parameters given (not modified).
            num_classes: the number of classes of the problem.
            fine_to_coarse: the dataset's superclass map, if it has one.
            labels: the training labels, for heads that rank classes by frequency.
        """
        return dict(params)

    def __init__(self, **kwargs):
        dtype = kwargs.pop("dtype", None)
        policy = dtype if isinstance(dtype, keras.DTypePolicy) or dtype is None else keras.DTypePolicy(dtype)
        if policy is not None and policy.compute_dtype != "float32":
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
    """A head of the form ``p = softmax(s(z))`` (or ``log p = log_softmax(s(z))``) along ``axis``.

    Subclasses define the score function ``scores(z, training)`` (along the last axis);
    ``log_output`` selects whether the layer returns probabilities or log-probabilities. Normalising
    through ``softmax`` / ``log_softmax`` subtracts the row maximum, so any finite scores give a
    finite output. As Keras's ``Softmax``, the layer normalises along ``axis`` (default -1) and takes
    an optional boolean ``mask`` (False: that entry gets probability 0), so it drops into attention.

    ``log_probabilities(z, training=False)`` is the head in log space whatever ``log_output`` says:
    what the cross-entropy losses compute on the logits with ``from_logits=True`` (along the last axis).
    """

    log_output = False

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_axis(axis)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.output_kind = "log_probabilities" if cls.log_output else "probabilities"

    def scores(self, z, training=False):
        raise NotImplementedError

    def log_probabilities(self, z, training=False):
        """``log_softmax(s(z))`` along the last axis, float32."""
        return ops.log_softmax(self.scores(self._float32(z), training=bool(training)), axis=-1)

    def call(self, z, training=False, mask=None):
        z = self._float32(z)
        mask = full_mask(mask, z)

        def normalise(v, *m):
            if m and getattr(self, "drop_lowest", 0):  # masked entries rank lowest: drop_lowest drops them first
                v = apply_mask(v, m[0])
            s = self.scores(v, training=bool(training))
            if m:  # on the scores: s(MASKED_LOGIT) need not be low (the Taylor polynomial is even)
                s = apply_mask(s, m[0])
            if self.log_output:
                return ops.log_softmax(s, axis=-1)
            p = ops.softmax(s, axis=-1)
            # exact zeros where masked, also in a row masked everywhere (keras.layers.Softmax gives zeros there)
            return ops.where(m[0], p, 0.0) if m else p

        # tagged, so that a loss of the other kind (probabilities vs log-probabilities) refuses it
        return tag_output(along_last_axis(normalise, z, self.axis, *([] if mask is None else [mask])), self)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def mask_lowest(s, fraction: float):
    """Replace the lowest ``floor(fraction * N)`` entries of each row by ``MASKED_LOGIT``.

    Ties at the threshold are kept, so at least ``N - floor(fraction * N)`` entries survive.
    """
    n = s.shape[-1]
    if n is None:  # the class axis has no static size (a tf.function of [None, None]): k as a tensor
        if not fraction:
            return s
        count = ops.cast(ops.shape(s)[-1], "float32")
        k = ops.cast(ops.floor(fraction * count + 1e-6), "int32")  # + 1e-6: 0.29 * 100 is 28.99999...
        index = ops.zeros_like(ops.cast(s[..., :1], "int32")) + k
        threshold = ops.take_along_axis(ops.sort(s, axis=-1), index, axis=-1)
        return ops.where(s >= threshold, s, ops.full_like(s, MASKED_LOGIT))
    # round() first: 0.29 * 100 is 28.999999999999996 in binary, and 29% of 100 logits is 29.
    k = int(math.floor(round(fraction * n, 9)))
    if k <= 0:
        return s
    threshold = ops.sort(s, axis=-1)[..., k : k + 1]  # the (k+1)-th smallest entry of each row
    return ops.where(s >= threshold, s, ops.full_like(s, MASKED_LOGIT))
