"""Heads that own their projection: features in, log-probabilities over every class out.

Most heads map the logits of the model factory's ``Dense(num_classes)`` to a distribution. A head for
very many classes cannot: the point of adaptive and sampled softmax is never to compute all ``N``
logits in training. A :class:`ProjectionHead` therefore takes the *features* (the backbone's
output, ``(batch, d)``), holds the classifier weights itself, and ``build_model`` adds no Dense layer
before it (``owns_projection = True``).

How training works without the layer seeing the labels (Keras's loss sees only ``y_true, y_pred``):

* ``training=False`` (``predict``, ``evaluate``, export): the layer returns exact normalised
  log-probabilities over all ``num_classes`` classes (``exp`` sums to 1), so evaluation, export and
  prediction are those of any log head.
* ``training=True`` (inside ``fit``): the layer returns its input features unchanged as a *training
  packet* of shape ``(batch, 1, d)`` (rank 3, so the loss can never confuse it with
  ``(batch, N)`` log-probabilities), tagged with the layer itself
  (:func:`keras_softmax.ops.tag_output`, the way Keras tags a layer's output with its mask). The
  matching loss (:class:`keras_softmax.AdaptiveSoftmaxLoss`, :class:`keras_softmax.SampledSoftmaxLoss`)
  reads the tag and computes the training objective from the features, the labels and that layer's
  weights: ``layer.training_loss(h, y)``. No pairing step: a loss made by hand
  (``SampledSoftmaxLoss()``), the registry's, or one reloaded from a ``.keras`` file all find the
  layer they train.

Gradients reach the layer's weights on every backend: on TensorFlow and PyTorch the loss reads the
variables directly; on JAX Keras runs ``compute_loss`` inside a stateless scope that maps every
variable to the traced value being differentiated (and carries the sampler's seed state out again),
so reading ``layer.kernel`` in the loss is differentiated like reading it in ``call``
(``tests/heads/test_projection.py`` checks that ``fit`` moves the weights on both backends).

Two consequences. A training-time metric sees the packet, not class scores: the trainer's
``accuracy`` metric reports NaN for it (training accuracy would cost the O(N d) these heads avoid);
``val_accuracy`` is exact. And a model reloaded with ``keras.saving.load_model`` predicts, evaluates and trains on exactly as
before (its loss finds the layer through the tag).

The projection runs in the layer's compute dtype (bf16 under ``mixed_bfloat16``); normalisation
(log-softmax, logsumexp) is float32, and the output is float32.
"""

from __future__ import annotations

import inspect
import numbers

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.base import Head
from keras_softmax.ops import tag_output


def check_num_classes(num_classes, head: str) -> int:
    if num_classes is None:
        raise ValueError(
            f"the {head} head owns its projection and needs num_classes "
            "(build_model and the trainer fill it in from the dataset)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (got {num_classes!r})")
    return int(num_classes)


def check_class_order(class_order, num_classes: int):
    """``class_order`` as a list (most frequent class first) and its inverse ``rank_of`` (int32).

    ``None`` means the class ids are already sorted by frequency (class 0 the most frequent).
    """
    if class_order is None:
        return None, None
    if isinstance(class_order, (str, bytes)) or not hasattr(class_order, "__iter__"):
        raise ValueError(f"class_order must be a permutation of 0..num_classes-1 (got {class_order!r})")
    values = np.asarray(list(class_order))
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError("class_order must be a flat list of integer class ids")
    order = [int(c) for c in values.tolist()]
    if len(order) != num_classes or sorted(order) != list(range(num_classes)):
        raise ValueError(f"class_order must be a permutation of 0..{num_classes - 1} (got {len(order)} entries)")
    if order == list(range(num_classes)):
        return None, None  # the identity: nothing to reorder
    rank_of = np.empty(num_classes, dtype="int32")
    rank_of[np.asarray(order)] = np.arange(num_classes, dtype="int32")
    return order, rank_of


def frequency_order(labels, num_classes: int) -> list[int]:
    """Class ids sorted by decreasing count in ``labels`` (a stable sort: ties keep id order)."""
    counts = np.bincount(np.asarray(labels, dtype="int64").reshape(-1), minlength=num_classes)
    return [int(c) for c in np.argsort(-counts, kind="stable")]


def labels_to_int(labels):
    """Integer labels of shape ``(batch,)`` from ``(batch,)`` or ``(batch, 1)`` (any dtype)."""
    labels = ops.convert_to_tensor(labels)
    return ops.reshape(ops.cast(labels, "int32"), (-1,))


class ProjectionHead(Head):
    """Base class of the heads that own their projection (see the module docstring).

    Subclasses create their weights in ``build(input_shape)`` and implement
    ``log_probabilities(h)`` (``(batch, d)`` features -> ``(batch, N)`` float32 log-probabilities, exact)
    and ``training_loss(h, labels, label_smoothing=0.0)`` (per-example training loss, ``(batch,)``
    float32; a head that cannot smooth labels raises ``ValueError`` for ``label_smoothing > 0``).
    """

    owns_projection = True
    output_kind = "log_probabilities"

    def __init__(self, num_classes=None, **kwargs):
        # Not Head.__init__: the projection runs in the global dtype policy (bf16 matmuls under
        # mixed precision); only the normalisation is float32.
        keras.layers.Layer.__init__(self, **kwargs)
        self.num_classes = check_num_classes(num_classes, type(self).__name__)

    @classmethod
    def complete_params(cls, params, num_classes=None, *, fine_to_coarse=None, labels=None):
        """``num_classes``, and ``class_order`` (most frequent first) from the training ``labels``."""
        params = dict(params)
        if num_classes is not None:
            params.setdefault("num_classes", int(num_classes))
        takes_order = "class_order" in inspect.signature(cls.__init__).parameters
        if takes_order and labels is not None and "class_order" not in params:
            params["class_order"] = frequency_order(labels, int(params["num_classes"]))
        return params

    def num_logits(self, num_classes: int) -> int:
        """0: the head consumes features, not logits (and must be built for ``num_classes``)."""
        if int(num_classes) != self.num_classes:
            raise ValueError(f"this {type(self).__name__} has num_classes={self.num_classes}, not {num_classes}")
        return 0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def compute_output_spec(self, features, training=False):
        return keras.KerasTensor(self.compute_output_shape(features.shape), dtype="float32")

    def call(self, features, training=False):
        if training:
            # The training packet: the features, for the paired loss (module docstring).
            # Tagged with this layer: the loss reads its weights from the tag (no pairing step).
            return tag_output(ops.expand_dims(ops.cast(features, "float32"), 1), self)
        return ops.cast(self.log_probabilities(features), "float32")

    def project(self, h, kernel, bias=None):
        """``h @ kernel (+ bias)`` in the compute dtype, as float32 (variables cast explicitly, since
        the loss calls this outside ``call``, where Keras does not autocast)."""
        dtype = self.compute_dtype
        out = ops.matmul(ops.cast(h, dtype), ops.cast(kernel, dtype))
        if bias is not None:
            out = out + ops.cast(bias, dtype)
        return ops.cast(out, "float32")

    def log_probabilities(self, h):
        raise NotImplementedError

    def training_loss(self, h, labels, label_smoothing=0.0):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
