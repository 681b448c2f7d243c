"""Stochastic weight averaging (SWA, Izmailov et al. 2018) as a Keras callback, on every backend.

With ``swa_start`` = s in (0, 1) and E epochs, the weights at the end of every epoch from epoch
k = ceil(s · E) (1-based) to E are averaged uniformly, and the model ends training with the average:

    w_SWA = (1/n) · Σ_{i=k..E} w_i,    n = E − k + 1,

w_i being the model's weights at the end of epoch i. It is kept as a running sum S and a count n
(S ← S + w_i, n ← n + 1 at each averaged epoch end; w_SWA = S / n, cast back to each weight's dtype, at
the end). S is a float32 backend tensor per weight, where the weights are (on the GPU), added with
``keras.ops``: reading every weight to the host at each averaged epoch end cost ~0.1 s per epoch on an
H100 at 12-20 M parameters (bench/RESULTS.md §9); float32 sums of a few hundred epochs are exact to
~1e-6 relative, far below what bf16 training resolves. ``swa_start = 0`` is off: no callback, nothing
changes.

It is the model's own business, not the optimizer's (Keras's optimizer EMA keeps its average in
optimizer variables, which on JAX with an accelerator end up deleted after ``fit``: the train step
donates the state's buffers). At each averaged epoch end the callback reads each variable's value: on
JAX, ``fit`` syncs the train state back into the Keras variables at the end of every epoch, before
``on_epoch_end`` runs, and the next step donates those very arrays, so the sums are always new arrays
(a copy at the first averaged epoch, an addition after), computed before the donation, and no
variable's array is held. The average is assigned to the variables in ``on_train_end``, which JAX's
``fit`` calls after its final sync (so nothing overwrites it); the trainer sets it itself when a
resumed run has no epoch left to fit.

**Every weight is averaged, trainable or not**: BatchNormalization's moving mean and variance are
averaged like the kernels, the approximation timm's ``ModelEmaV2`` makes. SWA's usual last step,
recomputing the BatchNormalization statistics of the averaged weights with a pass over the training
images in training mode, is ``swa_batchnorm = "recompute"`` (the trainer calls
:func:`keras_softmax.training.batchnorm.recompute_batchnorm_statistics` after this average is set).
It matters most with ``swa_lr``, whose averaged epoch ends lie further apart.
Integer weights, if a model has any, are not averaged: they keep their last value.

The per-epoch history rows are the current (non-averaged) weights' figures; the model ``train``
returns, and so the job's evaluation, report and exported ``model.keras``, is the averaged one.

Resume: :meth:`WeightAverage.state` (the sum as float64 numpy, the count and the epochs they cover) is
saved with every checkpoint (``checkpoints/epoch-NNNN.swa.npz``, see ``RunDirectory.save_checkpoint``) and
:meth:`WeightAverage.resume` restores it, so a run killed after a checkpoint and resumed ends with
the uninterrupted run's average.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_softmax.training.config import first_averaged_epoch


def _averaged(dtype) -> bool:
    return keras.backend.is_float_dtype(dtype)  # bfloat16 included; integer and boolean weights are not


def _summand(value):
    """A weight as a float32 backend tensor outside any gradient tape: never the variable's own array."""
    return keras.ops.cast(keras.ops.stop_gradient(keras.ops.convert_to_tensor(value)), "float32")


