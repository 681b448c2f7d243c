"""Heads of the form ``p_i ∝ f(z_i)`` for a positive function ``f`` other than ``exp``.

Each is computed as ``softmax(log f(z))``, so the normalisation is stable for any logits.
"""

from __future__ import annotations

import math
import operator

import keras
from keras import ops

from keras_softmax.heads.base import NormalizedScoresHead


#: Highest Taylor order: beyond it the alternating terms cancel in float32 (order 14 loses 1.7e-3 in
#: log-probability near z = -5, order 16 9e-3, order 26 goes negative).
MAX_TAYLOR_ORDER = 12
#: Worst float32 error of the log-probability (= relative error of the probability) per order,
#: measured against a float64 reference on a 0.001 grid of z in [-12, 12] and at |z| up to 1e4,
#: with some margin. It peaks for negative z near -order/2.7, where the alternating terms of the
#: polynomial cancel: 1.8e-4 at z = -4.44 for order 12, 8.5e-5 for order 10, 3e-5 for order 8;
#: for low orders the float32 rounding of log p at |z| ~ 1e4 dominates (3e-6 at order 2).
TAYLOR_LOG_ERROR = {2: 5e-6, 4: 1e-5, 6: 2e-5, 8: 5e-5, 10: 1.5e-4, 12: 3e-4}


def log_taylor_exp(z, order: int):
    """``log(sum_{j=0..k} z^j / j!)`` for even ``k``, without overflow for large ``|z|``.

    With ``s = max(1, |z|)`` and ``u = z / s`` the polynomial is ``s^k * sum_j u^j s^(j-k) / j!``,
    whose terms are bounded by 1, so ``log f = log(sum_j ...) + k log s``. The even-order Taylor
    polynomial of ``exp`` is strictly positive, so its log is finite.
    """
    s = ops.maximum(ops.abs(z), 1.0)
    u = z / s
    log_s = ops.log(s)
    # The j = 0 term is s^-k (u^0 = 1): power(u, 0) would have a NaN gradient at u = 0 on TensorFlow.
    total = ops.exp(-order * log_s)
    for j in range(1, order + 1):
        # 1/j! as a Python float: an int j! >= 13! overflows the int32 that JAX converts it to.
        total = total + ops.power(u, j) * ops.exp((j - order) * log_s) * (1.0 / math.factorial(j))
    return ops.log(total) + order * log_s


@keras.saving.register_keras_serializable(package="keras_softmax")
class TaylorSoftmax(NormalizedScoresHead):
    """Taylor softmax: ``p_i ∝ 1 + z_i + z_i^2/2 + ... + z_i^k/k!`` (k even, always > 0).

    The order-k Taylor polynomial of ``exp`` replaces ``exp`` (de Brébisson & Vincent 2016). Pair
    it with :class:`keras_softmax.ProbabilityCrossEntropy`.

    Accuracy in float32: the relative error of a probability (absolute error of its log) is below
    2e-5 up to order 6, 1.5e-4 up to order 10 and 3e-4 at order 12 (measured 1.8e-4 near
    z = -4.4; :data:`TAYLOR_LOG_ERROR`); beyond 12 the polynomial's terms cancel too much.

    Args:
        order: even integer k in [2, 12] (higher orders lose float32 accuracy).

    Example:
        >>> ks.TaylorSoftmax(order=4)(keras.ops.array([[0.0, 1.0, -3.0]]))
    """

    def __init__(self, order=2, **kwargs):
        super().__init__(**kwargs)
        try:
            value = None if isinstance(order, bool) else operator.index(order)
        except TypeError:
            value = None
        if value is None or not 2 <= value <= MAX_TAYLOR_ORDER or value % 2:
            raise ValueError(f"order must be an even integer in [2, {MAX_TAYLOR_ORDER}] (got {order!r})")
        self.order = int(value)

    def scores(self, z, training=False):
        return log_taylor_exp(z, self.order)

    def get_config(self):
        return {**super().get_config(), "order": self.order}


@keras.saving.register_keras_serializable(package="keras_softmax")
class LogTaylorSoftmax(TaylorSoftmax):
    """Log-Taylor softmax: ``log p_i = log f_k(z_i) - log sum_j f_k(z_j)``, f_k the Taylor polynomial.

    Pair it with :class:`keras_softmax.NegativeLogLikelihood`.

    Example:
        >>> ks.LogTaylorSoftmax(order=2)(keras.ops.array([[0.0, 1.0, -3.0]]))
    """

    log_output = True


@keras.saving.register_keras_serializable(package="keras_softmax")
class Base2Softmax(NormalizedScoresHead):
    """Base-2 softmax: ``p_i = 2^z_i / sum_j 2^z_j`` (= softmax with temperature 1/ln 2).

    Pair it with :class:`keras_softmax.ProbabilityCrossEntropy`.

    Example:
        >>> ks.Base2Softmax()(keras.ops.array([[0.0, 1.0]]))  # [[1/3, 2/3]]
    """

    def scores(self, z, training=False):
        return z * math.log(2.0)


@keras.saving.register_keras_serializable(package="keras_softmax")
class ExpSinSoftmax(NormalizedScoresHead):
    """Exp-sine softmax: ``p_i = exp(sin z_i) / sum_j exp(sin z_j)``.

    Bounded scores: the largest probability ratio between two classes is e^2, so it can never be
    confident with many classes. Pair it with :class:`keras_softmax.ProbabilityCrossEntropy`.

    Example:
        >>> ks.ExpSinSoftmax()(keras.ops.array([[0.0, 1.5707964]]))
    """

    def scores(self, z, training=False):
        return ops.sin(z)


@keras.saving.register_keras_serializable(package="keras_softmax")
class NormalCDFSoftmax(NormalizedScoresHead):
    """Normal-CDF softmax: ``p_i ∝ exp(Phi(z_i))``, ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``.

    Scores lie in [0, 1], so the probability ratio between classes is at most e. Pair it with
    :class:`keras_softmax.ProbabilityCrossEntropy`.

    Example:
        >>> ks.NormalCDFSoftmax()(keras.ops.array([[0.0, 3.0]]))
    """

    def scores(self, z, training=False):
        return 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))
