"""Losses matched to what each head outputs (GUIDE §3).

Every loss takes integer class labels of shape ``(batch,)`` or ``(batch, 1)`` (or target
distributions of shape ``(batch, N)``, as CutMix makes) and the head's output,
computes in float32, and never looks behind its input: none of them relies on a backend recovering
logits from a softmax output (the TensorFlow backend's ``_keras_logits`` shortcut).

Optional ``label_smoothing`` ``eps`` replaces the one-hot target ``y`` by ``q = (1 - eps) y + eps / K``
over the ``K`` classes the head kept: classes a head masked out (``drop_lowest``: probability exactly
0, or a log-probability near ``MASKED_LOGIT``) get no smoothing mass, which would otherwise cost
``eps / N`` times -1e9 on a log head. The Fenchel-Young losses (sparse heads, no masking) spread
``eps`` over all ``N`` classes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.base import MASKED_LOGIT, check_fraction

#: A log-probability at or below this belongs to a class the head masked out (drop_lowest gives
#: about MASKED_LOGIT = -1e9); a real one is far above it.
MASKED_LOG_PROBABILITY = MASKED_LOGIT / 2


def _as_tensor(y_true):
    """Labels as a tensor: ``Loss.__call__`` leaves a Python list of labels a list of scalars."""
    return ops.convert_to_tensor(y_true)


def _is_distribution(y_true, y_pred):
    """True when ``y_true`` holds target distributions (e.g. from CutMix) rather than labels."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (None, 1)


def _labels(y_true, y_pred):
    """Integer labels of shape ``y_pred.shape[:-1] + (1,)``."""
    y = ops.cast(y_true, "int32")
    if len(y.shape) == len(y_pred.shape):
        return y
    return ops.expand_dims(y, -1)


def _target(y_true, y_pred, label_smoothing):
    """The (smoothed) target distribution ``q``: one-hot labels, or given distributions."""
    num_classes = ops.shape(y_pred)[-1]
    if _is_distribution(y_true, y_pred):
        q = ops.cast(y_true, "float32")
    else:
        q = ops.one_hot(ops.squeeze(_labels(y_true, y_pred), -1), num_classes, dtype="float32")
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / ops.cast(num_classes, "float32")
    return q


class _HeadLoss(keras.losses.Loss):
    def __init__(self, label_smoothing=0.0, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.label_smoothing = check_fraction("label_smoothing", label_smoothing)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "label_smoothing": self.label_smoothing}

    def _cross_entropy(self, y_true, log_p, kept):
        """``-sum_j q_j log p_j`` without materialising ``q`` when the targets are labels.

        ``kept`` marks the classes the head did not mask out: the smoothing mass goes to them only.
        """
        if _is_distribution(y_true, log_p):
            ce = -ops.sum(ops.cast(y_true, "float32") * log_p, axis=-1)
        else:
            ce = -ops.squeeze(ops.take_along_axis(log_p, _labels(y_true, log_p), axis=-1), -1)
        if not self.label_smoothing:
            return ce
        eps = self.label_smoothing
        kept = ops.cast(kept, "float32")
        mean_kept = ops.sum(kept * ops.where(kept > 0, log_p, 0.0), axis=-1) / ops.maximum(
            ops.sum(kept, axis=-1), 1.0)
        return (1.0 - eps) * ce - eps * mean_kept


#: The smallest normal float32: below it a probability carries no gradient (denormals may flush to 0).
_TINY = 2.0**-126


def floored_log(p, epsilon):
    """``log max(p, epsilon)`` in value, with the gradient of ``log p`` wherever ``p`` is a normal float32.

    The floor keeps the *value* finite (a zero probability costs ``-log epsilon``); it does not
    flatten the gradient, so a probability below ``epsilon`` still learns (``d/dp = 1/p``). Below
    the smallest normal float32 (and at an exact 0) the gradient is 0, never inf or NaN.
    """
    # ``p < TINY`` rather than ``p >= TINY``: a NaN probability must stay NaN (a diverged run has to
    # show it), not be floored into a finite loss.
    log_p = ops.log(ops.where(p < _TINY, _TINY, p))
    floored = ops.maximum(log_p, float(np.log(epsilon)))
    return log_p + ops.stop_gradient(floored - log_p)


