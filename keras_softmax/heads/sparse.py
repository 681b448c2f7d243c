"""Sparse heads: sparsemax (Martins & Astudillo 2016) and exact 1.5-entmax (Peters et al. 2019).

Both are written here from their sort-based closed forms. ``keras.ops.sparsemax`` in Keras 3.15
sums the cumulative sums of the whole support instead of taking the one at the support size, so its
threshold is wrong and its outputs need not sum to 1; the tests guard against that bug here.

Two gradients, one switch (``fenchel_young_gradient``):

* A bare layer (``Sparsemax()``, ``Entmax15()``; the default ``fenchel_young_gradient=False``) is
  an ordinary differentiable map: its gradient is its true Jacobian, in training and at inference.
  It is therefore correct under *any* loss you put after it (cross-entropy, MSE, an attention-style
  weighted sum ``sum_i w_i p_i``, ...). Use it this way inside your own models.
* Training with the head's own Fenchel-Young loss needs the gradient ``p - y`` with respect to the
  logits, which no function of ``p`` alone has: a class outside the support has ``p_y = 0`` and,
  through the Jacobian, gets no push at all. With ``fenchel_young_gradient=True`` the layer passes
  the incoming gradient straight to the logits (forward value still ``p``), in every call whatever
  ``training`` says, and the matching losses (:class:`~keras_softmax.SparsemaxLoss`,
  :class:`~keras_softmax.Entmax15Loss`) return the gradient ``p - y`` with respect to ``p``: the
  logits receive exactly ``p - y``. This straight-through path is right *only* for that pairing (under
  any other loss it hands ``dL/dp`` to the logits, which is not a gradient of anything).

The pairing switches it on, never a bare layer silently: ``keras_softmax.get_head("sparsemax")``,
``build_model`` and the CLI build the layer with ``fenchel_young_gradient=True`` (unless you pass
the parameter yourself), and a run with ``loss = "mismatched"`` builds it with ``False``. The flag
is part of ``get_config``, so ``.keras`` files keep it.
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
    """A head ``p = f(z)`` trainable with the Fenchel-Young loss of ``f`` (see the module docstring).

    Subclasses define the static ``mapping(z)``. ``PAIRED_DEFAULTS`` is what the registry sets when
    it pairs the head with its own loss: the straight-through Fenchel-Young gradient.

    Args:
        fenchel_young_gradient: ``False`` (default): the true Jacobian, correct under any loss.
            ``True``: the logits receive the incoming gradient unchanged, in every call, so that the
            matching Fenchel-Young loss gives them ``p - y``; use it only with that loss.
    """

    PAIRED_DEFAULTS = {"fenchel_young_gradient": True}

    def __init__(self, fenchel_young_gradient=False, **kwargs):
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
        if self.fenchel_young_gradient:
            # Value p, gradient the identity: independent of ``training``, so that the matched loss
            # gives p - y in a custom loop or evaluation pass too, not only inside ``fit``.
            return ops.stop_gradient(p) + (z - ops.stop_gradient(z))
        return p

    def get_config(self):
        return {**super().get_config(), "fenchel_young_gradient": self.fenchel_young_gradient}


@keras.saving.register_keras_serializable(package="keras_softmax")
class Sparsemax(FenchelYoungHead):
    """Sparsemax: the Euclidean projection of the logits onto the simplex.

    ``p = argmin_{q in simplex} ||q - z||^2 = max(z - tau, 0)``: exact zeros for low logits.
    On its own the layer has its true Jacobian (right under any loss). To train it with
    :class:`keras_softmax.SparsemaxLoss` (gradient ``p - y`` w.r.t. the logits) take the pair from
    ``get_head("sparsemax")``, or pass ``fenchel_young_gradient=True`` (module docstring).

    Args:
        fenchel_young_gradient: ``True`` only together with :class:`~keras_softmax.SparsemaxLoss`:
            the logits then receive the loss's gradient ``p - y``. Default ``False``: true Jacobian.

    Example:
        >>> ks.Sparsemax()(keras.ops.array([[1.0, 2.0, 2.5]]))  # [[0., 0.25, 0.75]]
    """

    mapping = staticmethod(sparsemax)


@keras.saving.register_keras_serializable(package="keras_softmax")
class Entmax15(FenchelYoungHead):
    """1.5-entmax: ``p = argmax_{q in simplex} <q, z> + H_1.5(q)`` with the Tsallis entropy.

    Closed form ``p_i = max(z_i / 2 - tau, 0) ** 2``; sparse like sparsemax but smoother.
    On its own the layer has its true Jacobian. To train it with :class:`keras_softmax.Entmax15Loss`
    (gradient ``p - y`` w.r.t. the logits) take the pair from ``get_head("entmax15")``, or pass
    ``fenchel_young_gradient=True``.

    Args:
        fenchel_young_gradient: as for :class:`Sparsemax`, with :class:`~keras_softmax.Entmax15Loss`.

    Example:
        >>> ks.Entmax15()(keras.ops.array([[1.0, 2.0, 3.5]]))
    """

    mapping = staticmethod(entmax15)
