"""Losses matched to what each head outputs (GUIDE §3).

Every loss takes integer class labels of shape ``(batch,)`` or ``(batch, 1)`` (or target
distributions of shape ``(batch, N)``, as CutMix makes) and the head's output, computes in float32,
and never computes from anything behind its input: none of them relies on a backend recovering
logits from a softmax output (the TensorFlow backend's ``_keras_logits`` shortcut).

Composition, the Keras way. Every loss takes ``from_logits`` as Keras's own cross-entropies do:

* ``from_logits=False`` (default): ``y_pred`` is the head layer's output. A head layer tags its output
  with itself (:func:`keras_softmax.ops.tag_output`, as Keras tags outputs with their mask); a loss
  reads the tag only to refuse, at its first call and in one line, a composition that would train
  silently wrong (:class:`CompositionError`: a bare ``Sparsemax()`` before ``SparsemaxLoss()``, a
  straight-through layer before a cross-entropy), and to reach the weights of a head that owns its
  projection or a learned alpha. There is no pairing step. An output without a tag (Keras's own
  ``activation="sparsemax"``, a head's output passed through another layer) cannot be checked: a
  Fenchel-Young loss given one as a tensor says so once (:class:`CompositionWarning`, one line).
* ``from_logits=True``: ``y_pred`` are the logits the head layer takes, and the loss is exact for the
  head: the Fenchel-Young loss on the scores for sparsemax, 1.5-entmax and alpha-entmax (gradient
  ``p - y``), the cross-entropy of the head in log space for the softmax family (``head=`` the layer
  whose log-probabilities to use; default the plain softmax, Keras's meaning). Put the head layer on
  the logits for inference.

Optional ``label_smoothing`` ``eps`` replaces the one-hot target ``y`` by ``q = (1 - eps) y + eps / K``
over the ``K`` classes the head kept: classes a head masked out (``drop_lowest``: probability exactly
0, or a log-probability near ``MASKED_LOGIT``) get no smoothing mass, which would otherwise cost
``eps / N`` times -1e9 on a log head. A probability that underflowed to 0 under a head that masks
nothing (a plain softmax far too sure of itself) keeps its share, floored at ``epsilon``: that
over-confidence is what smoothing is there to cost. The Fenchel-Young losses (sparse heads, no masking) spread
``eps`` over all ``N`` classes.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

try:  # Keras 3 exports keras.SymbolicScope but no query for it (see _in_symbolic_build)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _keras_in_symbolic_scope
except ImportError:  # pragma: no cover - a Keras that moved it
    _keras_in_symbolic_scope = None

from keras_softmax.ops import (
    MASKED_LOGIT,
    check_alpha,
    check_bool,
    check_fraction,
    entmax15,
    entmax_bisect,
    output_head,
    pow_support,
    sparsemax,
    tsallis_omega,
)

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


class CompositionError(ValueError):
    """A head layer and a loss put together so that training would be silently wrong."""


class CompositionWarning(UserWarning):
    """A loss got an output no keras_softmax head made, and cannot tell whether it will train right."""


def _composition_error(loss, layer, why: str, fix: str):
    return CompositionError(f"{type(loss).__name__}() after {type(layer).__name__}: {why}; {fix}")


def _in_symbolic_build() -> bool:
    """True while Keras traces the loss on stand-in outputs to learn its shapes (``keras.SymbolicScope``,
    e.g. the first ``fit`` on JAX and PyTorch): those outputs come from no layer, so carry no tag.

    Keras 3 exports the scope but no query for it; without the private one, say False (a head pair would
    then warn once, and tests/heads/test_composition.py fails on every backend).
    """
    return _keras_in_symbolic_scope is not None and _keras_in_symbolic_scope()


class _HeadLoss(keras.losses.Loss):
    """Base of the losses: label smoothing, ``from_logits``, and the check of the head behind ``y_pred``."""

    def __init__(self, label_smoothing=0.0, from_logits=False, name=None, reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.label_smoothing = check_fraction("label_smoothing", label_smoothing)
        self.from_logits = check_bool("from_logits", from_logits)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits}

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The head that made y_pred (its output tag), read before Keras converts y_pred; ``call`` uses it.
        head = None if self.from_logits else output_head(y_pred)
        if head is not None:
            self.check_head(head)
        elif not self.from_logits and ops.is_tensor(y_pred) and not _in_symbolic_build():
            self.check_untagged()
        previous, self._head = getattr(self, "_head", None), head
        try:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._head = previous

    def check_head(self, layer):
        """Raise :class:`CompositionError` if ``layer``'s output is not this loss's to train on."""
        if getattr(layer, "fenchel_young_gradient", False):
            raise _composition_error(
                self, layer, "its straight-through gradient (fenchel_young_gradient=True) is right only under "
                "its Fenchel-Young loss", "use the registry's pair (keras_softmax.get_head) or a bare layer")

    def check_untagged(self):
        """Called for a tensor no head layer tagged (e.g. Keras's own activation): nothing to check here."""

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


def _serialize_head(head):
    return None if head is None else keras.saving.serialize_keras_object(head)


def _deserialize_head(head):
    if head is None or isinstance(head, keras.layers.Layer):
        return head
    if isinstance(head, dict):
        return keras.saving.deserialize_keras_object(head)
    raise ValueError(f"head must be a head layer (e.g. keras_softmax.TaylorSoftmax(order=4)) or None (got {head!r})")


class _LogSpaceLoss(_HeadLoss):
    """A cross-entropy whose ``from_logits=True`` mode applies ``head`` (default softmax) in log space."""

    def __init__(self, label_smoothing=0.0, from_logits=False, head=None, **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, **kwargs)
        self.head = _deserialize_head(head)
        if self.head is not None:
            if not self.from_logits:
                raise ValueError("head= applies with from_logits=True (the logits are mapped through it)")
            if not callable(getattr(self.head, "log_probabilities", None)) or getattr(self.head, "owns_projection",
                                                                                     False):
                raise ValueError(f"{type(self.head).__name__} has no log-probabilities of logits to train on: "
                                 "use a softmax-family or hierarchical head")

    def log_probabilities_of_logits(self, z):
        z = ops.cast(z, "float32")
        if self.head is None:
            return ops.log_softmax(z, axis=-1)
        return ops.cast(self.head.log_probabilities(z), "float32")

    def get_config(self):
        config = super().get_config()
        if self.head is not None:
            config["head"] = _serialize_head(self.head)
        return config


@keras.saving.register_keras_serializable(package="keras_softmax")
class ProbabilityCrossEntropy(_LogSpaceLoss):
    """Cross-entropy on probabilities: ``-log max(p_y, epsilon)``, with the gradient of ``-log p_y``.

    For heads that output probabilities (softmax, gumbel, taylor, base2, exp_sin, normal_cdf). With
    ``p = softmax(s)`` the gradient w.r.t. the scores is ``p - y``. The floor bounds the value only
    (:func:`floored_log`): the gradient stays that of ``-log p_y`` below ``epsilon``, down to the
    smallest normal float32 (~1.2e-38), so a confidently wrong prediction still gets its push, and
    a hard Gumbel sample (``GumbelSoftmax(hard=True)`` as ``get_head`` pairs it) trains with the
    soft sample's gradient. A bare ``GumbelSoftmax(hard=True)`` (the textbook straight-through
    sample, whose wrong samples pass no gradient to ``-log p_y``) is refused in one line.

    Args:
        epsilon: floor on the probability in the loss value (default 1e-7), so a zero probability
            costs ``-log(epsilon)`` (about 16.1) instead of infinity.
        label_smoothing: eps in [0, 1).
        from_logits: ``y_pred`` are logits: the loss is ``-log p_y`` with ``log p`` from
            ``head.log_probabilities(logits)`` (exact, no floor needed), softmax if ``head`` is None.
        head: with ``from_logits``, the head layer whose distribution the logits define, e.g.
            ``TaylorSoftmax(order=4)`` or ``Softmax(temperature=2.0)``; None: softmax.

    Example:
        >>> model.compile(loss=ks.ProbabilityCrossEntropy(from_logits=True, head=ks.Base2Softmax()))
    """

    def __init__(self, epsilon=1e-7, label_smoothing=0.0, from_logits=False, head=None,
                 name="probability_cross_entropy", **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, head=head, name=name, **kwargs)
        try:
            self.epsilon = check_fraction("epsilon", epsilon)  # a number in [0, 1), not a string or bool
        except ValueError:
            self.epsilon = 0.0
        if self.epsilon == 0.0:
            raise ValueError(f"epsilon must be a number in (0, 1) (got {epsilon!r})")

    def check_head(self, layer):
        super().check_head(layer)
        if getattr(layer, "hard", False) and not getattr(layer, "log_straight_through", True):
            raise _composition_error(
                self, layer, "a wrong hard sample has p_y = 0 and passes the loss no gradient",
                "use keras_softmax.get_head('gumbel', hard=True) (i.e. log_straight_through=True), or a "
                "logits model with ProbabilityCrossEntropy(from_logits=True) and the layer for inference")
        if getattr(layer, "output_kind", None) == "log_probabilities":
            raise _composition_error(
                self, layer, "it outputs log-probabilities (<= 0), which this loss would read as probabilities "
                "floored at epsilon: a constant loss with no gradient", "use NegativeLogLikelihood()")

    def call(self, y_true, y_pred):
        if self.from_logits:
            log_p = self.log_probabilities_of_logits(y_pred)
            return self._cross_entropy(_as_tensor(y_true), log_p, kept=ops.logical_not(log_p <= MASKED_LOG_PROBABILITY))
        p = ops.cast(y_pred, "float32")
        head = getattr(self, "_head", None)
        if head is not None and not getattr(head, "drop_lowest", 0):
            # a head that masks nothing: an exact 0 is an underflow, and keeps its smoothing share
            kept = ops.ones_like(p)
        else:  # a head that masks (or an untagged output): an exact 0 is a masked class
            kept = ops.logical_not(p == 0.0)  # a NaN stays in, so that it shows in the loss
        return self._cross_entropy(_as_tensor(y_true), floored_log(p, self.epsilon), kept=kept)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_softmax")
class NegativeLogLikelihood(_LogSpaceLoss):
    """Negative log-likelihood of log-probabilities: ``-log p_y``.

    For heads that output log-probabilities (log_softmax, log_gumbel, log_taylor, hierarchical).
    With ``log p = log_softmax(s)`` the gradient w.r.t. the scores is ``p - y``.

    Args:
        label_smoothing: eps in [0, 1).
        from_logits: ``y_pred`` are logits: ``log p = head.log_probabilities(logits)`` (log-softmax
            if ``head`` is None), as Keras's ``SparseCategoricalCrossentropy(from_logits=True)``.
        head: with ``from_logits``, the head layer, e.g. ``LogTaylorSoftmax(order=2)`` or
            ``HierarchicalSoftmax(fine_to_coarse)``; None: log-softmax.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, head=None, name="negative_log_likelihood",
                 **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, head=head, name=name, **kwargs)

    def check_head(self, layer):
        super().check_head(layer)
        if getattr(layer, "output_kind", None) == "probabilities":
            raise _composition_error(
                self, layer, "it outputs probabilities, which this loss would read as log-probabilities "
                "(it would maximise p_y, not log p_y)", "use ProbabilityCrossEntropy()")

    def call(self, y_true, y_pred):
        log_p = self.log_probabilities_of_logits(y_pred) if self.from_logits else ops.cast(y_pred, "float32")
        kept = ops.logical_not(log_p <= MASKED_LOG_PROBABILITY)  # a NaN stays in, to show in the loss
        return self._cross_entropy(_as_tensor(y_true), log_p, kept=kept)


@keras.saving.register_keras_serializable(package="keras_softmax")
class MismatchedCrossEntropy(NegativeLogLikelihood):
    """The original study's mistake, on purpose: cross-entropy that treats the head's *output* as logits.

    ``-log_softmax(output)_y`` (:mod:`keras_softmax.mismatch` explains why it trains badly). Not
    ``SparseCategoricalCrossentropy(from_logits=True)``: on TensorFlow that one uses the logits
    attached to a softmax output (``_keras_logits``) and so is not mismatched at all.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="mismatched_cross_entropy", **kwargs):
        if from_logits:
            raise ValueError("the mismatched loss always treats the head's output as logits: from_logits "
                             "must be False")
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)

    def check_head(self, layer):
        _HeadLoss.check_head(self, layer)  # any head's output, on purpose: it is log-softmaxed as logits

    def call(self, y_true, y_pred):
        return super().call(y_true, ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1))