@keras.saving.register_keras_serializable(package="keras_softmax")
class ProbabilityCrossEntropy(_HeadLoss):
    """Cross-entropy on probabilities: ``-log max(p_y, epsilon)``, with the gradient of ``-log p_y``.

    For heads that output probabilities (softmax, gumbel, taylor, base2, exp_sin, normal_cdf). With
    ``p = softmax(s)`` the gradient w.r.t. the scores is ``p - y``. The floor bounds the value only
    (:func:`floored_log`): the gradient stays that of ``-log p_y`` below ``epsilon``, down to the
    smallest normal float32 (~1.2e-38), so a confidently wrong prediction still gets its push, and
    a hard Gumbel sample (``GumbelSoftmax(hard=True)`` as ``get_head`` pairs it) trains with the
    soft sample's gradient.

    Args:
        epsilon: floor on the probability in the loss value (default 1e-7), so a zero probability
            costs ``-log(epsilon)`` (about 16.1) instead of infinity.
        label_smoothing: eps in [0, 1).
    """

    def __init__(self, epsilon=1e-7, label_smoothing=0.0, name="probability_cross_entropy", **kwargs):
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)
        self.epsilon = float(epsilon)
        if not 0.0 < self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in (0, 1) (got {epsilon!r})")

    def call(self, y_true, y_pred):
        p = ops.cast(y_pred, "float32")
        # kept: not exactly 0 (a NaN stays in, so that it shows in the loss)
        return self._cross_entropy(_as_tensor(y_true), floored_log(p, self.epsilon),
                                   kept=ops.logical_not(p == 0.0))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_softmax")
class NegativeLogLikelihood(_HeadLoss):
    """Negative log-likelihood of log-probabilities: ``-log p_y``.

    For heads that output log-probabilities (log_softmax, log_gumbel, log_taylor, hierarchical).
    With ``log p = log_softmax(s)`` the gradient w.r.t. the scores is ``p - y``.
    """

    def __init__(self, label_smoothing=0.0, name="negative_log_likelihood", **kwargs):
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)

    def call(self, y_true, y_pred):
        log_p = ops.cast(y_pred, "float32")
        kept = ops.logical_not(log_p <= MASKED_LOG_PROBABILITY)  # a NaN stays in, to show in the loss
        return self._cross_entropy(_as_tensor(y_true), log_p, kept=kept)


class FenchelYoungLoss(_HeadLoss):
    """Fenchel-Young loss ``L(z, q) = Omega*(z) + Omega(q) - <z, q>`` of a sparse head's output ``p``.

    Its gradient w.r.t. the scores is ``p - q``. The loss sees only ``p``, so its value is
    ``L(z_hat, q)`` at the canonical scores ``z_hat(p)`` that the head maps to ``p``; this equals
    ``L(z, q)`` whenever the true class is in the support of ``p`` and is a lower bound otherwise.
    The gradient it returns w.r.t. ``p`` is ``p - q``, which the head paired with it (``get_head``,
    ``build_model`` and the CLI build it with ``fenchel_young_gradient=True``) hands to the logits
    unchanged: training follows the exact Fenchel-Young gradient. After a bare layer (true Jacobian)
    the logits would get ``J^T (p - q)`` instead, which gives a label outside the support no push:
    use the pair, or ``fenchel_young_gradient=True``. Subclasses define ``value(p, q)``.
    """

    def value(self, p, q):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        p = ops.cast(y_pred, "float32")
        q = _target(_as_tensor(y_true), p, self.label_smoothing)
        value = ops.stop_gradient(self.value(p, q))
        surrogate = ops.sum(ops.stop_gradient(p - q) * (p - ops.stop_gradient(p)), axis=-1)
        return value + surrogate


