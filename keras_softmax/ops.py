"""The operations the heads and the losses share, with Keras and numpy only (no package imports).

The bottom of the core: :mod:`keras_softmax.heads` and :mod:`keras_softmax.losses` both import this
module and never each other; :mod:`keras_softmax.heads.registry` pairs them. Here live the argument
checks, the sort-based sparsemax and 1.5-entmax, alpha-entmax by bisection and the Tsallis entropy,
and the tag by which a head's output names the layer that made it (:func:`tag_output`), so that a
loss can refuse a composition it cannot train (a bare sparse layer) or read the weights of a head
that owns its projection, without any pairing state.
"""

from __future__ import annotations

import math
import weakref

import keras
from keras import ops

#: Logits removed by ``drop_lowest`` (or a mask) are replaced by this finite value: exp() of it is 0 in
#: float32, and unlike -inf it keeps log-probabilities finite.
MASKED_LOGIT = -1e9
#: alpha-entmax's range of alpha: a learnable alpha is clipped to [ALPHA_MIN, ALPHA_MAX] in the forward
#: pass. At 1 + 1e-3 the exponent 1 / (alpha - 1) is 1000, still accurate in float32 (tested).
ALPHA_MIN = 1.001
ALPHA_MAX = 100.0


# --------------------------------------------------------------------------- argument checks
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


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False (got {value!r})")
    return value


def check_alpha(value) -> float:
    """alpha-entmax's alpha as a float in [ALPHA_MIN, ALPHA_MAX], or ``ValueError``."""
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"alpha must be a number > 1 (got {value!r})")
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number > 1 (got {value!r})") from None
    if not math.isfinite(alpha) or not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise ValueError(f"alpha must be in [{ALPHA_MIN}, {ALPHA_MAX}] (> 1; got {value!r})")
    return alpha


# --------------------------------------------------------------------------- one axis
def along_last_axis(fn, z, axis: int, *others):
    """``fn(z, *others)`` (which works along the last axis) applied along ``axis`` of ``z`` (and of
    ``others``, tensors of ``z``'s shape)."""
    if axis in (-1, len(z.shape) - 1):
        return fn(z, *others)
    moved = [ops.moveaxis(t, axis, -1) for t in (z, *others)]
    return ops.moveaxis(fn(*moved), -1, axis)


def apply_mask(z, mask):
    """``z`` with the entries where ``mask`` is False set to ``MASKED_LOGIT`` (Keras ``Softmax``'s mask).

    ``mask`` broadcasts against ``z`` (e.g. ``(batch, 1, keys)`` against attention scores).
    """
    if mask is None:
        return z
    return ops.where(ops.cast(mask, "bool"), z, ops.full_like(z, MASKED_LOGIT))


def full_mask(mask, z):
    """``mask`` broadcast to ``z``'s shape as booleans (None stays None)."""
    return None if mask is None else ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(z))


# --------------------------------------------------------------------------- sparse mappings
def _ranks(z):
    return ops.cast(ops.arange(1, z.shape[-1] + 1), "float32")


def _descending(z):
    return ops.flip(ops.sort(z, axis=-1), axis=-1)


def sparsemax(z, axis: int = -1):
    """Sparsemax along ``axis``: ``p = max(z - tau, 0)`` with ``sum(p) = 1``.

    With ``z_(1) >= z_(2) >= ...`` sorted, the support size is the largest ``k`` with
    ``1 + k z_(k) > sum_{j<=k} z_(j)`` and ``tau = (sum_{j<=k} z_(j) - 1) / k``. Rows are shifted
    by their maximum first, so logits of magnitude 1e4 keep full float32 precision.
    """
    return along_last_axis(_sparsemax, ops.cast(z, "float32"), axis)


def _sparsemax(z):
    z = z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True))
    z_sorted = _descending(z)
    cumsum = ops.cumsum(z_sorted, axis=-1)
    support = ops.cast(1.0 + _ranks(z) * z_sorted > cumsum, "int32")
    k = ops.sum(support, axis=-1, keepdims=True)  # >= 1: the top entry is always in the support
    tau = (ops.take_along_axis(cumsum, k - 1, axis=-1) - 1.0) / ops.cast(k, "float32")
    return ops.maximum(z - tau, 0.0)


def entmax15(z, axis: int = -1):
    """Exact 1.5-entmax along ``axis``: ``p = max(z / 2 - tau, 0) ** 2`` with ``sum(p) = 1``.

    Sorted-threshold algorithm of Peters et al. (2019): for each ``k`` the candidate threshold is
    ``tau_k = mean_k - sqrt(max(0, (1 - k * var_k) / k))`` over the top ``k`` entries of
    ``x = z / 2``; the support size is the number of ``k`` with ``tau_k <= x_(k)``. A ``-inf`` logit
    (a mask written into the scores) counts as ``MASKED_LOGIT``: probability 0, and finite gradients
    (``-inf`` itself would make the running mean of squares ``inf`` and every threshold NaN).
    """
    z = ops.cast(z, "float32")
    z = ops.where(z == float("-inf"), ops.full_like(z, MASKED_LOGIT), z)
    return along_last_axis(_entmax15, z, axis)


