"""What ``pip install keras-softmax`` and its extras promise (README, "Install").

- The base install is Keras and numpy: ``import keras_softmax`` imports none of TensorFlow,
  tensorflow-datasets or Click, and the layers, losses, registry and model factory work with every
  module of the ``cli`` extra absent (simulated here by an import blocker in a fresh process).
- The extras name what each feature imports, torch is pinned exactly, and tensorflow-datasets can
  build the cifar100 dataset where the ``cli`` extra is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Modules that only the ``cli`` extra brings (top-level import names).
CLI_ONLY = ("tensorflow", "tensorflow_datasets", "click", "sklearn", "matplotlib", "PIL")
#: Of those, what ``import keras_softmax`` must not import even where they are installed. (Keras
#: itself imports scikit-learn and matplotlib when they are present, for its sklearn wrappers.)
NEVER_IMPORTED = ("tensorflow", "tensorflow_datasets", "click")


def _python(code: str, backend: str = "jax", timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _requirement_names(requirements) -> set[str]:
    names = set()
    for requirement in requirements:
        name = requirement.split(";")[0].split("[")[0]
        for sep in "<>=~! ":
            name = name.split(sep)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def test_base_dependencies_are_keras_and_numpy():
    assert _requirement_names(PYPROJECT["project"]["dependencies"]) == {"keras", "numpy"}


def test_extras_name_what_each_feature_imports():
    extras = PYPROJECT["project"]["optional-dependencies"]
    cli = _requirement_names(extras["cli"])
    assert {"tensorflow", "tensorflow-datasets", "scikit-learn", "matplotlib", "click", "pillow"} <= cli
    # tensorflow-datasets imports importlib_resources without declaring it: `--dataset cifar100` failed
    # on a clean install with "No module named 'importlib_resources'".
    assert "importlib-resources" in cli
    assert {"onnx", "onnxruntime", "tf2onnx", "jax2onnx"} <= _requirement_names(extras["onnx"])
    dev = extras["dev"]
    assert "keras-softmax[cli,onnx]" in dev
    assert {"pytest", "pytest-xdist", "hypothesis", "jax", "torch"} <= _requirement_names(dev)
    # An unpinned torch resolves to a CUDA build of several GB; the tests need the CPU wheel.
    torch = [r for r in dev if r.startswith("torch")]
    assert torch == ["torch==2.13.0"], torch
    assert PYPROJECT["project"]["scripts"]["keras-softmax"] == "keras_softmax_cli:main"


def test_import_loads_no_tensorflow_click_or_tfds():
    code = ("import json, sys, keras_softmax as ks; ks.get_head('log_gumbel'); "
            f"print(json.dumps(sorted(m for m in {NEVER_IMPORTED!r} if m in sys.modules)))")
    result = _python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


#: A fresh process where every module of the cli extra is missing, as after `pip install keras-softmax`.
_BLOCKER = f"""
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {CLI_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""


@pytest.mark.slow
def test_layers_losses_registry_and_factory_work_without_the_cli_extra(tmp_path):
    code = _BLOCKER + f"""
import numpy as np, keras, keras_softmax as ks
assert "log_gumbel" in ks.list_heads() and "sparsemax" in ks.list_heads()
head = ks.get_head("log_gumbel")
model = ks.build_model(head="log_gumbel", num_classes=10, widths=(4, 8, 8, 8), seed=0)
model.compile(optimizer="sgd", loss=head.loss)
x = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
model.fit(x, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
model.save({str(tmp_path / "model.keras")!r})
reloaded = keras.saving.load_model({str(tmp_path / "model.keras")!r})
np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
probabilities = keras.ops.convert_to_numpy(ks.Sparsemax()(keras.ops.convert_to_tensor([[1.0, 2.0, 5.0]])))
assert abs(probabilities.sum() - 1) < 1e-6
print("ok", sorted(m for m in {CLI_ONLY!r} if m in sys.modules))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok []"


def test_tensorflow_datasets_builds_cifar100(tmp_path):
    # What `--dataset cifar100` does first; it needs the undeclared importlib_resources.
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder("cifar100", data_dir=str(tmp_path))
    assert builder.info.features["label"].num_classes == 100
