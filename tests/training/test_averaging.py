"""swa_start (issue 24): stochastic weight averaging as our own callback, on every backend.

The final weights are the numpy mean of the end-of-epoch weights from epoch ceil(swa_start · epochs) on
(default backend in process; JAX with XLA, one and two devices, in a subprocess); a run killed after a
checkpoint and resumed ends with the same average; ``swa_start = 0`` changes nothing; bad values are
one line. Tiny ResNet-12s on 160 digits, as in test_trainer.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keras_softmax.training.averaging import WeightAverage, first_averaged_epoch
from keras_softmax.training.callbacks import RunRecorder
from keras_softmax.training.config import ConfigError, resolve
from keras_softmax.training.rundir import RunDirectory
from keras_softmax.training.trainer import train

from .test_trainer import TINY, _Killed, _quiet, _weights

ROOT = Path(__file__).resolve().parents[2]
SWA = {**TINY, "epochs": 4, "swa_start": 0.5}  # averages the ends of epochs 2, 3 and 4


# --- the rule, the arithmetic, the checkpoint files (no training) -----------------------------------

@pytest.mark.parametrize("value", [1.0, 1, -0.1, 1.5, float("nan"), "half", True])
def test_swa_start_refuses_bad_values_in_one_line(value):
    with pytest.raises(ConfigError) as error:
        resolve(None, {"swa_start": value})
    message = str(error.value)
    assert message.startswith("swa_start must be a number in [0, 1) (0: off) (got ") and "\n" not in message


def test_swa_start_and_ema_exclude_each_other():
    assert resolve(None, {"swa_start": 0.75}).swa_start == 0.75
    assert resolve(None, {}).swa_start == 0.0
    with pytest.raises(ConfigError, match=r"^swa_start and ema both average the weights: use one of them") as error:
        resolve(None, {"swa_start": 0.5, "ema": 0.99})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("start", "epochs", "first"), [
    (0.0, 10, None), (0.5, 4, 2), (0.7, 10, 7), (0.75, 130, 98), (0.01, 4, 1), (0.99, 4, 4), (0.5, 1, 1)])
def test_first_averaged_epoch_is_the_ceiling(start, epochs, first):
    assert first_averaged_epoch(start, epochs) == first


def test_running_average_state_and_resume():
    rng = np.random.default_rng(0)
    ends = [[rng.normal(size=(3, 2)).astype("float32"), np.array([i], "int64")] for i in range(5)]
    whole = WeightAverage(first_epoch=3)
    for epoch, weights in enumerate(ends, start=1):
        if epoch >= 3:
            whole.add(weights, epoch)
    got = whole.average(ends[-1])
    np.testing.assert_allclose(got[0], np.mean([e[0].astype(np.float64) for e in ends[2:]], axis=0), rtol=1e-7)
    assert got[0].dtype == np.float32 and got[1].tolist() == [4]  # integer weights keep their last value
    assert "epochs 3-5" in whole.describe()

    resumed = WeightAverage(first_epoch=3)
    partial = WeightAverage(first_epoch=3)
    partial.add(ends[2], 3)
    resumed.resume(partial.state(), after_epoch=3)
    for epoch in (4, 5):
        resumed.add(ends[epoch - 1], epoch)
    for a, b in zip(resumed.average(ends[-1]), got):
        np.testing.assert_array_equal(a, b)
    WeightAverage(first_epoch=3).resume(None, after_epoch=2)  # before the first averaged epoch: nothing kept
    with pytest.raises(ValueError, match="was swa_start changed"):
        WeightAverage(first_epoch=3).resume(None, after_epoch=4)
    with pytest.raises(ValueError, match="was swa_start changed"):
        WeightAverage(first_epoch=2).resume(partial.state(), after_epoch=3)


# The callback on a small model, on the backend it is run with: the sums are backend tensors kept apart from the
# variables (on JAX the next train step donates the variables' arrays; on PyTorch a sum must not drag a graph).
_SUMS_APART = textwrap.dedent("""
    import keras, numpy as np
    from keras_softmax.training.averaging import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    average = WeightAverage(first_epoch=2)
    average.set_model(model)
    first = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]
    average.on_epoch_end(0, {"loss": 1.0})  # epoch 1: before the first averaged epoch
    assert average.total is None and average.count == 0
    average.on_epoch_end(1, {"loss": 1.0})
    assert not any(isinstance(t, np.ndarray) for t in average.total), "the sums went to the host"
    assert all(t is not v.value for t, v in zip(average.total, model.weights)), "a sum is a variable's array"
    assert not any(getattr(t, "requires_grad", False) for t in average.total), "a sum holds a gradient graph"
    for v in model.weights:  # the variables move on; the sums must not move with them
        v.assign(keras.ops.convert_to_numpy(v.value) + 1.0)
    average.on_epoch_end(2, {"loss": float("nan")})  # a diverged epoch is left out
    average.on_epoch_end(3, {"loss": 1.0})
    assert average.count == 2 and "epochs 2-4" in average.describe()
    average.on_train_end()  # the model ends with the mean of the two averaged ends
    for v, w in zip(model.weights, first):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v.value), w + 0.5, rtol=1e-6, atol=1e-6)
    print("ok")
