"""The heads test suite passes on every installed backend, not only the one this run uses.

For each of TensorFlow and JAX that is importable and is not the current backend, run the files of
``tests/heads`` in subprocesses with ``KERAS_BACKEND`` set to it: in three groups of about equal
time, so that the test suite's workers share them instead of one worker running all of it last.
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
#: The slow files in groups of their own; every other file of tests/heads goes in the last group.
SLOW_FILES = (("test_projection.py",), ("test_entmax_alpha.py", "test_gumbel.py", "test_mismatch.py",
                                         "test_low_precision.py"))


def head_test_groups() -> list[list[str]]:
    """The files of tests/heads in groups; each file in exactly one, so none is left out."""
    files = sorted(p.name for p in (ROOT / "tests" / "heads").glob("test_*.py"))
    slow = [[name for name in group if name in files] for group in SLOW_FILES]
    rest = [name for name in files if not any(name in group for group in SLOW_FILES)]
    return [group for group in slow + [rest] if group]


def test_the_groups_hold_every_heads_test_file_once():
    groups = head_test_groups()
    names = [name for group in groups for name in group]
    assert sorted(names) == sorted(p.name for p in (ROOT / "tests" / "heads").glob("test_*.py"))
    assert len(names) == len(set(names)) and len(groups) == 3


@pytest.mark.slow
@pytest.mark.skipif(not OTHER_BACKENDS, reason="no other backend installed")
@pytest.mark.parametrize("group", range(len(head_test_groups())))
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_heads_suite_passes_on_other_backend(backend, group):
    files = [f"tests/heads/{name}" for name in head_test_groups()[group]]
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_SOFTMAX_TEST_EXAMPLES": "10"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, f"{' '.join(files)} failed under KERAS_BACKEND={backend}:\n{tail}"
