"""The original study's mistake, reproduced on purpose (GUIDE §2).

The study fed each head's *output* to a cross-entropy that expects *logits*. For a probability head
that computes ``CE(softmax(p), y)`` with ``p = softmax(z)``: the head is softmaxed twice. Its gradient
w.r.t. the logits is ``J_softmax(z)^T (softmax(p) - y)`` instead of ``p - y``; since ``p`` lies in
[0, 1], ``softmax(p)`` is nearly uniform (the loss can never fall below ``log N - 1``-ish), and as the
head saturates the softmax Jacobian ``diag(p) - p p^T`` goes to zero, so learning stalls. Log heads
survived in the study only because ``log_softmax`` is idempotent: ``log_softmax(log_softmax(z)) =
log_softmax(z)``.

This module writes that loss out as ``-log_softmax(output)_y`` with ``keras.ops``, so the
demonstration does not depend on the TensorFlow backend's habit of recovering logits from a softmax
output: ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` on TensorFlow finds the
``_keras_logits`` behind a softmax output and silently computes the *matched* loss instead.

:class:`~keras_softmax.losses.MismatchedCrossEntropy` itself lives in :mod:`keras_softmax.losses`, so
that a model compiled with it loads after ``import keras_softmax`` like every other.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.registry import get_head, unpaired_params
from keras_softmax.losses import MismatchedCrossEntropy

__all__ = ["MismatchedCrossEntropy", "logit_gradients", "mismatched_loss", "saturation_curve"]


def mismatched_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """The study's loss: sparse categorical cross-entropy that treats the head's output as logits.

    ``label_smoothing`` smooths the target as for the matched losses (``--set label_smoothing``
    applies to ``loss = "mismatched"`` runs too).
    """
    return MismatchedCrossEntropy(label_smoothing=label_smoothing)


def logit_gradients(head_name: str, logits, labels, mismatched: bool, **head_params) -> np.ndarray:
    """Gradient of the (matched or mismatched) loss w.r.t. the logits, summed over the batch.

    Uses the backend's own autodiff (TensorFlow, JAX or PyTorch), with the noise of stochastic
    heads off. The matched loss uses the head as ``get_head`` pairs it; the mismatched one uses the
    layer's true Jacobian (``unpaired_params``), which is what training with it does.
    """
    if mismatched:
        # Another loss than the head's own: the layer's true Jacobian (the Fenchel-Young heads'
        # straight-through gradient is right only under their matching loss), as the study had it.
        head_params = {**unpaired_params(head_name), **head_params}
    head = get_head(head_name, **head_params)
    loss = mismatched_loss() if mismatched else head.loss
    logits = np.asarray(logits, dtype="float32")
    labels = np.asarray(labels)

    def loss_of(z):
        return loss(labels, head.layer(z, training=False)) * logits.shape[0]

    return np.asarray(ops.convert_to_numpy(_gradient(loss_of, logits)))


def _gradient(fn, x):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.grad(lambda v: fn(v))(x)
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(v)
        return tape.gradient(value, v)
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad
    raise NotImplementedError(f"no autodiff helper for backend {backend!r}")


def saturation_curve(head_name: str = "softmax", scales=(1, 2, 4, 8, 16, 32), num_classes: int = 10,
                     seed: int = 0) -> list[dict]:
    """Gradient norms of the matched and mismatched losses as logits grow (the head saturates).

    Returns one row per scale: ``scale``, ``matched_norm`` (``||p - y||``), ``mismatched_norm``.
    The true class is given the *lowest* logit, so a correct loss should push hard.
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1, num_classes)).astype("float32")
    label = np.array([int(np.argmin(base[0]))])
    rows = []
    for scale in scales:
        z = base * scale
        matched = logit_gradients(head_name, z, label, mismatched=False)
        mismatched = logit_gradients(head_name, z, label, mismatched=True)
        rows.append({
            "scale": float(scale),
            "matched_norm": float(np.linalg.norm(matched)),
            "mismatched_norm": float(np.linalg.norm(mismatched)),
        })
    return rows
