"""The unsmoothed NLL metric (``nll`` / ``val_nll``): the evaluation's NLL, per epoch, in every run's history.

``val_loss`` is each head's own training objective (label-smoothed, Fenchel-Young, sampled), so the
curves of different heads cannot be compared on it; ``val_nll`` is ``-log max(p_y, 1e-12)`` for
every head, the quantity ``keras_softmax.evaluation.calibration.negative_log_likelihood`` computes.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_softmax as ks
from keras_softmax.evaluation import calibration
from keras_softmax.metrics import PROBABILITY_FLOOR, label_accuracy, label_nll, nll_metric

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _distributions(rng, n=64, classes=7, zeros=False):
    z = rng.normal(size=(n, classes)) * 3
    p = np.exp(z - z.max(1, keepdims=True))
    if zeros:  # sparsemax-like: exact zeros, sometimes on the true class
        p[p < np.quantile(p, 0.6)] = 0.0
    return (p / p.sum(1, keepdims=True)).astype("float32")


def _reference(y, p):
    """The definition, in float64: -log max(p_y, floor)."""
    return -np.log(np.maximum(np.asarray(p, np.float64)[np.arange(len(y)), y], PROBABILITY_FLOOR))


def test_one_floor_owned_by_the_core():
    assert calibration.PROBABILITY_FLOOR is PROBABILITY_FLOOR == 1e-12
    assert "PROBABILITY_FLOOR =" not in (ROOT / "keras_softmax/evaluation/calibration.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("zeros", [False, True], ids=["dense", "exact-zeros"])
def test_label_nll_of_probabilities_is_the_evaluations_nll(zeros):
    rng = np.random.default_rng(0)
    p = _distributions(rng, zeros=zeros)
    y = rng.integers(0, p.shape[1], size=len(p))
    if zeros:
        y[0] = int(np.argmin(p[0]))  # a true class at p = 0: the floor decides, 27.63
        assert p[0, y[0]] == 0.0
    got = _np(label_nll(y, p))
    assert got.dtype == np.float32 and got.shape == (len(y),)
    np.testing.assert_allclose(got, _reference(y, p), rtol=1e-6, atol=1e-6)
    if zeros:
        assert got[0] == pytest.approx(-math.log(1e-12), rel=1e-6)
    for labels in (y[:, None], y.astype("float32"), y.astype("int64")):  # (batch, 1) and other dtypes
        np.testing.assert_allclose(_np(label_nll(labels, p)), got, rtol=1e-7)
    assert float(np.mean(got)) == pytest.approx(calibration.negative_log_likelihood(y, p), rel=1e-6)


def test_label_nll_of_log_probabilities_floors_in_log_space():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(32, 5)) * 20  # very confident: some log p far below log 1e-12
    log_p = (z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True))
    log_p = log_p.astype("float32")
    log_p[0, 0] = -np.inf  # a masked class
    y = rng.integers(0, 5, size=32)
    y[0] = 0
    got = _np(label_nll(y, log_p, output_kind="log_probabilities"))
    np.testing.assert_allclose(got, np.minimum(-log_p[np.arange(32), y].astype(np.float64), -math.log(1e-12)),
                               rtol=1e-6)
    assert got[0] == pytest.approx(27.631021, rel=1e-6)
    # Not through exp and log again: log p = -1e-30 (p = 1 in float32) keeps its NLL of 1e-30 ...
    tail = np.array([[-80.0, -1e-30]], np.float32)
    assert _np(label_nll(np.array([1]), tail, output_kind="log_probabilities"))[0] == pytest.approx(1e-30, rel=1e-5)
    # ... and the same distribution as probabilities gives the same NLL where both are representable.
    p = np.exp(log_p.astype(np.float64)).astype("float32")
    assert float(np.mean(got)) == pytest.approx(calibration.negative_log_likelihood(y, p), rel=1e-5)


@pytest.mark.parametrize("output_kind", ["probabilities", "log_probabilities"])
def test_label_nll_of_target_distributions_is_the_cross_entropy(output_kind):
    rng = np.random.default_rng(2)
    p = _distributions(rng, n=16, classes=6, zeros=True)
    a, b = rng.integers(0, 6, size=16), rng.integers(0, 6, size=16)
    lam = rng.uniform(size=(16, 1))
    t = (lam * np.eye(6)[a] + (1 - lam) * np.eye(6)[b]).astype("float32")  # CutMix's targets
    out = np.log(np.maximum(p, 1e-45)) if output_kind == "log_probabilities" else p
    got = _np(label_nll(t, out, output_kind=output_kind))
    want = -(t * np.log(np.maximum(p.astype(np.float64), PROBABILITY_FLOOR))).sum(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # one-hot targets are the labels
    np.testing.assert_allclose(_np(label_nll(np.eye(6, dtype="float32")[a], out, output_kind=output_kind)),
                               _np(label_nll(a, out, output_kind=output_kind)), rtol=1e-6)


def test_label_nll_computes_in_float32_from_bfloat16():
    rng = np.random.default_rng(3)
    p = _distributions(rng, n=8, classes=4)
    y = rng.integers(0, 4, size=8)
    bf16 = keras.ops.cast(p, "bfloat16")
    got = label_nll(y, bf16)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    rounded = _np(keras.ops.cast(bf16, "float32"))
    np.testing.assert_allclose(_np(got), _reference(y, rounded), rtol=1e-6)
    log_got = label_nll(y, keras.ops.cast(np.log(p), "bfloat16"), output_kind="log_probabilities")
    assert keras.backend.standardize_dtype(log_got.dtype) == "float32"


def test_feature_packet_of_heads_that_own_their_projection_is_nan():
    """In training, adaptive/sampled output ``(batch, 1, d)`` features: no NLL there (as accuracy)."""
    packet = np.zeros((5, 1, 12), np.float32)
    for y in (np.arange(5), np.arange(5)[:, None], np.eye(5, 7, dtype="float32")):
        assert np.isnan(_np(label_nll(y, packet))).all() and _np(label_nll(y, packet)).shape == (5,)
        assert np.isnan(_np(label_accuracy(y, packet))).all()


def test_nll_metric_is_a_mean_named_nll_and_checks_its_output_kind():
    rng = np.random.default_rng(4)
    p = _distributions(rng, n=20)
    y = rng.integers(0, p.shape[1], size=20)
    metric = nll_metric()
    assert metric.name == "nll"
    metric.update_state(y[:10], p[:10])
    metric.update_state(y[10:], p[10:])
    assert float(_np(metric.result())) == pytest.approx(calibration.negative_log_likelihood(y, p), rel=1e-5)
    logs = nll_metric("log_probabilities")
    logs.update_state(y, np.log(p))
    assert float(_np(logs.result())) == pytest.approx(float(_np(metric.result())), rel=1e-5)
    revived = keras.metrics.MeanMetricWrapper.from_config(logs.get_config())
    assert revived.get_config() == logs.get_config() and logs.get_config()["output_kind"] == "log_probabilities"
    with pytest.raises(ValueError, match="output_kind"):
        nll_metric("logits")


def test_nll_metric_under_jit_compiled_fit_and_evaluate():
    """In a compiled train step (XLA where the backend has it): ``nll`` and ``val_nll`` in fit's logs."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 4, size=64)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, ks.LogSoftmax()(keras.layers.Dense(4)(inputs)))
    model.compile(optimizer="sgd", loss=ks.NegativeLogLikelihood(), metrics=[nll_metric("log_probabilities")],
                  jit_compile=BACKEND != "torch")
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x[:32], y[:32]), verbose=0).history
    assert {"nll", "val_nll"} <= set(history)
    want = calibration.negative_log_likelihood(y[:32], np.exp(model.predict(x[:32], verbose=0)))
    assert history["val_nll"][-1] == pytest.approx(want, abs=1e-4)