class WeightAverage(keras.callbacks.Callback):
    """The running uniform average of the model's weights at every epoch end from ``first_epoch`` on.

    Args:
        first_epoch: the first epoch (1-based) whose end weights are averaged.

    An epoch whose training loss is not finite is left out (the run stops there anyway: see
    ``RunRecorder``), so a diverged epoch never enters a checkpoint's average.
    """

    def __init__(self, first_epoch: int):
        super().__init__()
        if first_epoch < 1:
            raise ValueError(f"first_epoch must be >= 1 (got {first_epoch})")
        self.first_epoch = first_epoch
        self.total: list | None = None  # float32 backend tensors: the running sums, one per model weight
        self.count = 0
        self.last_epoch: int | None = None

    @classmethod
    def for_config(cls, config) -> "WeightAverage | None":
        """The callback for a ``TrainConfig``'s ``swa_start`` and ``epochs``; None when it is 0."""
        first = first_averaged_epoch(config.swa_start, config.epochs)
        return None if first is None else cls(first)

    # --- the callback --------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.first_epoch:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(np.asarray(loss))):
            return
        self.add([variable.value for variable in self.model.weights], epoch + 1)

    def on_train_end(self, logs=None):
        self.apply(self.model)

    # --- the average ---------------------------------------------------------------------------

    def add(self, weights: list, epoch: int) -> None:
        """Add one epoch end's weights (backend tensors or numpy arrays, in ``model.weights`` order)."""
        if self.total is None:
            # cast returns its input when it is float32 already: copy, so no sum is a variable's array
            self.total = [keras.ops.copy(_summand(w)) for w in weights]
        else:
            if len(weights) != len(self.total):
                raise ValueError(f"the model has {len(weights)} weights, the average {len(self.total)}")
            self.total = [keras.ops.add(total, _summand(w)) for total, w in zip(self.total, weights)]
        self.count += 1
        self.last_epoch = epoch

    def _checked(self, current: list) -> None:
        if not self.count:
            raise ValueError("no epoch has been averaged yet")
        if len(current) != len(self.total):
            raise ValueError(f"the model has {len(current)} weights, the average {len(self.total)}")

    def average(self, current: list) -> list[np.ndarray]:
        """w_SWA = S / n per weight as numpy, in the dtypes of ``current`` (integer weights: ``current``'s)."""
        self._checked(current)
        current = [np.asarray(keras.ops.convert_to_numpy(w)) for w in current]
        means = [keras.ops.convert_to_numpy(keras.ops.divide(total, self.count)) for total in self.total]
        return [mean.astype(w.dtype) if _averaged(w.dtype) else w for mean, w in zip(means, current)]

    def apply(self, model) -> bool:
        """Set ``model``'s weights to the average; False (nothing done) before the first averaged epoch."""
        if not self.count:
            return False
        self._checked(model.weights)
        for variable, total in zip(model.weights, self.total):
            if _averaged(variable.dtype):
                variable.assign(keras.ops.cast(keras.ops.divide(total, self.count), variable.dtype))
        return True

    def describe(self) -> str:
        """One log line: what the final weights are."""
        if not self.count:
            return (f"weight averaging (SWA) from epoch {self.first_epoch}: no epoch was averaged, "
                    "the weights are the last")
        epochs = (f"epoch {self.last_epoch}" if self.count == 1
                  else f"epochs {self.first_epoch}-{self.last_epoch}")
        return (f"weight averaging (SWA): the final weights are the mean of the weights at {self.count} "
                f"epoch end{'s' if self.count > 1 else ''} ({epochs}; every weight, BatchNorm statistics included)")

    # --- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray] | None:
        """The arrays a checkpoint keeps (None before the first averaged epoch: nothing to keep)."""
        if not self.count:
            return None
        state = {"count": np.int64(self.count), "first_epoch": np.int64(self.first_epoch),
                 "last_epoch": np.int64(self.last_epoch)}
        state.update({f"sum_{i:05d}": np.asarray(keras.ops.convert_to_numpy(total), np.float64)
                      for i, total in enumerate(self.total)})
        return state

    def resume(self, state, after_epoch: int) -> None:
        """Continue from a checkpoint made after ``after_epoch`` epochs, with its saved ``state`` (or None).

        ``ValueError`` (one line) when the state does not fit: e.g. ``swa_start`` was changed in the
        run's config.toml after the checkpoint was made.
        """
        expected = max(0, after_epoch - self.first_epoch + 1)
        count = 0 if state is None else int(state["count"])
        first = self.first_epoch if state is None else int(state["first_epoch"])
        if count != expected or first != self.first_epoch:
            raise ValueError(
                f"the checkpoint after epoch {after_epoch} holds a weight average of {count} epoch ends "
                f"from epoch {first}, and swa_start asks for {expected} from epoch {self.first_epoch} "
                "(was swa_start changed in config.toml?)")
        if state is None:
            self.total, self.count, self.last_epoch = None, 0, None
            return
        names = sorted(name for name in state if name.startswith("sum_"))
        self.total = [keras.ops.convert_to_tensor(np.asarray(state[name], np.float32)) for name in names]
        self.count, self.last_epoch = count, int(state["last_epoch"])