""")


def test_the_sums_stay_on_the_backend_apart_from_the_variables():
    """The callback keeps its sums where the weights are (reading them to the host cost ~0.1 s an epoch on an
    H100), never as a variable's own array; on the backend this suite runs with."""
    exec(compile(_SUMS_APART, "sums_apart", "exec"), {})


@pytest.mark.parametrize("backend", [b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None])
def test_the_sums_stay_on_the_backend_apart_from_the_variables_on_jax_and_torch(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", _SUMS_APART], capture_output=True, text=True, env=env,
                             timeout=300)
    assert process.returncode == 0 and process.stdout.strip().endswith("ok"), process.stderr[-3000:]


class _FakeModel:
    def save_weights(self, path):
        Path(path).write_text("w")


def test_checkpoint_keeps_the_average_beside_the_weights(tmp_path):
    run = RunDirectory(tmp_path)
    (tmp_path / ".keras-softmax-run").write_text("{}")
    run.save_checkpoint(_FakeModel(), 1, [])
    assert "swa" not in run.read_state() and run.read_swa(run.read_state()) is None
    swa = {"count": np.int64(1), "sum_00000": np.arange(3.0)}
    run.save_checkpoint(_FakeModel(), 2, [], swa=swa)
    run.save_checkpoint(_FakeModel(), 3, [], swa={**swa, "count": np.int64(2)})
    state = run.read_state()
    assert state["swa"] == "epoch-0003.swa.npz"
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["epoch-0003.swa.npz", "epoch-0003.weights.h5",
                                                                 "state.json"]
    kept = run.read_swa(state)
    assert int(kept["count"]) == 2 and kept["sum_00000"].tolist() == [0.0, 1.0, 2.0]
    assert run.foreign_files() == []  # --overwrite may replace it
    (run.checkpoints / state["swa"]).unlink()
    assert run.read_state() is None  # a state without its average is never used
    run.save_checkpoint(_FakeModel(), 4, [], swa=swa)
    run.drop_checkpoint_weights()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["state.json"]


# --- training ---------------------------------------------------------------------------------------