class FenchelYoungLoss(_HeadLoss):
    """Fenchel-Young loss ``L(z, q) = Omega*(z) + Omega(q) - <z, q>`` of a sparse head; gradient ``p - q``.

    Two ways to train with it, both exact (GUIDE §3):

    * ``from_logits=True``: ``y_pred`` are the logits ``z``. The loss is ``<z, p> - Omega(p) + Omega(q) -
      <z, q>`` with ``p = mapping(z)`` held constant (Danskin: ``p`` maximises ``<z, p> - Omega(p)``), so
      its gradient w.r.t. the logits is exactly ``p - q``. Put the head layer on for inference.
    * ``from_logits=False`` (default): ``y_pred`` is the output ``p`` of the head as the registry pairs
      it (``get_head``, ``build_model``, the CLI: ``fenchel_young_gradient=True``, which hands the
      gradient w.r.t. ``p`` to the logits unchanged). The loss sees only ``p``, so its value is
      ``L(z_hat, q)`` at the canonical scores ``z_hat(p)`` that the head maps to ``p``: it equals
      ``L(z, q)`` whenever the true class is in the support of ``p`` and is a lower bound otherwise;
      its gradient w.r.t. ``p`` is ``p - q``. After a *bare* layer (true Jacobian) the logits would
      get ``J^T (p - q)``, which gives a label outside the support no push: the loss sees the layer's
      output tag and refuses that at its first call (:class:`CompositionError`, one line).

    Subclasses define ``mapping(z)`` (the head), ``omega(p)`` and ``value(p, q)`` (the loss from ``p``).
    """

    def mapping(self, z):
        raise NotImplementedError

    def omega(self, p):
        raise NotImplementedError

    def value(self, p, q):
        raise NotImplementedError

    def check_head(self, layer):
        if getattr(layer, "fenchel_young_gradient", True) is False:
            name = type(layer).__name__
            raise _composition_error(
                self, layer, "its true Jacobian gives a label outside the support no gradient (it would train "
                "silently wrong)", f"use the registry's pair (keras_softmax.get_head, i.e. "
                f"{name}(fenchel_young_gradient=True)), or output the logits, compile with "
                f"{type(self).__name__}(from_logits=True) and add {name}() for inference")

    def check_untagged(self):
        """Warn once: an output no keras_softmax head made (e.g. ``Dense(..., activation="sparsemax")``,
        or a head's output passed through another layer) may carry the true Jacobian, under which this
        loss trains silently wrong; the loss cannot tell (numpy inputs, for computing values, pass)."""
        if getattr(self, "_warned_untagged", False):
            return
        self._warned_untagged = True
        name = type(self).__name__
        warnings.warn(
            f"{name}() got an output that no keras_softmax head layer made (e.g. Keras's own "
            f"activation=\"sparsemax\", or a head's output passed through another layer): under its true "
            f"Jacobian this loss trains silently wrong; put the registry's head last (keras_softmax.get_head), "
            f"or output the logits and compile with {name}(from_logits=True)", CompositionWarning, stacklevel=3)

    def scores_loss(self, z, q):
        """The exact loss of logits ``z`` and targets ``q``: gradient ``mapping(z) - q``."""
        p = ops.stop_gradient(self.mapping(z))
        return ops.sum(z * p, axis=-1) - self.omega(p) + self.omega(q) - ops.sum(z * q, axis=-1)

    def call(self, y_true, y_pred):
        x = ops.cast(y_pred, "float32")
        q = _target(_as_tensor(y_true), x, self.label_smoothing)
        if self.from_logits:
            return self.scores_loss(x, q)
        value = ops.stop_gradient(self.value(x, q))
        surrogate = ops.sum(ops.stop_gradient(x - q) * (x - ops.stop_gradient(x)), axis=-1)
        return value + surrogate


