"""The history's ``lr`` column is read on the host through ``optim.learning_rate_reader``.

Read eagerly on JAX, Keras's ``CosineDecay`` with a warm-up traced both branches of its ``ops.cond`` at
every epoch end (~16 ms on the 2-core CPU, the GPU idle meanwhile on a GPU machine). The reader gives the
schedule's own values (against Keras's eager call and the closed form of ``learning_rate_schedule``'s
docstring), on the suite's backend and on JAX, where a run's epoch ends trace the schedule once.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from keras_softmax.training.config import first_averaged_epoch, resolve
from keras_softmax.training.optim import learning_rate_reader, learning_rate_schedule

ROOT = Path(__file__).resolve().parents[2]


def _closed_form(step, *, lr, warmup, averaged_from, swa_lr):
    """``learning_rate_schedule``'s docstring: linear warm-up, cosine to ``swa_lr`` at ``averaged_from``."""
    if step < warmup:
        return lr * step / warmup
    if step >= averaged_from:
        return swa_lr
    return swa_lr + (lr - swa_lr) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (averaged_from - warmup)))


@pytest.mark.parametrize("settings", [
    {"schedule": "cosine", "warmup_epochs": 2.0, "swa_start": 0.6, "swa_lr": 0.05},
    {"schedule": "cosine", "warmup_epochs": 0.0},
    {"schedule": "onecycle"},
    {"schedule": "constant"},
])
def test_the_reader_gives_the_schedules_own_values(settings):
    config = resolve(None, {"epochs": 10, "lr": 0.2, **settings})
    schedule = learning_rate_schedule(config, steps_per_epoch=7)
    read = learning_rate_reader(schedule)
    for step in (0, 1, 6, 7, 13, 14, 20, 35, 41, 42, 43, 55, 69, 70):
        expected = schedule if not callable(schedule) else float(keras.ops.convert_to_numpy(schedule(step)))
        assert isinstance(read(step), float)
        assert read(step) == pytest.approx(expected, rel=1e-6, abs=1e-9), step


def test_the_reader_follows_the_closed_form_with_warmup_and_the_averaging_floor():
    config = resolve(None, {"epochs": 10, "lr": 0.2, "warmup_epochs": 2.0, "swa_start": 0.6, "swa_lr": 0.05})
    read = learning_rate_reader(learning_rate_schedule(config, steps_per_epoch=7))
    averaged_from = (first_averaged_epoch(0.6, 10) - 1) * 7  # 35: the first averaged epoch's first step
    for step in range(71):
        assert read(step) == pytest.approx(
            _closed_form(step, lr=0.2, warmup=14, averaged_from=averaged_from, swa_lr=0.05), rel=1e-5, abs=1e-7)


_JAX_RUN = textwrap.dedent("""
    import json, sys
    from keras.src.optimizers.schedules import learning_rate_schedule as schedules
    from keras_softmax.training import callbacks

    at_epoch_ends = []
    original = schedules.CosineDecay._warmup_function

    def counted(self, *args):  # traced (or run eagerly) once per evaluation of the schedule's cond
        frame = sys._getframe()
        while frame is not None and frame.f_code is not callbacks.RunRecorder.on_epoch_end.__code__:
            frame = frame.f_back
        at_epoch_ends.append(frame is not None)
        return original(self, *args)

    schedules.CosineDecay._warmup_function = counted
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train

    config = resolve(None, json.loads(sys.argv[1]))
    run = train(config, sys.argv[2], log=lambda *a: None)
    print(json.dumps({"epoch_end_evaluations": sum(at_epoch_ends), "lr": [row["lr"] for row in run.history]}))
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_on_jax_the_epoch_ends_trace_the_schedule_once(tmp_path):
    """Eight epoch ends, one trace (the old eager read evaluated the cond at each: eight); the column is right."""
    settings = {"dataset": "digits", "limit": 96, "val_split": 32, "widths": [4, 8, 8, 8], "batch_size": 32,
                "epochs": 8, "warmup_epochs": 2.0, "lr": 0.1, "precision": "float32", "val_every": 100,
                "swa_start": 0.75, "swa_lr": 0.02}
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", _JAX_RUN, json.dumps(settings), str(tmp_path / "run")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["epoch_end_evaluations"] == 1
    averaged_from = (first_averaged_epoch(0.75, 8) - 1) * 2  # 64 training images, batches of 32: 2 steps
    expected = [_closed_form(2 * epoch, lr=0.1, warmup=4, averaged_from=averaged_from, swa_lr=0.02)
                for epoch in range(1, 9)]
    assert result["lr"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
