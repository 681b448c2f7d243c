"""The heads test suite passes on every installed backend, not only the one this run uses.

For each of TensorFlow, JAX and PyTorch that is importable and is not the current backend, run
``pytest tests/heads`` in a subprocess with ``KERAS_BACKEND`` set to it. Each backend is its own test,
so the suite's two workers run two of them side by side.

To keep the whole suite under 20 minutes on 2 CPU cores, the second-backend runs check fewer
hypothesis examples (``KERAS_SOFTMAX_TEST_EXAMPLES``) and PyTorch leaves out the long fits of
``entmax_alpha`` and ``adaptive`` (:data:`LEFT_OUT`): on torch 2.13 CPU they were 53 % of its run
(14 min of CPU in all), and those heads still train on torch in the composition tests.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
OTHER_BACKENDS = [
    backend
    for backend in ("tensorflow", "jax", "torch")
    if backend != keras.backend.backend() and importlib.util.find_spec(backend) is not None
]

#: Tests a second-backend run leaves out, per backend, and what still covers them there.
LEFT_OUT = {
    "torch": [
        # Every head, these two included, is still fitted on torch after a .keras round trip by
        # tests/heads/test_composition.py, and `sampled` (the one torch needed a fix for) by its own fit.
        "tests/heads/test_entmax_alpha.py::test_fit_trains_alpha_and_keras_file_round_trips",
        "tests/heads/test_projection.py::test_fit_updates_the_layer_weights_and_keras_file_round_trips[adaptive]",
        "tests/heads/test_projection.py::test_fit_updates_the_layer_weights_and_keras_file_round_trips"
        "[adaptive-chunks]",
    ],
}


@pytest.mark.slow
@pytest.mark.skipif(not OTHER_BACKENDS, reason="no other backend installed")
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_heads_suite_passes_on_other_backend(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_SOFTMAX_TEST_EXAMPLES": "10"}
    deselect = [arg for test in LEFT_OUT.get(backend, []) for arg in ("--deselect", test)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/heads", "-q", "-p", "no:cacheprovider", *deselect],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, f"tests/heads failed under KERAS_BACKEND={backend}:\n{tail}"


def test_every_backend_is_tried():
    # PyTorch is a supported backend (README): its run must not silently drop out of this list.
    if keras.backend.backend() != "torch" and importlib.util.find_spec("torch") is not None:
        assert "torch" in OTHER_BACKENDS