def test_compile_model_logs_nll_and_its_keras_file_loads(tmp_path):
    model = ks.build_model("sparsemax", num_classes=5, widths=(4, 4, 4, 4), input_shape=(16, 16, 3))
    ks.compile_model(model, jit_compile=False)
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(16, 16, 16, 3)).astype("uint8")
    y = rng.integers(0, 5, size=16)
    history = model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0).history
    want = calibration.negative_log_likelihood(y, model.predict(x, verbose=0))
    assert history["val_nll"][0] == pytest.approx(want, abs=1e-4)
    path = tmp_path / "model.keras"
    model.save(path)
    revived = keras.saving.load_model(path)
    assert revived.evaluate(x, y, verbose=0, return_dict=True)["nll"] == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_keras_file_compiled_with_the_metric_loads_after_import_keras_softmax(tmp_path, backend):
    """In a fresh process, on each backend: save a model compiled with ``nll_metric("log_probabilities")``,
    load it in another fresh process with only ``import keras_softmax`` and evaluate: the metric is back
    with its output kind (an NLL of log-probabilities read as probabilities would be very different)."""
    path = tmp_path / "model.keras"
    save = f"""
import numpy as np, keras, keras_softmax as ks
from keras_softmax.metrics import nll_metric
inputs = keras.Input((3,))
model = keras.Model(inputs, ks.LogSoftmax()(keras.layers.Dense(4, kernel_initializer="ones")(inputs)))
model.compile(optimizer="sgd", loss=ks.NegativeLogLikelihood(), metrics=[nll_metric("log_probabilities")])
x = np.arange(12, dtype="float32").reshape(4, 3) / 10; y = np.array([0, 1, 2, 3])
print(model.evaluate(x, y, verbose=0, return_dict=True)["nll"])
model.save({str(path)!r})
"""
    load = f"""
import numpy as np, keras, keras_softmax
model = keras.saving.load_model({str(path)!r})
x = np.arange(12, dtype="float32").reshape(4, 3) / 10; y = np.array([0, 1, 2, 3])
print(model.evaluate(x, y, verbose=0, return_dict=True)["nll"])
"""
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
            for code in (save, load)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    saved, loaded = (float(run.stdout.split()[-1]) for run in runs)
    assert loaded == pytest.approx(saved, rel=1e-6) and saved == pytest.approx(math.log(4), rel=1e-5)


