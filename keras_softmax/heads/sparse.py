"""Sparse heads: sparsemax (Martins & Astudillo 2016) and exact 1.5-entmax (Peters et al. 2019).

Both are written here from their sort-based closed forms. ``keras.ops.sparsemax`` in Keras 3.15
sums the cumulative sums of the whole support instead of taking the one at the support size, so its
threshold is wrong and its outputs need not sum to 1; the tests guard against that bug here.

Training with a Fenchel-Young loss needs the gradient ``p - y`` with respect to the logits, which
no function of ``p`` alone has (a class outside the support gets ``p_y = 0`` and no signal through
the Jacobian). With ``fenchel_young_gradient=True`` (the default) these layers therefore pass the
incoming gradient straight to the logits when ``training=True``; the matching losses return the
gradient ``p - y`` with respect to ``p``, so the logits receive exactly ``p - y``. At inference, or
with ``fenchel_young_gradient=False`` (e.g. sparsemax attention inside a network), the layer uses
its true Jacobian.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_softmax.heads.base import Head


def _ranks(z):
    n = z.shape[-1]
    return ops.cast(ops.arange(1, n + 1), "float32")


def _descending(z):
    return ops.flip(ops.sort(z, axis=-1), axis=-1)


def sparsemax(z):
    """Sparsemax along the last axis: ``p = max(z - tau, 0)`` with ``sum(p) = 1``.

    With ``z_(1) >= z_(2) >= ...`` sorted, the support size is the largest ``k`` with
    ``1 + k z_(k) > sum_{j<=k} z_(j)`` and ``tau = (sum_{j<=k} z_(j) - 1) / k``. Rows are shifted
    by their maximum first, so logits of magnitude 1e4 keep full float32 precision.
    """
    z = z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True))
    z_sorted = _descending(z)
    cumsum = ops.cumsum(z_sorted, axis=-1)
    ranks = _ranks(z)
    support = ops.cast(1.0 + ranks * z_sorted > cumsum, "int32")
    k = ops.sum(support, axis=-1, keepdims=True)  # >= 1: the top entry is always in the support
    tau = (ops.take_along_axis(cumsum, k - 1, axis=-1) - 1.0) / ops.cast(k, "float32")
    return ops.maximum(z - tau, 0.0)


def entmax15(z):
    """Exact 1.5-entmax along the last axis: ``p = max(z / 2 - tau, 0) ** 2`` with ``sum(p) = 1``.

    Sorted-threshold algorithm of Peters et al. (2019): for each ``k`` the candidate threshold is
    ``tau_k = mean_k - sqrt(max(0, (1 - k * var_k) / k))`` over the top ``k`` entries of
    ``x = z / 2``; the support size is the number of ``k`` with ``tau_k <= x_(k)``.
    """
    x = z / 2.0
    x = x - ops.stop_gradient(ops.max(x, axis=-1, keepdims=True))
    x_sorted = _descending(x)
    ranks = _ranks(x)
    mean = ops.cumsum(x_sorted, axis=-1) / ranks
    mean_sq = ops.cumsum(ops.square(x_sorted), axis=-1) / ranks
    delta = (1.0 - ranks * (mean_sq - ops.square(mean))) / ranks
    # sqrt only where delta > 0: the derivative of sqrt at 0 is inf, and inf * 0 (the cotangent of
    # the unused k) is NaN in the true-Jacobian gradient on JAX.
    positive = delta > 0.0
    tau_k = mean - ops.where(positive, ops.sqrt(ops.where(positive, delta, 1.0)), 0.0)
    k = ops.sum(ops.cast(tau_k <= x_sorted, "int32"), axis=-1, keepdims=True)
    tau = ops.take_along_axis(tau_k, k - 1, axis=-1)
    return ops.square(ops.maximum(x - tau, 0.0))


class FenchelYoungHead(Head):
    """A head ``p = f(z)`` trained with the Fenchel-Young loss of ``f`` (see the module docstring)."""

    def __init__(self, fenchel_young_gradient=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(fenchel_young_gradient, bool):
            raise ValueError(
                f"fenchel_young_gradient must be True or False (got {fenchel_young_gradient!r})"
            )
        self.fenchel_young_gradient = fenchel_young_gradient

    @staticmethod
    def mapping(z):
        raise NotImplementedError

    def call(self, z, training=False):
        z = self._float32(z)
        p = self.mapping(z)
        if training and self.fenchel_young_gradient:
            return ops.stop_gradient(p) + (z - ops.stop_gradient(z))
        return p

    def get_config(self):
        return {**super().get_config(), "fenchel_young_gradient": self.fenchel_young_gradient}


@keras.saving.register_keras_serializable(package="keras_softmax")
class Sparsemax(FenchelYoungHead):
    """Sparsemax: the Euclidean projection of the logits onto the simplex.

    ``p = argmin_{q in simplex} ||q - z||^2 = max(z - tau, 0)``: exact zeros for low logits.
    Pair it with :class:`keras_softmax.SparsemaxLoss` (gradient ``p - y`` w.r.t. the logits).

    Args:
        fenchel_young_gradient: in training, hand the loss gradient straight to the logits
            (module docstring). Set False to use the true Jacobian.

    Example:
        >>> ks.Sparsemax()(keras.ops.array([[1.0, 2.0, 2.5]]))  # [[0., 0.25, 0.75]]
    """

    mapping = staticmethod(sparsemax)


@keras.saving.register_keras_serializable(package="keras_softmax")
class Entmax15(FenchelYoungHead):
    """1.5-entmax: ``p = argmax_{q in simplex} <q, z> + H_1.5(q)`` with the Tsallis entropy.

    Closed form ``p_i = max(z_i / 2 - tau, 0) ** 2``; sparse like sparsemax but smoother.
    Pair it with :class:`keras_softmax.Entmax15Loss` (gradient ``p - y`` w.r.t. the logits).

    Args:
        fenchel_young_gradient: as for :class:`Sparsemax`.

    Example:
        >>> ks.Entmax15()(keras.ops.array([[1.0, 2.0, 3.5]]))
    """

    mapping = staticmethod(entmax15)
