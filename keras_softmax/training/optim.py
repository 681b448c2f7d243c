"""Optimizer and learning-rate schedule from a :class:`TrainConfig`."""

from __future__ import annotations

import re
from collections.abc import Callable

import keras
import numpy as np

from keras_softmax.training.config import first_averaged_epoch


#: One-cycle: the warm-up share of the steps, the initial lr as a fraction of the peak, and the
#: final lr as a fraction of the initial one (PyTorch's OneCycleLR defaults).
ONECYCLE_WARMUP, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def learning_rate_schedule(config, steps_per_epoch: int):
    """The learning rate per step.

    ``schedule="cosine"``: linear warm-up from 0 to ``lr`` over ``warmup_epochs`` (w steps), then
    cosine decay to 0; with ``swa_lr`` (SWA's learning rate) the decay reaches ``swa_lr`` at step a,
    the start of the first averaged epoch (``swa_start``), and stays there:
    lr_t = swa_lr + (lr − swa_lr) · ½(1 + cos(π (t − w) / (a − w))) for w ≤ t < a, swa_lr after.
    ``"constant"``: ``lr``. ``"onecycle"``: linear warm-up from ``lr / 25`` to ``lr`` over the first
    30 % of the steps, then cosine decay to ``lr / (25 * 10^4)``.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "onecycle":
        warmup = min(max(1, int(round(ONECYCLE_WARMUP * total))), total - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr / ONECYCLE_DIV, decay_steps=max(1, total - warmup),
            warmup_target=config.lr, warmup_steps=warmup, alpha=1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV),
        )
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    decay, floor = total - warmup, 0.0
    if config.swa_lr:  # reach swa_lr when the first averaged epoch starts, and hold it (CosineDecay's alpha)
        averaged_from = (first_averaged_epoch(config.swa_start, config.epochs) - 1) * steps_per_epoch
        decay, floor = max(1, averaged_from - max(warmup, 0)), config.swa_lr / config.lr
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=decay, alpha=floor)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=decay, warmup_target=config.lr, warmup_steps=warmup, alpha=floor
    )


def learning_rate_reader(schedule) -> Callable[[int], float]:
    """``step -> learning rate`` as a float, for the host (the history's ``lr`` column at each epoch end).

    ``schedule`` is what :func:`learning_rate_schedule` gives. Called eagerly on JAX, Keras's
    ``CosineDecay`` with a warm-up traces both branches of its ``ops.cond`` anew at every call
    (~16 ms an epoch end on the 2-core CPU); compiled once, a call takes microseconds, and on an H100 the
    pause between epochs fell from ~28 ms to ~6 ms (bench/RESULTS.md §9). The other backends evaluate
    the schedule as it is (an eager cond runs one branch).
    """
    if not callable(schedule):
        value = float(schedule)
        return lambda step: value
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(lambda step: schedule(step))
        return lambda step: float(compiled(np.int32(step)))
    return lambda step: float(keras.ops.convert_to_numpy(schedule(step)))


def make_optimizer(config, steps_per_epoch: int, variables=None, schedule=None) -> keras.optimizers.Optimizer:
    """SGD (Nesterov momentum), AdamW or Adam, optional EMA of the weights and gradient clipping.

    Weight decay is decoupled (Keras's convention: ``w -= lr * weight_decay * w`` each step) for
    every optimizer, Adam included, and skips biases and BatchNorm parameters. (PyTorch's
    ``Adam(weight_decay=...)`` adds an L2 term to the gradient instead; at the original study's
    1e-5 the difference is immaterial.) ``global_clipnorm > 0`` rescales the gradient of all
    variables together to at most that L2 norm (``torch.nn.utils.clip_grad_norm_``).

    Given the model's trainable ``variables``, the ones weight decay skips are listed as variables,
    decided here, eagerly. Keras otherwise matches their names with ``re.search`` inside the first
    train step, which ``torch.compile`` cannot trace on torch 2.11 ("Cannot construct
    ``ConstantVariable`` for value of type <class 'type'>", from ``re``'s cache key).

    ``schedule`` (default: :func:`learning_rate_schedule` of ``config``) is the learning rate per step.
    """
    if schedule is None:
        schedule = learning_rate_schedule(config, steps_per_epoch)
    common = {"use_ema": config.ema > 0, "ema_momentum": config.ema or 0.99,
              "global_clipnorm": config.global_clipnorm or None}
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay or None, **common,
        )
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=schedule, weight_decay=config.weight_decay or None, **common)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **common)
    if config.weight_decay and variables is not None:
        optimizer.exclude_from_weight_decay(var_list=[v for v in variables if NO_DECAY.search(v.name)])
    elif config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


#: Variable names weight decay skips: biases and BatchNormalization's scale and offset.
NO_DECAY = re.compile("bias|gamma|beta")
