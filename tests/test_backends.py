"""The heads test suite passes on every installed backend, not only the one this run uses.

For each of TensorFlow and JAX that is importable and is not the current backend, run
``pytest tests/heads`` in a subprocess with ``KERAS_BACKEND`` set to it.
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
    for backend in ("tensorflow", "jax")
    if backend != keras.backend.backend() and importlib.util.find_spec(backend) is not None
]


@pytest.mark.slow
@pytest.mark.skipif(not OTHER_BACKENDS, reason="no other backend installed")
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_heads_suite_passes_on_other_backend(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_SOFTMAX_TEST_EXAMPLES": "10"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/heads", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, f"tests/heads failed under KERAS_BACKEND={backend}:\n{tail}"
