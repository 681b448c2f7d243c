"""alpha-entmax by bisection (Peters et al. 2019; Correia et al. 2019), alpha fixed or learnable.

``p = alpha-entmax(z) = argmax_{p in simplex} <p, z> + H_alpha(p)`` with the Tsallis entropy
``H_alpha(p) = (1 - sum_j p_j^alpha) / (alpha (alpha - 1))``. Its closed form is
``p_j = [(alpha - 1) z_j - tau]_+ ^ (1 / (alpha - 1))`` with the threshold ``tau`` that makes ``p`` sum
to 1. alpha = 2 is sparsemax, alpha = 1.5 is 1.5-entmax, alpha -> 1 approaches softmax.

``tau`` is found by bisection, as the ``entmax`` package does, with these differences:

* Everything is float32 whatever the dtype policy (bf16 / fp16 logits are cast first) and the
  logits are shifted by their row maximum, so logits of +-1e4 give no NaN or Inf. The ``entmax``
  package bisects in the input's dtype and returns NaN for very negative half-precision logits.
* A fixed number of iterations (static shapes, so the loop compiles under XLA), on
  ``tau in [-1, -(1/N)^(alpha-1)]`` where the maximum is at 0: the bracket always holds the root.
* The gradient is exact without differentiating through the loop: one Newton step
  ``tau* = tau - F(tau) / F'(tau)`` on ``F(tau) = sum_j p_j(tau) - 1``, with ``tau`` and ``F'`` held
  constant, has the value of the root and, by the implicit function theorem, its derivatives with
  respect to ``z`` and ``alpha``. The layer's true Jacobian (``fenchel_young_gradient=False``) is
  therefore exact for both the logits and a learnable alpha.

Trained with its Fenchel-Young loss (:class:`keras_softmax.EntmaxAlphaLoss`) the logits receive
``p - y`` and alpha receives ``dL/dalpha = -dOmega_alpha/dalpha (p) + dOmega_alpha/dalpha (q)`` (the
partial derivative at fixed ``p``, by Danskin's theorem, since ``p`` maximises ``<p, z> - Omega(p)``).
The loss reads alpha from the layer it is paired with (``get_head`` / ``build_model`` /
``compile_model`` pair them).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_softmax.heads.sparse import FenchelYoungHead

#: Smallest alpha used: a learnable alpha is clipped to [ALPHA_MIN, ALPHA_MAX] in the forward pass.
#: At 1 + 1e-3 the exponent 1 / (alpha - 1) is 1000, still accurate in float32 (tested).
ALPHA_MIN = 1.001
ALPHA_MAX = 100.0
#: Bases below this are treated as this in F'(tau) (alpha > 2 raises them to a negative power).
_TINY_BASE = 1e-30


def _check_alpha(value) -> float:
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"alpha must be a number > 1 (got {value!r})")
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number > 1 (got {value!r})") from None
    if not math.isfinite(alpha) or not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise ValueError(f"alpha must be in [{ALPHA_MIN}, {ALPHA_MAX}] (> 1; got {value!r})")
    return alpha


def _pow_support(base, exponent):
    """``base ** exponent`` where ``base > 0`` and 0 elsewhere, with finite gradients everywhere."""
    positive = base > 0.0
    safe = ops.where(positive, base, ops.ones_like(base))
    return ops.where(positive, ops.exp(exponent * ops.log(safe)), ops.zeros_like(base))


def entmax_bisect(z, alpha=1.5, iterations=50):
    """alpha-entmax along the last axis by bisection, differentiable in ``z`` and ``alpha``.

    Args:
        z: logits, any float dtype (computed in float32).
        alpha: a Python float or a scalar tensor in [ALPHA_MIN, ALPHA_MAX].
        iterations: bisection steps (fixed, for XLA). 50 halvings shrink the bracket below the float32
            resolution of ``tau``; the Newton step then polishes the value.

    Returns:
        float32 probabilities of the shape of ``z``, summing to 1 along the last axis.

    Example:
        >>> entmax_bisect(keras.ops.array([[1.0, 2.0, 3.5]]), alpha=1.5)  # == entmax15
    """
    z = ops.cast(z, "float32")
    alpha = ops.cast(alpha, "float32")
    am1 = alpha - 1.0
    n = z.shape[-1]
    x = am1 * (z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True)))  # max x = 0
    exponent = 1.0 / am1
    xs, ks = ops.stop_gradient(x), ops.stop_gradient(exponent)

    def excess(tau):
        return ops.sum(_pow_support(xs - tau, ks), axis=-1, keepdims=True) - 1.0

    # Bracket: at tau = -1 the top entry alone has mass 1 (excess >= 0); at tau = -(1/N)^(alpha-1)
    # every entry has mass <= 1/N (excess <= 0).
    lo = ops.full_like(xs[..., :1], -1.0)
    hi = ops.full_like(lo, 1.0) * -ops.exp(ops.stop_gradient(am1) * math.log(1.0 / max(1, n)))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        too_low = excess(mid) > 0.0  # mass above 1: raise the threshold
        return ops.where(too_low, mid, lo), ops.where(too_low, hi, mid)

    lo, hi = ops.fori_loop(0, int(iterations), body, (lo, hi))
    tau0 = ops.stop_gradient(0.5 * (lo + hi))

    # One Newton step with tau0 and F'(tau0) constant: exact implicit derivatives (module docstring).
    base = x - tau0
    support = ops.stop_gradient(base) > 0.0
    mass = ops.sum(_pow_support(base, exponent), axis=-1, keepdims=True) - 1.0
    safe = ops.maximum(ops.stop_gradient(base), _TINY_BASE)
    slope = -ops.sum(ops.where(support, ks * ops.exp((ks - 1.0) * ops.log(safe)), 0.0), axis=-1, keepdims=True)
    tau = tau0 - mass / ops.stop_gradient(slope)  # slope < 0: the top entry is always in the support
    p = _pow_support(ops.where(support, x - tau, ops.zeros_like(x)), exponent)
    return p / ops.sum(p, axis=-1, keepdims=True)


def tsallis_omega(p, alpha):
    """``Omega_alpha(p) = (sum_j p_j^alpha - 1) / (alpha (alpha - 1))`` (negative Tsallis entropy).

    Zero entries contribute 0 with a finite derivative in ``alpha`` (``0^alpha log 0`` is taken as 0).
    """
    p = ops.cast(p, "float32")
    return (ops.sum(_pow_support(p, alpha), axis=-1) - 1.0) / (alpha * (alpha - 1.0))


@keras.saving.register_keras_serializable(package="keras_softmax")
class EntmaxAlpha(FenchelYoungHead):
    """alpha-entmax, by bisection, with alpha fixed or learned (a trainable weight of this layer).

    ``p_j = [(alpha - 1) z_j - tau]_+ ^ (1/(alpha - 1))``, ``sum_j p = 1``. alpha = 1.5 gives
    :class:`Entmax15`, alpha = 2 :class:`Sparsemax`, alpha -> 1 approaches softmax. Pair it with
    :class:`keras_softmax.EntmaxAlphaLoss` (Fenchel-Young loss of the Tsallis alpha-entropy; gradient
    ``p - y`` for the logits and the exact ``dL/dalpha``); ``get_head("entmax_alpha")`` does.

    Args:
        alpha: alpha in [1.001, 100] (> 1); with ``learn_alpha`` the initial value.
        learn_alpha: make alpha a trainable scalar weight (clipped to [1.001, 100] when used).
        iterations: bisection steps (default 50).
        fenchel_young_gradient: as for :class:`Sparsemax` (``None``: that class's default); the
            registry pairing turns it on.

    Example:
        >>> layer = ks.EntmaxAlpha(alpha=1.3, learn_alpha=True)
        >>> p = layer(keras.ops.array([[1.0, 2.0, 3.5]]))
        >>> float(layer.alpha_value())
        1.3
    """

    def __init__(self, alpha=1.5, learn_alpha=False, iterations=50, fenchel_young_gradient=None, **kwargs):
        if fenchel_young_gradient is not None:
            kwargs["fenchel_young_gradient"] = fenchel_young_gradient
        super().__init__(**kwargs)
        self.alpha = _check_alpha(alpha)
        if not isinstance(learn_alpha, bool):
            raise ValueError(f"learn_alpha must be True or False (got {learn_alpha!r})")
        self.learn_alpha = learn_alpha
        if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 1000:
            raise ValueError(f"iterations must be an integer in [1, 1000] (got {iterations!r})")
        self.iterations = iterations
        self.alpha_weight = None
        if learn_alpha:
            self.alpha_weight = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.alpha), trainable=True, name="alpha",
                dtype="float32",
            )

    def alpha_value(self):
        """alpha as used in the forward pass: the constant, or the weight clipped to [1.001, 100]."""
        if self.alpha_weight is None:
            return ops.convert_to_tensor(self.alpha, dtype="float32")
        return ops.clip(ops.cast(self.alpha_weight, "float32"), ALPHA_MIN, ALPHA_MAX)

    def mapping(self, z):
        return entmax_bisect(z, self.alpha_value(), self.iterations)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learn_alpha": self.learn_alpha,
                "iterations": self.iterations}
