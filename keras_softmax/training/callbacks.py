"""Training callbacks: time epochs, show progress, write ``history.csv``, checkpoint, stop on NaN,
and reseed the model's random layers per epoch (so that a resumed run draws what it would have)."""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np

from keras_softmax.training.rundir import DIVERGED


def format_duration(seconds: float | None) -> str:
    """``seconds`` as ``"42s"``, ``"3m05s"`` or ``"1h02m"`` (``"unknown"`` for None)."""
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stopped (one-line message for the CLI)."""


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
        mixed_precision: the run computes in bf16/fp16 (the divergence message then suggests float32).
        averager: the run's :class:`~keras_softmax.training.averaging.WeightAverage` (``swa_start``),
            whose running average each checkpoint keeps; it must come before the recorder in
            ``fit``'s callbacks, so that a checkpoint holds the average up to its own epoch.

    A non-finite training loss (checked at every epoch end from the logs Keras has anyway, and after
    each step where :class:`StepProgress` reports one) stops training: the epoch is neither
    recorded nor checkpointed, ``failed.json`` says what happened, and :attr:`diverged` holds the
    one-line explanation for the caller to raise as :class:`TrainingDiverged`.
    """

    def __init__(self, run_dir, num_train: int, epochs: int, history=None, checkpoint_every: int = 1,
                 log=print, started: float | None = None, mixed_precision: bool = False, averager=None,
                 learning_rate=None):
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
        self.diverged: str | None = None
        self.mixed_precision = mixed_precision
        self.averager = averager
        # step -> lr on the host (training.optim.learning_rate_reader); None: the optimizer's own, eagerly
        self.learning_rate = learning_rate
        self._bad_step: int | None = None

    def non_finite_step(self, epoch_step: int) -> None:
        """Note that the loss was non-finite after step ``epoch_step`` (1-based) and stop training."""
        if self._bad_step is None:
            self._bad_step = epoch_step
        self.model.stop_training = True

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
        loss = _float(logs.get("loss"))
        if self._bad_step is not None or (loss is not None and not np.isfinite(loss)):
            self._stop_diverged(epoch, loss)
            return
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
            # Unsmoothed NLL of the label, the same quantity for every head (val_loss is each head's own
            # objective); train nll is NaN -> empty where accuracy is (see keras_softmax.metrics).
            "nll": _float_or_none(logs.get("nll")),
            "val_nll": _float_or_none(logs.get("val_nll")),
            "lr": _float(self._learning_rate()),
            "epoch_seconds": seconds,
            "images_per_second": self.num_train / seconds if seconds > 0 else None,
            "elapsed_seconds": self.offset + time.perf_counter() - self.started,
        }
        self.rows.append(row)
        self.run_dir.write_history(self.rows)
        last = epoch + 1 == self.epochs
        if self.checkpoint_every and ((epoch + 1) % self.checkpoint_every == 0 or last):
            extra = {} if self.averager is None else {"swa": self.averager.state()}
            self.run_dir.save_checkpoint(self.model, epoch + 1, self.rows, **extra)
        self.log(self._progress_line(row, val_seconds))

    def _stop_diverged(self, epoch, loss):
        lr = _float(self._learning_rate())
        where = f"epoch {epoch + 1}" + (f", step {self._bad_step}" if self._bad_step else "")
        good = self.run_dir.read_state()
        if good is not None:
            after = (f"the last good checkpoint (epoch {good['epoch']}) is kept: lower lr in "
                     f"{self.run_dir.config} and continue with --resume --out {self.run_dir.path}")
        else:
            after = ("no checkpoint was made before it; start again with a lower --lr (and --overwrite, or "
                     "another --out)")
        tries = "a lower --lr, more warmup_epochs" + (" or precision float32" if self.mixed_precision else "")
        self.diverged = (f"training diverged: the loss became {loss if loss is not None else 'nan'} at "
                         f"{where} (learning rate {lr:.3g}); try {tries}; {after}")
        self.run_dir.mark_failed({"reason": DIVERGED, "epoch": epoch + 1, "step": self._bad_step,
                                  "loss": str(loss), "learning_rate": lr,
                                  "last_checkpoint_epoch": None if good is None else good["epoch"],
                                  "message": self.diverged})
        self.model.stop_training = True

    def _learning_rate(self):
        optimizer = self.model.optimizer
        if self.learning_rate is not None:
            return self.learning_rate(int(keras.ops.convert_to_numpy(optimizer.iterations)))
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
        parts.append(f"ETA {format_duration((self.epochs - done) * steady)}")
        return "  ".join(parts)


class StepProgress(keras.callbacks.Callback):
    """Progress inside long epochs (every ``every_seconds``): steps done, images/s, epoch ETA.

    Meant for CPU runs: a per-batch hook makes Keras synchronise with the device after every step.
    Since it sees every step's loss anyway, it also stops a diverging run at the first non-finite
    loss (telling ``recorder``, a :class:`RunRecorder`), instead of at the end of the epoch.
    """

    def __init__(self, images_per_step: int, every_seconds: float = 15.0, log=print, recorder=None):
        super().__init__()
        self.images_per_step = images_per_step
        self.every_seconds = every_seconds
        self.log = log
        self.recorder = recorder

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = _float((logs or {}).get("loss"))
        if self.recorder is not None and loss is not None and not np.isfinite(loss):
            self.recorder.non_finite_step(batch + 1)
            return
        now = time.perf_counter()
        steps = self.params.get("steps") if self.params else None
        if now - self._last < self.every_seconds or not steps:
            return
        self._last = now
        rate = (batch + 1) / (now - self._start)
        self.log(f"  step {batch + 1}/{steps}  {rate * self.images_per_step:,.0f} img/s  "
                 f"epoch ETA {format_duration((steps - batch - 1) / rate)}")


class EpochSeeds(keras.callbacks.Callback):
    """Reseed every random layer of the model (augmentation, dropout, Gumbel noise) at each epoch.

    Each ``keras.random.SeedGenerator`` state ``[seed, counter]`` is set to
    ``[seed, epoch * 2**20]`` when epoch ``epoch`` begins, ``seed`` being the generator's own
    initial seed. The draws of an epoch are then a pure function of the model's seeds and the epoch
    number, not of how many steps ran before in this process: a run resumed at epoch ``k`` draws
    what the uninterrupted run drew (the states are not in the weights a checkpoint restores).
    Up to 2**20 draws per generator and epoch, 2,048 epochs.
    """

    STRIDE = 2**20

    def on_train_begin(self, logs=None):
        self._states = [v for v in self.model.non_trainable_variables if v.name == "seed_generator_state"]
        self._seeds = [np.asarray(keras.ops.convert_to_numpy(v.value))[0] for v in self._states]

    def on_epoch_begin(self, epoch, logs=None):
        for variable, seed in zip(self._states, self._seeds):
            value = np.array([seed, (epoch * self.STRIDE) % 2**31], dtype=variable.dtype)
            variable.assign(value)


def _float_or_none(value):
    value = _float(value)
    return None if value is None or np.isnan(value) else value


def _float(value):
    if value is None:
        return None
    value = float(np.asarray(value))
    return value
