"""Optimizer and learning-rate schedule from a :class:`TrainConfig`."""

from __future__ import annotations

import keras


def learning_rate_schedule(config, steps_per_epoch: int):
    """Linear warm-up to ``lr`` then cosine decay to 0 (``schedule="cosine"``), or constant ``lr``."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=total - warmup, warmup_target=config.lr, warmup_steps=warmup
    )


def make_optimizer(config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD (Nesterov momentum) or AdamW with decoupled weight decay, optional EMA of the weights.

    Weight decay skips biases and BatchNorm parameters.
    """
    schedule = learning_rate_schedule(config, steps_per_epoch)
    ema = {"use_ema": config.ema > 0, "ema_momentum": config.ema or 0.99}
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay or None, **ema,
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **ema)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