@keras.saving.register_keras_serializable(package="keras_softmax")
class SparsemaxLoss(FenchelYoungLoss):
    """Sparsemax loss (Martins & Astudillo 2016): Fenchel-Young loss of ``Omega(p) = ||p||^2 / 2``.

    On scores: ``L(z, y) = -z_y + (1/2) sum_{j in S} (z_j^2 - tau^2) + 1/2``; gradient ``p - y``.
    From the head's output (``z_hat = p``): ``L = ||p - q||^2 / 2``.
    """

    def __init__(self, label_smoothing=0.0, name="sparsemax_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)

    def value(self, p, q):
        return 0.5 * ops.sum(ops.square(p - q), axis=-1)


@keras.saving.register_keras_serializable(package="keras_softmax")
class Entmax15Loss(FenchelYoungLoss):
    """1.5-entmax loss (Peters et al. 2019): Fenchel-Young loss of the Tsallis 1.5-entropy.

    ``Omega(p) = (4/3) (sum_j p_j^1.5 - 1)``; gradient w.r.t. the scores ``p - y``. From the head's
    output (``z_hat = 2 sqrt(p)``): ``L = (2/3) sum p^1.5 + (4/3) sum q^1.5 - 2 sum sqrt(p) q``.
    """

    def __init__(self, label_smoothing=0.0, name="entmax15_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)

    def value(self, p, q):
        return (
            (2.0 / 3.0) * ops.sum(ops.power(p, 1.5), axis=-1)
            + (4.0 / 3.0) * ops.sum(ops.power(q, 1.5), axis=-1)
            - 2.0 * ops.sum(ops.sqrt(p) * q, axis=-1)
        )


class _PairedLoss:
    """Mixin of the losses that read weights of the head layer they are paired with.

    ``loss.bind(layer)`` pairs them (``get_head``, ``build_model``/``compile_model`` and the trainer
    do it). The layer is not part of the loss's config: a loss deserialised on its own (e.g. by
    ``keras.saving.load_model``) is unpaired until ``keras_softmax.compile_model(model)`` pairs it.
    """

    _layer = None

    def bind(self, layer):
        """Pair this loss with ``layer`` (the head whose weights it reads); returns the loss."""
        self._layer = layer
        return self

    @property
    def layer(self):
        return self._layer


@keras.saving.register_keras_serializable(package="keras_softmax")
class EntmaxAlphaLoss(_PairedLoss, FenchelYoungLoss):
    """alpha-entmax loss: Fenchel-Young loss of ``Omega_alpha(p) = (sum_j p_j^alpha - 1) / (alpha (alpha - 1))``.

    Gradient w.r.t. the scores ``p - q``; w.r.t. alpha ``-dOmega_alpha/dalpha(p) + dOmega_alpha/dalpha(q)``
    (partial derivatives at fixed ``p`` and ``q``: Danskin's theorem, since ``p`` maximises
    ``<p, z> - Omega_alpha(p)``). From the head's output (canonical scores
    ``z_hat = p^(alpha-1) / (alpha - 1)``)::

        L = sum p^alpha / alpha + sum q^alpha / (alpha (alpha - 1)) - sum q p^(alpha-1) / (alpha - 1)

    (alpha = 1.5 gives :class:`Entmax15Loss`, alpha = 2 :class:`SparsemaxLoss`). alpha is read from the
    paired :class:`keras_softmax.EntmaxAlpha` layer (its trainable weight when ``learn_alpha``), else
    the ``alpha`` given here; ``get_config`` records the paired layer's current alpha.

    Args:
        alpha: alpha when the loss is not paired with a layer.
        label_smoothing: eps in [0, 1).
    """

    def __init__(self, alpha=1.5, label_smoothing=0.0, name="entmax_alpha_loss", **kwargs):
        from keras_softmax.heads.entmax_alpha import _check_alpha  # heads.registry imports this module

        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)
        self.alpha = _check_alpha(alpha)

    def bind(self, layer):
        super().bind(layer)
        self.alpha = float(ops.convert_to_numpy(layer.alpha_value()))
        return self

    def alpha_value(self):
        if self._layer is not None:
            return self._layer.alpha_value()
        return ops.convert_to_tensor(self.alpha, dtype="float32")

    def value(self, p, q, alpha=None):
        from keras_softmax.heads.entmax_alpha import _pow_support

        alpha = self.alpha_value() if alpha is None else alpha
        return (
            ops.sum(_pow_support(p, alpha), axis=-1) / alpha
            + ops.sum(_pow_support(q, alpha), axis=-1) / (alpha * (alpha - 1.0))
            - ops.sum(q * _pow_support(p, alpha - 1.0), axis=-1) / (alpha - 1.0)
        )

    def call(self, y_true, y_pred):
        from keras_softmax.heads.entmax_alpha import tsallis_omega

        p = ops.cast(y_pred, "float32")
        q = _target(_as_tensor(y_true), p, self.label_smoothing)
        alpha = self.alpha_value()
        fixed_p = ops.stop_gradient(p)
        value = ops.stop_gradient(self.value(fixed_p, q, ops.stop_gradient(alpha)))
        surrogate = ops.sum(ops.stop_gradient(p - q) * (p - fixed_p), axis=-1)  # d/dz: p - q
        alpha_part = tsallis_omega(q, alpha) - tsallis_omega(fixed_p, alpha)  # d/dalpha at fixed p, q
        return value + surrogate + (alpha_part - ops.stop_gradient(alpha_part))

    def get_config(self):
        alpha = self.alpha
        if self._layer is not None:
            alpha = float(ops.convert_to_numpy(self._layer.alpha_value()))
        return {**super().get_config(), "alpha": alpha}


class ProjectionHeadLoss(_PairedLoss, NegativeLogLikelihood):
    """The loss of a head that owns its projection (adaptive, sampled softmax).

    ``y_pred`` of rank 2 is the head's inference output, log-probabilities over all classes: the loss
    is their negative log-likelihood (as in ``evaluate``). ``y_pred`` of rank 3 is the head's training
    packet (its input features, see :mod:`keras_softmax.heads.projection`): the loss is the paired
    layer's ``training_loss(features, labels, label_smoothing)``. Integer labels only (no CutMix).
    """

    def call(self, y_true, y_pred):
        y_true = _as_tensor(y_true)
        if len(y_pred.shape) != 3:
            return super().call(y_true, y_pred)
        if self._layer is None:
            raise ValueError(
                f"{type(self).__name__} is not paired with its head layer: call loss.bind(layer), or "
                "compile the model with keras_softmax.compile_model(model) (a loss reloaded from a "
                ".keras file is unpaired: call compile_model right after load_model)"
            )
        if len(y_true.shape) == 2 and y_true.shape[-1] not in (None, 1):
            raise ValueError(f"{type(self).__name__} trains on integer labels, not target distributions "
                             "(no CutMix)")
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        return self._layer.training_loss(y_pred[:, 0, :], labels, self.label_smoothing)


@keras.saving.register_keras_serializable(package="keras_softmax")
class AdaptiveSoftmaxLoss(ProjectionHeadLoss):
    """NLL of :class:`keras_softmax.AdaptiveSoftmax`: exact ``-log p(y)``, computed in training from
    the features without the ``(batch, N)`` output (head cluster + the label's tail cluster).
    Label smoothing is exact too."""

    def __init__(self, label_smoothing=0.0, name="adaptive_softmax_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_softmax")
class SampledSoftmaxLoss(ProjectionHeadLoss):
    """Sampled softmax loss of :class:`keras_softmax.SampledSoftmax` in training (true class plus
    ``num_sampled`` sampled classes, log-expected-count corrected); full NLL in evaluation.
    No label smoothing: its mean over all classes is what sampling avoids."""

    def __init__(self, label_smoothing=0.0, name="sampled_softmax_loss", **kwargs):
        if label_smoothing:
            raise ValueError("sampled softmax trains without label smoothing: label_smoothing must be 0 "
                             f"(got {label_smoothing!r})")
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)


