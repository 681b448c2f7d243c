"""Training-time metrics that accept labels or target distributions (CutMix); Keras and numpy only.

- :func:`label_accuracy` / :func:`accuracy_metric`: top-1 accuracy (``accuracy``, ``val_accuracy``).
- :func:`label_nll` / :func:`nll_metric`: the unsmoothed negative log-likelihood of the label (``nll``,
  ``val_nll``), the same quantity for every head, whatever its training objective (label-smoothed,
  Fenchel-Young, sampled): per-epoch curves of different heads can be compared on it, which
  ``val_loss`` does not allow. It is what the evaluation's ``negative_log_likelihood`` computes.

They live in the core, beside the heads, because ``compile_model`` puts them into models and a
``.keras`` file of such a model must load after ``import keras_softmax`` (they register themselves).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_softmax.floors import LOG_PROBABILITY_FLOOR, PROBABILITY_FLOOR

__all__ = ["LOG_PROBABILITY_FLOOR", "OUTPUT_KINDS", "PROBABILITY_FLOOR", "accuracy_metric", "label_accuracy",
           "label_nll", "nll_metric"]

#: What a head's output holds (its ``output_kind``).
OUTPUT_KINDS = ("probabilities", "log_probabilities")


def _feature_packet(y_true, y_pred) -> bool:
    """True for the training packet ``(batch, 1, d)`` of a head that owns its projection."""
    return len(y_pred.shape) == 3 and y_pred.shape[1] == 1 and len(y_true.shape) <= 2


def _target_distributions(y_true, y_pred) -> bool:
    """True where ``y_true`` holds a distribution over the classes (CutMix), not labels."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (None, 1)


def _nan(y_pred):
    return ops.full(ops.shape(y_pred)[:1], float("nan"), dtype="float32")


@keras.saving.register_keras_serializable(package="keras_softmax")
def label_accuracy(y_true, y_pred):
    """1 where ``argmax(y_pred)`` is the label (or the target distribution's argmax), else 0.

    NaN for the training packet ``(batch, 1, d)`` of a head that owns its projection (adaptive,
    sampled; see ``keras_softmax.heads.projection``): it holds features, not class scores, and
    scoring every class would cost what those heads avoid. Their ``val_accuracy`` is exact.
    """
    if _feature_packet(y_true, y_pred):
        return _nan(y_pred)
    predicted = ops.argmax(y_pred, axis=-1)
    if _target_distributions(y_true, y_pred):
        labels = ops.argmax(y_true, axis=-1)
    else:
        labels = ops.reshape(ops.cast(y_true, "int32"), ops.shape(predicted))
    return ops.cast(ops.equal(ops.cast(labels, "int32"), ops.cast(predicted, "int32")), "float32")


def _floored_log(values, output_kind: str):
    """``log max(p, PROBABILITY_FLOOR)`` of probabilities or log-probabilities ``values``, float32.

    Log-probabilities are floored in log space (``max(log p, log floor)``), never exponentiated and
    logged again: that would lose what precision float32 has in the tail.
    """
    values = ops.cast(values, "float32")
    if output_kind == "log_probabilities":
        return ops.maximum(values, LOG_PROBABILITY_FLOOR)
    return ops.log(ops.maximum(values, PROBABILITY_FLOOR))


@keras.saving.register_keras_serializable(package="keras_softmax")
def label_nll(y_true, y_pred, output_kind: str = "probabilities"):
    """Per example ``-log max(p_y, PROBABILITY_FLOOR)``: the unsmoothed NLL of the label, float32.

    ``y_pred`` holds probabilities or, with ``output_kind="log_probabilities"``, log-probabilities
    (a head's ``output_kind``); it is computed in float32 whatever its dtype (mixed precision).
    For target distributions ``t`` (CutMix; ``y_true`` of ``y_pred``'s shape) it is the cross-entropy
    ``-sum_c t_c log max(p_c, PROBABILITY_FLOOR)``. NaN for the training packet ``(batch, 1, d)`` of a
    head that owns its projection, as :func:`label_accuracy` (its ``val_nll`` is exact).
    """
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {OUTPUT_KINDS} (got {output_kind!r})")
    if _feature_packet(y_true, y_pred):
        return _nan(y_pred)
    if _target_distributions(y_true, y_pred):
        targets = ops.cast(y_true, "float32")
        return -ops.sum(targets * _floored_log(y_pred, output_kind), axis=-1)
    labels = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
    picked = ops.take_along_axis(y_pred, ops.expand_dims(labels, -1), axis=-1)  # only p_y is logged
    return -ops.squeeze(_floored_log(picked, output_kind), axis=-1)


def accuracy_metric():
    """``label_accuracy`` as a Keras metric named ``accuracy``."""
    return keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")


def nll_metric(output_kind: str = "probabilities"):
    """``label_nll`` as a Keras metric named ``nll`` (``val_nll`` on validation data).

    ``output_kind`` is the head's (``head.output_kind``): whether the model outputs probabilities or
    log-probabilities. It is kept in the metric's config, so a ``.keras`` file restores it.
    """
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {OUTPUT_KINDS} (got {output_kind!r})")
    return keras.metrics.MeanMetricWrapper(label_nll, name="nll", output_kind=output_kind)