@keras.saving.register_keras_serializable(package="keras_softmax")
class SparsemaxLoss(FenchelYoungLoss):
    """Sparsemax loss (Martins & Astudillo 2016): Fenchel-Young loss of ``Omega(p) = ||p||^2 / 2``.

    On scores (``from_logits=True``): ``L(z, y) = -z_y + (1/2) sum_{j in S} (z_j^2 - tau^2) + 1/2``;
    gradient ``sparsemax(z) - y``. From the paired head's output (``z_hat = p``): ``L = ||p - q||^2 / 2``.

    Example:
        >>> model.compile(loss=ks.SparsemaxLoss(from_logits=True))   # a model that outputs logits
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="sparsemax_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, name=name, **kwargs)

    def mapping(self, z):
        return sparsemax(z)

    def omega(self, p):
        return 0.5 * ops.sum(ops.square(p), axis=-1)

    def value(self, p, q):
        return 0.5 * ops.sum(ops.square(p - q), axis=-1)


@keras.saving.register_keras_serializable(package="keras_softmax")
class Entmax15Loss(FenchelYoungLoss):
    """1.5-entmax loss (Peters et al. 2019): Fenchel-Young loss of the Tsallis 1.5-entropy.

    ``Omega(p) = (4/3) (sum_j p_j^1.5 - 1)``; gradient w.r.t. the scores ``p - y``. From the paired
    head's output (``z_hat = 2 sqrt(p)``): ``L = (2/3) sum p^1.5 + (4/3) sum q^1.5 - 2 sum sqrt(p) q``.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="entmax15_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, name=name, **kwargs)

    def mapping(self, z):
        return entmax15(z)

    def omega(self, p):
        return (4.0 / 3.0) * (ops.sum(pow_support(p, 1.5), axis=-1) - 1.0)

    def value(self, p, q):
        return (
            (2.0 / 3.0) * ops.sum(ops.power(p, 1.5), axis=-1)
            + (4.0 / 3.0) * ops.sum(ops.power(q, 1.5), axis=-1)
            - 2.0 * ops.sum(ops.sqrt(p) * q, axis=-1)
        )


