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
The loss reads alpha from the layer whose output it gets (the output's tag,
:func:`keras_softmax.ops.tag_output`), so a model reloaded from a ``.keras`` file trains on as it was.
The bisection itself lives in :mod:`keras_softmax.ops` (:func:`~keras_softmax.ops.entmax_bisect`),
shared with the loss's ``from_logits=True`` mode.
"""

from __future__ import annotations

import operator

import keras
from keras import ops

from keras_softmax.heads.sparse import FenchelYoungHead
from keras_softmax.ops import ALPHA_MAX, ALPHA_MIN, check_alpha, entmax_bisect, pow_support, tsallis_omega

# The names this module had before they moved to keras_softmax.ops (shared with the losses).
_check_alpha, _pow_support = check_alpha, pow_support
__all__ = ["ALPHA_MAX", "ALPHA_MIN", "EntmaxAlpha", "entmax_bisect", "tsallis_omega"]


@keras.saving.register_keras_serializable(package="keras_softmax")
class EntmaxAlpha(FenchelYoungHead):
    """alpha-entmax, by bisection, with alpha fixed or learned (a trainable weight of this layer).

    ``p_j = [(alpha - 1) z_j - tau]_+ ^ (1/(alpha - 1))``, ``sum_j p = 1``. alpha = 1.5 gives
    :class:`Entmax15`, alpha = 2 :class:`Sparsemax`, alpha -> 1 approaches softmax. Pair it with
    :class:`keras_softmax.EntmaxAlphaLoss` (Fenchel-Young loss of the Tsallis alpha-entropy; gradient
    ``p - y`` for the logits and the exact ``dL/dalpha``); ``get_head("entmax_alpha")`` does. The loss
    reads alpha from the layer whose output it gets (its output tag), so a learned alpha needs no
    pairing step; ``EntmaxAlphaLoss(alpha=..., from_logits=True)`` trains a logits model for a fixed
    alpha.

    Args:
        alpha: alpha in [1.001, 100] (> 1); with ``learn_alpha`` the initial value.
        learn_alpha: make alpha a trainable scalar weight (clipped to [1.001, 100] when used).
        iterations: bisection steps (default 50).
        fenchel_young_gradient: as for :class:`Sparsemax` (``None``: that class's default); the
            registry pairing turns it on.
        axis: the axis to normalise along (default -1). Call with ``mask=`` as :class:`Sparsemax`.

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
        self.alpha = check_alpha(alpha)
        if not isinstance(learn_alpha, bool):
            raise ValueError(f"learn_alpha must be True or False (got {learn_alpha!r})")
        self.learn_alpha = learn_alpha
        try:
            count = None if isinstance(iterations, bool) else operator.index(iterations)
        except TypeError:
            count = None
        if count is None or not 1 <= count <= 1000:
            raise ValueError(f"iterations must be an integer in [1, 1000] (got {iterations!r})")
        self.iterations = int(count)
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