def _entmax15(z):
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


#: Bases below this are treated as this in F'(tau) (alpha > 2 raises them to a negative power).
_TINY_BASE = 1e-30


def pow_support(base, exponent):
    """``base ** exponent`` where ``base > 0`` and 0 elsewhere, with finite gradients everywhere."""
    positive = base > 0.0
    safe = ops.where(positive, base, ops.ones_like(base))
    return ops.where(positive, ops.exp(exponent * ops.log(safe)), ops.zeros_like(base))


def entmax_bisect(z, alpha=1.5, iterations=50, axis: int = -1):
    """alpha-entmax along ``axis`` by bisection, differentiable in ``z`` and ``alpha``.

    See :mod:`keras_softmax.heads.entmax_alpha` for the method (bracket, fixed iterations, one
    Newton step for exact implicit derivatives).

    Args:
        z: logits, any float dtype (computed in float32).
        alpha: a Python float or a scalar tensor in [ALPHA_MIN, ALPHA_MAX].
        iterations: bisection steps (fixed, for XLA). 50 halvings shrink the bracket below the float32
            resolution of ``tau``; the Newton step then polishes the value.
        axis: the axis to normalise along.

    Returns:
        float32 probabilities of the shape of ``z``, summing to 1 along ``axis``.

    Example:
        >>> entmax_bisect(keras.ops.array([[1.0, 2.0, 3.5]]), alpha=1.5)  # == entmax15
    """
    return along_last_axis(lambda v: _entmax_bisect(v, alpha, iterations), ops.cast(z, "float32"), axis)


def _entmax_bisect(z, alpha, iterations):
    alpha = ops.cast(alpha, "float32")
    am1 = alpha - 1.0
    n = z.shape[-1]
    x = am1 * (z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True)))  # max x = 0
    exponent = 1.0 / am1
    xs, ks = ops.stop_gradient(x), ops.stop_gradient(exponent)

    def excess(tau):
        return ops.sum(pow_support(xs - tau, ks), axis=-1, keepdims=True) - 1.0

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

    # One Newton step with tau0 and F'(tau0) constant: exact implicit derivatives.
    base = x - tau0
    support = ops.stop_gradient(base) > 0.0
    mass = ops.sum(pow_support(base, exponent), axis=-1, keepdims=True) - 1.0
    safe = ops.maximum(ops.stop_gradient(base), _TINY_BASE)
    slope = -ops.sum(ops.where(support, ks * ops.exp((ks - 1.0) * ops.log(safe)), 0.0), axis=-1, keepdims=True)
    tau = tau0 - mass / ops.stop_gradient(slope)  # slope < 0: the top entry is always in the support
    p = pow_support(ops.where(support, x - tau, ops.zeros_like(x)), exponent)
    return p / ops.sum(p, axis=-1, keepdims=True)


def tsallis_omega(p, alpha):
    """``Omega_alpha(p) = (sum_j p_j^alpha - 1) / (alpha (alpha - 1))`` (negative Tsallis entropy).

    Zero entries contribute 0 with a finite derivative in ``alpha`` (``0^alpha log 0`` is taken as 0).
    """
    p = ops.cast(p, "float32")
    return (ops.sum(pow_support(p, alpha), axis=-1) - 1.0) / (alpha * (alpha - 1.0))


# --------------------------------------------------------------------------- output tags
#: Tags of tensors that take no attribute (JAX arrays and tracers): id -> layer, cleared when the
#: tensor is collected. Keras keeps ``_keras_mask`` the same way.
_TAGS: dict = {}
_TAG = "_keras_softmax_head"


def tag_output(tensor, layer):
    """Record on ``tensor`` that head ``layer`` produced it; returns ``tensor``.

    The tag travels with the tensor object, like Keras's own ``_keras_mask`` (which Keras's losses
    read from ``y_pred``): from the head's ``call`` through a functional model to the loss, in
    ``fit``/``evaluate`` and in eager code, on every backend. A loss reads it with
    :func:`output_head` to refuse a composition that would train silently wrong, or to reach the
    weights of a head that owns its projection. It never changes a value or a gradient.
    """
    try:
        setattr(tensor, _TAG, layer)
    except (AttributeError, TypeError):
        try:
            weakref.finalize(tensor, _TAGS.pop, id(tensor), None)
        except TypeError:  # a tensor that takes no weak reference: leave it untagged
            return tensor
        _TAGS[id(tensor)] = layer
    return tensor


def output_head(tensor):
    """The head layer that produced ``tensor`` (see :func:`tag_output`), or None."""
    layer = getattr(tensor, _TAG, None)
    if layer is None:
        layer = _TAGS.get(id(tensor))
    return layer if isinstance(layer, keras.layers.Layer) else None