@keras.saving.register_keras_serializable(package="keras_softmax")
class EntmaxAlphaLoss(FenchelYoungLoss):
    """alpha-entmax loss: Fenchel-Young loss of ``Omega_alpha(p) = (sum_j p_j^alpha - 1) / (alpha (alpha - 1))``.

    Gradient w.r.t. the scores ``p - q``; w.r.t. alpha ``-dOmega_alpha/dalpha(p) + dOmega_alpha/dalpha(q)``
    (partial derivatives at fixed ``p`` and ``q``: Danskin's theorem, since ``p`` maximises
    ``<p, z> - Omega_alpha(p)``). From the head's output (canonical scores
    ``z_hat = p^(alpha-1) / (alpha - 1)``)::

        L = sum p^alpha / alpha + sum q^alpha / (alpha (alpha - 1)) - sum q p^(alpha-1) / (alpha - 1)

    (alpha = 1.5 gives :class:`Entmax15Loss`, alpha = 2 :class:`SparsemaxLoss`). alpha is read from the
    :class:`keras_softmax.EntmaxAlpha` layer whose output the loss gets (its output tag; its trainable
    weight when ``learn_alpha``, which then receives the exact ``dL/dalpha``), else the ``alpha`` given
    here (``from_logits=True``: a fixed alpha).

    Args:
        alpha: alpha where the loss does not get an EntmaxAlpha layer's output (``from_logits=True``).
        label_smoothing: eps in [0, 1).
        from_logits: ``y_pred`` are logits (exact alpha-entmax Fenchel-Young loss on the scores).
    """

    def __init__(self, alpha=1.5, label_smoothing=0.0, from_logits=False, name="entmax_alpha_loss", **kwargs):
        super().__init__(label_smoothing=label_smoothing, from_logits=from_logits, name=name, **kwargs)
        self.alpha = check_alpha(alpha)

    def alpha_value(self):
        head = getattr(self, "_head", None)
        if head is not None and callable(getattr(head, "alpha_value", None)):
            return head.alpha_value()
        return ops.convert_to_tensor(self.alpha, dtype="float32")

    def mapping(self, z):
        return entmax_bisect(z, self.alpha_value())

    def omega(self, p):
        return tsallis_omega(p, self.alpha_value())

    def value(self, p, q, alpha=None):
        alpha = self.alpha_value() if alpha is None else alpha
        return (
            ops.sum(pow_support(p, alpha), axis=-1) / alpha
            + ops.sum(pow_support(q, alpha), axis=-1) / (alpha * (alpha - 1.0))
            - ops.sum(q * pow_support(p, alpha - 1.0), axis=-1) / (alpha - 1.0)
        )

    def call(self, y_true, y_pred):
        if self.from_logits:
            return super().call(y_true, y_pred)
        p = ops.cast(y_pred, "float32")
        q = _target(_as_tensor(y_true), p, self.label_smoothing)
        alpha = self.alpha_value()
        fixed_p = ops.stop_gradient(p)
        value = ops.stop_gradient(self.value(fixed_p, q, ops.stop_gradient(alpha)))
        surrogate = ops.sum(ops.stop_gradient(p - q) * (p - fixed_p), axis=-1)  # d/dz: p - q
        alpha_part = tsallis_omega(q, alpha) - tsallis_omega(fixed_p, alpha)  # d/dalpha at fixed p, q
        return value + surrogate + (alpha_part - ops.stop_gradient(alpha_part))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class ProjectionHeadLoss(NegativeLogLikelihood):
    """The loss of a head that owns its projection (adaptive, sampled softmax).

    ``y_pred`` of rank 2 is the head's inference output, log-probabilities over all classes: the loss
    is their negative log-likelihood (as in ``evaluate``). ``y_pred`` of rank 3 is the head's training
    packet (its input features, tagged with the layer; see :mod:`keras_softmax.heads.projection`): the
    loss is that layer's ``training_loss(features, labels, label_smoothing)``. Integer labels only (no
    CutMix). There is no ``from_logits=True``: these heads take features, not logits.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name=None, **kwargs):
        if from_logits:
            raise ValueError(f"{type(self).__name__} has no from_logits=True: its head owns its projection and "
                             "takes the features, not logits")
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)

    def check_head(self, layer):
        if not callable(getattr(layer, "training_loss", None)):
            super().check_head(layer)

    def call(self, y_true, y_pred):
        y_true = _as_tensor(y_true)
        if len(y_pred.shape) != 3:
            return super().call(y_true, y_pred)
        layer = getattr(self, "_head", None)
        if layer is None or not callable(getattr(layer, "training_loss", None)):
            raise CompositionError(
                f"{type(self).__name__}() got a training packet that no longer names its head layer: the model's "
                "output must be the head layer's own output (model = keras.Model(inputs, head_layer(features)))")
        if len(y_true.shape) == 2 and y_true.shape[-1] not in (None, 1):
            raise ValueError(f"{type(self).__name__} trains on integer labels, not target distributions "
                             "(no CutMix)")
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        return layer.training_loss(y_pred[:, 0, :], labels, self.label_smoothing)


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
    """Exact sparsemax loss on scores ``z``, per example (reference; gradient ``sparsemax(z) - y``)."""
    return SparsemaxLoss(from_logits=True, reduction=None)(y, ops.cast(z, "float32"))


def entmax15_loss(y, z):
    """Exact 1.5-entmax loss on scores ``z``, per example (reference; gradient ``entmax15(z) - y``)."""
    return Entmax15Loss(from_logits=True, reduction=None)(y, ops.cast(z, "float32"))


def entmax_alpha_loss(y, z, alpha=1.5):
    """Exact alpha-entmax Fenchel-Young loss on scores ``z``, per example (gradient ``entmax_alpha(z) - y``).

    ``alpha`` may be a tensor (e.g. a traced value): its gradient is then the exact ``dL/dalpha``.
    """
    z = ops.cast(z, "float32")
    alpha = ops.cast(alpha, "float32")
    p = ops.stop_gradient(entmax_bisect(z, alpha))  # Danskin: p is the maximiser, hold it fixed
    q = _target(_as_tensor(y), z, 0.0)
    return ops.sum(z * p, axis=-1) - tsallis_omega(p, alpha) + tsallis_omega(q, alpha) - ops.sum(z * q, axis=-1)
