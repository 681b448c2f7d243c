"""The original study's mistake, reproduced on purpose (GUIDE §2).

The study fed each head's *output* to a cross-entropy that expects *logits*. For a probability head
that computes ``CE(softmax(p), y)`` with ``p = softmax(z)``: the head is softmaxed twice. Its gradient
w.r.t. the logits is ``J_softmax(z)^T (softmax(p) - y)`` instead of ``p - y``; since ``p`` lies in
[0, 1], ``softmax(p)`` is nearly uniform (the loss can never fall below ``log N - 1``-ish), and as the
head saturates the softmax Jacobian ``diag(p) - p p^T`` goes to zero, so learning stalls. Log heads
survived in the study only because ``log_softmax`` is idempotent: ``log_softmax(log_softmax(z)) =
log_softmax(z)``.

This module builds that loss explicitly with ``from_logits=True``, so the demonstration does not
depend on the TensorFlow backend's habit of recovering logits from a softmax output.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.registry import get_head


def mismatched_loss() -> keras.losses.Loss:
    """The study's loss: sparse categorical cross-entropy that treats the head's output as logits."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="mismatched_cross_entropy")


def logit_gradients(head_name: str, logits, labels, mismatched: bool, **head_params) -> np.ndarray:
    """Gradient of the (matched or mismatched) loss w.r.t. the logits, summed over the batch.

    Uses the backend's own autodiff (TensorFlow, JAX or PyTorch).
    """
    head = get_head(head_name, **head_params)
    loss = mismatched_loss() if mismatched else head.loss
    logits = np.asarray(logits, dtype="float32")
    labels = np.asarray(labels)

    def loss_of(z):
        return loss(labels, head.layer(z)) * logits.shape[0]

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
