"""Sharpness-aware minimization (SAM, Foret et al. 2021): ``sam_rho`` = ρ > 0, from ``sam_start``.

Each step takes the gradient where the loss is highest within an L2 ball of radius ρ around the
weights w, to first order, and applies that gradient at w:

    g   = ∇L(w)                   on the batch
    ε   = ρ · g / ‖g‖₂            (‖·‖₂ over every trainable variable together)
    g'  = ∇L(w + ε)               on the same batch, with the same random draws
    w  ← optimizer(w, g')         (momentum, decoupled weight decay and clipping as usual)

so a step costs two forward and backward passes. Both passes see the same augmented images, CutMix
boxes and head noise: the second starts from the random state the first started from. What the step
records comes from the first pass, at w itself: the loss and metrics, the BatchNorm moving statistics
(the perturbed weights' batch statistics are not the model's) and the advanced random state; so with
ρ → 0 it is the plain step.

``sam_start`` = s applies SAM only from epoch ceil(s · epochs) on, the plain step before it: at that
epoch's start :class:`SharpnessAwareFrom` installs the SAM step and has ``fit`` compile it (a second
program, compiled once). Zhou et al. (ICLR 2025, "Sharpness-aware minimization efficiently selects
flatter minima late in training") found SAM over the last few epochs to give most of what SAM over the
whole run gives, at a fraction of its cost. (One program with a branch on the step count was tried first
and measured on an H200: XLA's GPU conditional reads its predicate on the host every step, and the plain
epochs took 0.87 s instead of 0.61.)

Only the JAX backend: the step is Keras's stateless JAX ``train_step`` with one more gradient, installed
on the compiled model (:func:`install`), so the saved model is an ordinary ``keras.Model``.
"""

from __future__ import annotations

import keras

__all__ = ["SharpnessAwareFrom", "backend_reason", "install", "sharpness_aware_step"]


def backend_reason() -> str | None:
    """Why SAM cannot train on this backend, or None (JAX)."""
    if keras.backend.backend() == "jax":
        return None
    return (f"sam_rho needs the JAX backend (KERAS_BACKEND=jax), not {keras.backend.backend()}: its two-pass "
            "step is written for JAX's stateless training (or set sam_rho = 0)")


def install(model, rho: float) -> None:
    """Make ``model`` (compiled, JAX) train with SAM at radius ``rho``: ``fit`` and
    :func:`keras_softmax.training.ahead.lower_steps` call ``model.train_step``."""
    reason = backend_reason()
    if reason is None and type(model).train_step is not keras.Model.train_step:
        reason = f"{type(model).__name__} has a train step of its own, which SAM's would replace"
    if reason is not None:
        raise ValueError(reason)
    if not rho > 0:
        raise ValueError(f"rho must be > 0 (got {rho!r})")
    model.train_step = lambda state, data: sharpness_aware_step(model, float(rho), state, data)


class SharpnessAwareFrom(keras.callbacks.Callback):
    """Switch ``fit`` to the SAM step at the start of epoch ``first_epoch`` (0-based, as Keras counts),
    or at the first epoch it runs if that is later (a resumed run)."""

    def __init__(self, rho: float, first_epoch: int):
        super().__init__()
        self.rho, self.first_epoch, self.switched = float(rho), int(first_epoch), False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.first_epoch and not self.switched:
            install(self.model, self.rho)
            self.model.make_train_function(force=True)  # fit looks train_function up at every step
            self.switched = True


def sharpness_aware_step(model, rho: float, state, data):
    """One SAM step of ``model`` in Keras's JAX ``train_step`` convention: ``(logs, state)``."""
    import jax
    import jax.numpy as jnp

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    value_and_grad = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)

    def gradients(weights):
        # every pass from the same non-trainable state: the same random draws, the same BatchNorm input
        return value_and_grad(weights, non_trainable, metrics_variables, x, y, sample_weight, training=True,
                              optimizer_variables=optimizer_variables)

    (_, aux), grads = gradients(trainable)
    unscaled_loss, y_pred, new_non_trainable, new_metrics = aux
    # A loss scale (float16) scales every gradient alike: the direction g / ‖g‖ does not see it.
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype("float32"))) for g in grads))
    scale = rho / jnp.maximum(norm, 1e-12)
    perturbed = [w + (g.astype("float32") * scale).astype(w.dtype) for w, g in zip(trainable, grads)]
    _, sharp_grads = gradients(perturbed)
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, sharp_grads, trainable)
    logs, new_metrics = model._update_metrics_variables(new_metrics, unscaled_loss, x, y, y_pred, sample_weight)
    return logs, (trainable, new_non_trainable, optimizer_variables, new_metrics)
