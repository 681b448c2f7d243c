"""Training-time accuracy that accepts labels or target distributions (CutMix); Keras and numpy only.

It lives in the core, beside the heads, because ``compile_model`` puts it into models and a
``.keras`` file of such a model must load after ``import keras_softmax`` (it registers itself).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_softmax")
def label_accuracy(y_true, y_pred):
    """1 where ``argmax(y_pred)`` is the label (or the target distribution's argmax), else 0.

    NaN for the training packet ``(batch, 1, d)`` of a head that owns its projection (adaptive,
    sampled; see ``keras_softmax.heads.projection``): it holds features, not class scores, and
    scoring every class would cost what those heads avoid. Their ``val_accuracy`` is exact.
    """
    if len(y_pred.shape) == 3 and y_pred.shape[1] == 1 and len(y_true.shape) <= 2:
        return ops.full(ops.shape(y_pred)[:1], float("nan"), dtype="float32")
    predicted = ops.argmax(y_pred, axis=-1)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] not in (None, 1):
        labels = ops.argmax(y_true, axis=-1)
    else:
        labels = ops.reshape(ops.cast(y_true, "int32"), ops.shape(predicted))
    return ops.cast(ops.equal(ops.cast(labels, "int32"), ops.cast(predicted, "int32")), "float32")


def accuracy_metric():
    """``label_accuracy`` as a Keras metric named ``accuracy``."""
    return keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
