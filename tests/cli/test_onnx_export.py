"""``keras-softmax export RUN --format onnx`` on TensorFlow and JAX, checked with onnxruntime.

The run is the CLI's own (the shared tiny log_softmax run). Its ``model.keras`` is the same file on
every backend, so the JAX export is the same command with ``KERAS_BACKEND=jax``, as a real process.
onnxruntime's probabilities must equal the Keras model's within 1e-4.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from .helpers import assert_ok, assert_user_error, invoke, subprocess_env

ort = pytest.importorskip("onnxruntime")

ATOL = 1e-4


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)


def _onnx_probabilities(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: images})
    return np.exp(output)  # the shared run's head is log_softmax: log-probabilities


def _keras_probabilities(run, images):
    model = keras.saving.load_model(str(run / "model.keras"), compile=False)
    return np.exp(model.predict(images, verbose=0))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the in-process export is TensorFlow's")
def test_onnx_export_on_tensorflow_matches_onnxruntime(shared_run, images, tmp_path):
    pytest.importorskip("tf2onnx")
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    assert_ok(invoke("export", run, "--format", "onnx"))
    difference = np.abs(_onnx_probabilities(run / "model.onnx", images) - _keras_probabilities(run, images)).max()
    assert difference <= ATOL, difference


@pytest.mark.slow
def test_onnx_export_on_jax_matches_onnxruntime(shared_run, images, tmp_path, cache_dir):
    # jax2onnx writes Keras's 2x2 MaxPooling2D as a 4-D ONNX MaxPool that onnxruntime refuses
    # ("Unsupported pooling size"); the export writes that pool as a reshape and a max instead.
    pytest.importorskip("jax")
    pytest.importorskip("jax2onnx")
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    env = {**subprocess_env(cache_dir), "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    process = subprocess.run([sys.executable, "-m", "keras_softmax_cli", "export", str(run), "--format", "onnx"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert (run / "model.onnx").is_file()
    difference = np.abs(_onnx_probabilities(run / "model.onnx", images) - _keras_probabilities(run, images)).max()
    assert difference <= ATOL, difference


def test_onnx_ready_swaps_only_tiling_max_pools_and_keeps_the_function(images):
    from keras_softmax.export import _TiledMaxPool, onnx_ready

    inputs = keras.Input((9, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    tiled = keras.layers.MaxPooling2D(2, name="tiled")(x)  # odd height: the last row is dropped
    overlapping = keras.layers.MaxPooling2D(3, strides=1, name="overlapping")(tiled)
    model = keras.Model(inputs, keras.layers.Flatten()(overlapping))
    ready = onnx_ready(model)
    assert isinstance(ready.get_layer("tiled"), _TiledMaxPool)
    assert isinstance(ready.get_layer("overlapping"), keras.layers.MaxPooling2D)
    assert ready.get_layer("conv") is model.get_layer("conv")  # the same weights, not a copy
    x = np.random.default_rng(0).normal(size=(2, 9, 10, 3)).astype("float32")
    np.testing.assert_array_equal(ready.predict(x, verbose=0), model.predict(x, verbose=0))


def test_missing_onnx_packages_name_the_extra(shared_run, tmp_path, monkeypatch):
    from keras_softmax import export

    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    monkeypatch.setattr(export, "missing_onnx_packages", lambda backend=None: ["tf2onnx"])
    line = assert_user_error(invoke("export", run, "--format", "onnx"), "ONNX export needs extra packages",
                             "tf2onnx", "pip install 'keras-softmax[onnx]'")
    assert len(line) < 200
    assert not (run / "model.onnx").exists()

