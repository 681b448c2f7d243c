"""The callback that times epochs, shows progress, writes ``history.csv`` and checkpoints."""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class RunRecorder(keras.callbacks.Callback):
    """Per epoch: time the training phase, record a history row, print progress, checkpoint.

    It has no per-batch hook on purpose: any such hook makes Keras fetch the logs after every step,
    which stalls an accelerator (see :class:`StepProgress`). Epoch time is the training phase alone (up to validation), measured after the device has
    finished the epoch's last step; validation time is reported separately in the progress line.

    Args:
        run_dir: a :class:`RunDirectory`.
        num_train: training images per epoch (for images/s).
        epochs: total epochs (for the ETA).
        history: rows already recorded (when resuming).
        checkpoint_every: save a checkpoint every N epochs and after the last (0: never).
        log: a function printing one line.
    """

    def __init__(self, run_dir, num_train: int, epochs: int, history=None, checkpoint_every: int = 1,
                 log=print, started: float | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.num_train = num_train
        self.epochs = epochs
        self.rows = list(history or [])
        self.checkpoint_every = checkpoint_every
        self.log = log
        # Wall time since the run started (data loading and compilation included), for
        # time-to-accuracy; a resumed run continues from where the last recorded epoch ended.
        self.started = time.perf_counter() if started is None else started
        self.offset = (self.rows[-1].get("elapsed_seconds") or 0.0) if self.rows else 0.0

    def _sync(self):
        """Wait until the device has run every step dispatched so far."""
        keras.ops.convert_to_numpy(self.model.optimizer.iterations)

    def on_epoch_begin(self, epoch, logs=None):
        self._sync()
        self._start = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        if getattr(self, "_start", None) is not None and self._train_seconds is None:
            self._sync()
            self._train_seconds = time.perf_counter() - self._start
            self._val_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._train_seconds is None:
            self._sync()
            self._train_seconds = time.perf_counter() - self._start
            val_seconds = 0.0
        else:
            val_seconds = time.perf_counter() - self._val_start
        seconds = self._train_seconds
        row = {
            "epoch": epoch + 1,
            "loss": _float(logs.get("loss")),
            "val_loss": _float(logs.get("val_loss")),
            # NaN: not measured in training (heads that own their projection; see training.metrics)
            "accuracy": _float_or_none(logs.get("accuracy")),
            "val_accuracy": _float(logs.get("val_accuracy")),
            "lr": _float(self._learning_rate()),
            "epoch_seconds": seconds,
            "images_per_second": self.num_train / seconds if seconds > 0 else None,
            "elapsed_seconds": self.offset + time.perf_counter() - self.started,
        }
        self.rows.append(row)
        self.run_dir.write_history(self.rows)
        last = epoch + 1 == self.epochs
        if self.checkpoint_every and ((epoch + 1) % self.checkpoint_every == 0 or last):
            self.run_dir.save_checkpoint(self.model, epoch + 1, self.rows)
        self.log(self._progress_line(row, val_seconds))

    def _learning_rate(self):
        optimizer = self.model.optimizer
        lr = optimizer.learning_rate
        if callable(lr):
            lr = lr(optimizer.iterations)
        return keras.ops.convert_to_numpy(lr)

    def _progress_line(self, row, val_seconds) -> str:
        parts = [f"epoch {row['epoch']}/{self.epochs}", f"loss {row['loss']:.4f}"]
        if row["accuracy"] is not None:
            parts.append(f"acc {100 * row['accuracy']:.2f}%")
        if row["val_accuracy"] is not None:
            parts.append(f"val_loss {row['val_loss']:.4f}  val_acc {100 * row['val_accuracy']:.2f}%")
        parts.append(f"{row['images_per_second']:,.0f} img/s  {row['epoch_seconds']:.2f}s")
        if val_seconds:
            parts.append(f"(+{val_seconds:.2f}s val)")
        done = row["epoch"]
        recent = [r["epoch_seconds"] for r in self.rows[-5:]]
        steady = statistics.median(recent[1:] if len(recent) > 1 else recent) + val_seconds
        parts.append(f"ETA {_format_duration((self.epochs - done) * steady)}")
        return "  ".join(parts)


class StepProgress(keras.callbacks.Callback):
    """Progress inside long epochs (every ``every_seconds``): steps done, images/s, epoch ETA.

    Meant for CPU runs: a per-batch hook makes Keras synchronise with the device after every step.
    """

    def __init__(self, images_per_step: int, every_seconds: float = 15.0, log=print):
        super().__init__()
        self.images_per_step = images_per_step
        self.every_seconds = every_seconds
        self.log = log

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        steps = self.params.get("steps") if self.params else None
        if now - self._last < self.every_seconds or not steps:
            return
        self._last = now
        rate = (batch + 1) / (now - self._start)
        self.log(f"  step {batch + 1}/{steps}  {rate * self.images_per_step:,.0f} img/s  "
                 f"epoch ETA {_format_duration((steps - batch - 1) / rate)}")


def _float_or_none(value):
    value = _float(value)
    return None if value is None or np.isnan(value) else value


def _float(value):
    if value is None:
        return None
    value = float(np.asarray(value))
    return value