def _recording(patch, ends: list):
    """Record the model's weights at every epoch end (the recorder runs after the averager, which
    changes nothing before the end of training)."""
    real = RunRecorder.on_epoch_end

    def record(self, epoch, logs=None):
        ends.append([np.array(w, copy=True) for w in self.model.get_weights()])
        real(self, epoch, logs)

    patch.setattr(RunRecorder, "on_epoch_end", record)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run with swa_start = 0.5 and one with 0, same seed, their epoch ends recorded."""
    out = tmp_path_factory.mktemp("swa")
    result = {}
    for name, start in (("swa", 0.5), ("plain", 0.0)):
        ends = []
        with pytest.MonkeyPatch.context() as patch:
            _recording(patch, ends)
            lines = []
            trained = train(resolve(None, {**SWA, "swa_start": start}), out / name, log=lines.append)
        result[name] = {"run": trained, "ends": ends, "lines": lines, "out": out / name}
    return result


@pytest.mark.slow
def test_final_weights_are_the_mean_of_the_averaged_epoch_ends(runs):
    swa = runs["swa"]
    assert len(swa["ends"]) == 4
    expected = [np.mean([np.asarray(end[i], np.float64) for end in swa["ends"][1:]], axis=0)
                for i in range(len(swa["ends"][0]))]
    final = swa["run"].model.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(final, swa["ends"][-1]))  # not the last epoch's
    for got, want in zip(final, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert any(line.startswith("weight averaging (SWA): the final weights are the mean of the weights at 3 epoch "
                               "ends (epochs 2-4;") for line in swa["lines"]), swa["lines"]
    assert resolve(swa["out"] / "config.toml").swa_start == 0.5  # the run records it


@pytest.mark.slow
def test_swa_start_0_changes_nothing(runs):
    """Off: no averager, no average in the checkpoints, the last epoch's weights; and averaging does
    not change the training itself (the same losses and epoch-end weights as the swa run)."""
    plain, swa = runs["plain"], runs["swa"]
    for a, b in zip(_weights(plain["run"].model), plain["ends"][-1]):
        np.testing.assert_array_equal(a, b)
    state = RunDirectory(plain["out"]).read_state()
    assert "swa" not in state and not list((plain["out"] / "checkpoints").glob("*.npz"))
    assert not any("weight averaging" in line for line in plain["lines"])
    np.testing.assert_allclose([r["loss"] for r in plain["run"].history], [r["loss"] for r in swa["run"].history],
                               rtol=1e-6)
    for a, b in zip(plain["ends"][-1], swa["ends"][-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_uninterrupted_average(runs, tmp_path, monkeypatch):
    """Killed right after the checkpoint of epoch 2 (the first averaged one) and resumed: the
    checkpoint's average (epoch-0002.swa.npz) is restored, and the run ends with the average of the
    run that was never interrupted. Resumed once more, after its last checkpoint, it has nothing left
    to fit and still hands over the average, not the checkpoint's raw weights."""
    real_save = RunDirectory.save_checkpoint

    def save_then_die(self, model, done, history, **kwargs):
        real_save(self, model, done, history, **kwargs)
        if done == 2:
            raise _Killed

    config = resolve(None, SWA)
    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(RunDirectory, "save_checkpoint", save_then_die)
        with pytest.raises(_Killed):
            train(config, out, log=_quiet)
    state = RunDirectory(out).read_state()
    assert (state["epoch"], state["swa"]) == (2, "epoch-0002.swa.npz")
    whole = _weights(runs["swa"]["run"].model)
    resumed = train(None, out, resume=True, log=_quiet)
    for a, b in zip(whole, _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    again = train(None, out, resume=True, log=_quiet)
    for a, b in zip(whole, _weights(again.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


_SUBPROCESS_RUN = textwrap.dedent("""
    import json, os, sys
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from keras_softmax.training.callbacks import RunRecorder
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train

    real = RunRecorder.on_epoch_end
    ends = []
    def record(self, epoch, logs=None):
        ends.append([np.array(w, copy=True) for w in self.model.get_weights()])
        real(self, epoch, logs)
    RunRecorder.on_epoch_end = record

    result = {}
    for devices in json.loads(sys.argv[1]):
        ends.clear()
        config = resolve(None, {**json.loads(sys.argv[2]), "devices": devices})
        run = train(config, os.path.join(sys.argv[3], f"devices{devices}"), log=lambda *a: None)
        final = run.model.get_weights()
        mean = [np.mean([np.asarray(e[i], np.float64) for e in ends[1:]], axis=0) for i in range(len(final))]
        result[devices] = {
            "epochs": len(ends),
            "max_error": max(float(np.max(np.abs(f - m), initial=0.0)) for f, m in zip(final, mean)),
            "max_scale": max(float(np.max(np.abs(m), initial=0.0)) for m in mean),
            "moved_from_last": max(float(np.max(np.abs(f - l), initial=0.0)) for f, l in zip(final, ends[-1])),
        }
    print(json.dumps(result))
""")


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "devices", "jit"), [("jax", [1, 2], True)])
def test_the_average_on_other_backends_and_two_devices(tmp_path, backend, devices, jit):
    """JAX with XLA (the case that matters: its train step donates the state's buffers, which broke
    Keras's optimizer EMA), on one and two CPU devices. (TensorFlow's MirroredStrategy on two devices
    ran here too until 2026-12-04; it passed, and was left out for the suite's time: the callback has no
    code of its own per strategy, and two-device TensorFlow training is tests/cli/test_devices.py's.)"""
    env = {**os.environ, "KERAS_BACKEND": backend, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_SOFTMAX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    settings = {**SWA, "epochs": 3, "jit_compile": jit}  # averages the ends of epochs 2 and 3
    process = subprocess.run([sys.executable, "-c", _SUBPROCESS_RUN, json.dumps(devices), json.dumps(settings),
                              str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    for count in devices:
        got = result[str(count)]
        assert got["epochs"] == 3, got
        assert got["max_error"] <= 1e-6 * max(1.0, got["max_scale"]), got
        assert got["moved_from_last"] > 1e-4, got  # the average, not the last epoch's weights