def _read_history(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_a_training_run_records_val_nll_in_history_csv(tmp_path):
    """A run of the trainer with label smoothing and CutMix (its val_loss is smoothed, its train targets
    are distributions): history.csv's ``val_nll`` is the unsmoothed NLL the evaluation computes from the
    model's predictions on the validation split; train ``nll`` (CutMix's cross-entropy) is there too."""
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train

    config = resolve(None, {"widths": [4, 4, 8, 8], "limit": 160, "batch_size": 32, "jit_compile": False,
                            "checkpoint_every": 0, "compile_cache": False, "seed": 3, "head": "log_softmax",
                            "epochs": 2, "label_smoothing": 0.2, "cutmix": 0.5})
    run = train(config, tmp_path / "run", log=lambda *a, **k: None)
    fields, rows = _read_history(tmp_path / "run" / "history.csv")
    assert {"nll", "val_nll", "val_loss"} <= set(fields) and len(rows) == 2
    assert all(np.isfinite(float(r["nll"])) and float(r["val_nll"]) > 0 for r in rows)
    assert [row["val_nll"] for row in run.history] == pytest.approx([float(r["val_nll"]) for r in rows], rel=1e-5)
    probs = np.exp(run.model.predict(run.dataset.x_val, verbose=0))
    want = calibration.negative_log_likelihood(run.dataset.y_val, probs)
    assert float(rows[-1]["val_nll"]) == pytest.approx(want, abs=1e-4)
    # label smoothing makes the objective differ from the NLL: the column is not val_loss again
    assert abs(float(rows[-1]["val_loss"]) - want) > 1e-3


def test_a_head_that_owns_its_projection_has_val_nll_but_no_train_nll(tmp_path):
    """Adaptive softmax trains on features (no class scores): train ``nll`` is NaN in fit's logs and an
    empty cell in history.csv (as ``accuracy``); ``val_nll`` is the exact NLL of its full output."""
    from keras_softmax.training.callbacks import RunRecorder
    from keras_softmax.training.rundir import RunDirectory

    model = ks.build_model("adaptive", num_classes=10, widths=(4, 4, 4, 4), input_shape=(16, 16, 3))
    ks.compile_model(model, jit_compile=False)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(16, 16, 16, 3)).astype("uint8")
    y = rng.integers(0, 10, size=16)
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.path.mkdir()
    recorder = RunRecorder(run_dir, num_train=16, epochs=1, checkpoint_every=0, log=lambda *a: None)
    history = model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), callbacks=[recorder],
                        verbose=0).history
    assert np.isnan(history["nll"][0]) and np.isfinite(history["val_nll"][0])
    want = calibration.negative_log_likelihood(y, np.exp(model.predict(x, verbose=0)))
    assert history["val_nll"][0] == pytest.approx(want, abs=1e-4)
    _, rows = _read_history(run_dir.history)
    assert rows[0]["nll"] == "" and rows[0]["accuracy"] == ""
    assert float(rows[0]["val_nll"]) == pytest.approx(want, abs=1e-4)
