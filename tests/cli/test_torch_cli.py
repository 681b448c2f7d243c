"""``keras-softmax train`` on the PyTorch backend: it trains, exports what it can, and always reports.

Keras exports a SavedModel from torch only through ``torch_xla``; the run's ``model.keras`` is the same
file on every backend, so the SavedModel is made from it by a TensorFlow-backend subprocess. Before
this, the torch run trained and then died in ``export_saved_model`` with a raw ``torch._dynamo``
traceback and no report.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from .helpers import TINY, subprocess_env

pytest.importorskip("torch")


@pytest.mark.slow
def test_train_on_torch_writes_report_and_saved_model(tmp_path, cache_dir, digit_pngs):
    env = {**subprocess_env(cache_dir), "KERAS_BACKEND": "torch"}
    out = tmp_path / "run"
    args = [sys.executable, "-m", "keras_softmax_cli", "train", "--head", "log_gumbel", "--dataset", "digits",
            "--epochs", "1", *TINY, "--out", str(out)]
    process = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert "Traceback" not in process.stdout + process.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["backend"], report["head"]) == ("torch", "log_gumbel")
    assert (out / "report.md").is_file() and (out / "model.keras").is_file()

    tf = pytest.importorskip("tensorflow")
    _, images, _ = digit_pngs
    expected = keras.saving.load_model(str(out / "model.keras"), compile=False).predict(images, verbose=0)
    loaded = tf.saved_model.load(str(out / "saved_model"))
    served = loaded.serve(tf.constant(images, dtype=tf.uint8)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)
    assert json.loads((out / "saved_model" / "assets.extra" / "model_info.json").read_text())["head"] == "log_gumbel"


def test_a_failed_saved_model_export_is_one_line_and_keeps_model_keras(tmp_path, monkeypatch):
    from keras_softmax import export
    from keras_softmax.models import build_model
    from keras_softmax.training.rundir import RunDirectory

    def failing_export(*args, **kwargs):
        raise RuntimeError("Detected mismatch between the structure of `inputs`\nand `dynamic_shapes`")

    monkeypatch.setattr(export, "export_saved_model", failing_export)
    monkeypatch.setattr(export.environment, "tensorflow_available", lambda: True)
    model = build_model("log_softmax", num_classes=3, widths=(4, 4, 4, 4), seed=0)
    head = SimpleNamespace(name="log_softmax", params={}, output_kind="log_probabilities")
    dataset = SimpleNamespace(class_names=["a", "b", "c"], image_shape=(32, 32, 3), name="toy")
    run_dir = RunDirectory(tmp_path)
    lines = []
    export.save_run_model(model, head, dataset, run_dir, log=lines.append)  # does not raise
    assert run_dir.model_keras.is_file() and not run_dir.saved_model.exists()
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "could not write saved_model/" in lines[0] and "keras-softmax export" in lines[0]


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="checks the refusal on another backend's process")
def test_saved_model_from_a_torch_model_object_needs_its_keras_file(monkeypatch):
    from keras_softmax import export

    monkeypatch.setattr(export.keras.backend, "backend", lambda: "torch")
    with pytest.raises(export.ExportError, match="torch backend"):
        export.export_saved_model(object(), "unused")