def sparsemax_loss(y, z):
    """Exact sparsemax loss on scores ``z`` (reference; gradient ``sparsemax(z) - y``)."""
    from keras_softmax.heads.sparse import sparsemax  # here: heads.registry imports this module

    z = ops.cast(z, "float32")
    p = sparsemax(z)
    q = _target(_as_tensor(y), z, 0.0)

    def omega(r):
        return 0.5 * ops.sum(ops.square(r), axis=-1) - 0.5

    # Omega(q) is 0 for one-hot labels but not for target distributions (label smoothing, CutMix).
    return ops.sum(z * p, axis=-1) - omega(p) + omega(q) - ops.sum(z * q, axis=-1)


def entmax15_loss(y, z):
    """Exact 1.5-entmax loss on scores ``z`` (reference; gradient ``entmax15(z) - y``)."""
    from keras_softmax.heads.sparse import entmax15  # here: heads.registry imports this module

    z = ops.cast(z, "float32")
    p = entmax15(z)
    q = _target(_as_tensor(y), z, 0.0)

    def omega(r):
        return (4.0 / 3.0) * (ops.sum(ops.power(r, 1.5), axis=-1) - 1.0)

    # Omega(q) is 0 for one-hot labels but not for target distributions (label smoothing, CutMix).
    return ops.sum(z * p, axis=-1) - omega(p) + omega(q) - ops.sum(z * q, axis=-1)


def entmax_alpha_loss(y, z, alpha=1.5):
    """Exact alpha-entmax Fenchel-Young loss on scores ``z`` (reference; gradient ``entmax_alpha(z) - y``)."""
    from keras_softmax.heads.entmax_alpha import entmax_bisect, tsallis_omega  # heads.registry imports this module

    z = ops.cast(z, "float32")
    alpha = ops.cast(alpha, "float32")
    p = ops.stop_gradient(entmax_bisect(z, alpha))  # Danskin: p is the maximiser, hold it fixed
    q = _target(_as_tensor(y), z, 0.0)
    return ops.sum(z * p, axis=-1) - tsallis_omega(p, alpha) + tsallis_omega(q, alpha) - ops.sum(z * q, axis=-1)
