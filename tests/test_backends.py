"""The heads test suite passes on every installed backend, not only the one this run uses.

For each of TensorFlow, JAX and PyTorch that is importable and is not the current backend, run
``pytest tests/heads`` in a subprocess with ``KERAS_BACKEND`` set to it. Each backend is its own test,
so the suite's two workers run two of them side by side.

To keep the whole suite under 20 minutes on 2 CPU cores (the heads suite is ~800 tests: 13.5 CPU-min
on JAX alone, measured 2026-12-03), a second backend runs the files where backends differ
(:data:`SECOND_BACKEND_FILES`: composition and reload, losses, projection heads, serialization,
axis/mask, XLA, low precision, noise, sparse row updates), with fewer hypothesis examples
(``KERAS_SOFTMAX_TEST_EXAMPLES``) and without the repeated parametrizations of adaptive's exactness
tests (:data:`LEFT_OUT`, one of each kept). The reference-value and finite-difference files run on the
main backend; the JAX run starts first (tests/conftest.py) so that it overlaps the rest of the suite.
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

#: The heads files a second backend runs (see the module docstring).
SECOND_BACKEND_FILES = {
    "jax": ["test_composition.py", "test_losses.py", "test_projection.py", "test_sparse_rows.py", "test_xla.py",
            "test_serialization.py", "test_axis_and_mask.py", "test_low_precision.py", "test_entmax_alpha.py",
            "test_gumbel.py", "test_edges.py"],
    "torch": ["test_composition.py", "test_losses.py", "test_projection.py", "test_serialization.py",
              "test_axis_and_mask.py", "test_gumbel.py", "test_edges.py"],
    "tensorflow": ["test_composition.py", "test_losses.py", "test_projection.py", "test_serialization.py",
                   "test_axis_and_mask.py", "test_low_precision.py", "test_gumbel.py", "test_edges.py"],
}

_PROJECTION = "tests/heads/test_projection.py::"
#: Parametrizations a second-backend run leaves out: the main backend runs them all, and one of each
#: family (and every head's fit after a .keras round trip, tests/heads/test_composition.py) still runs.
_REPEATS = [
    _PROJECTION + "test_adaptive_tail_capacity_has_the_loss_and_every_gradient_of_scoring_every_row"
    f"[{case}]" for case in ("spread, the last tail's rows at the end", "every row in tails",
                             "a tail with exactly the capacity", "head rows only")
] + [_PROJECTION + f"test_adaptive_tail_chunks_is_exact[options{i}]" for i in (0, 2, 3, 4, 5)] + [
    _PROJECTION + "test_adaptive_class_block_is_exact[2]",
    _PROJECTION + "test_fit_updates_the_layer_weights_and_keras_file_round_trips[adaptive-chunks]",
]
LEFT_OUT = {
    "jax": _REPEATS + [  # alpha-entmax's repeats: one alpha of each family and the learnt-alpha fit still run
        "tests/heads/test_entmax_alpha.py::test_fit_trains_alpha_and_keras_file_round_trips[False]",
        "tests/heads/test_entmax_alpha.py::test_matched_loss_gives_logits_p_minus_y[1.2]",
    ],
    "tensorflow": _REPEATS,
    "torch": _REPEATS + [
        # Every head, these two included, is still fitted on torch after a .keras round trip by
        # tests/heads/test_composition.py, and `sampled` (the one torch needed a fix for) by its own fit.
        "tests/heads/test_entmax_alpha.py::test_fit_trains_alpha_and_keras_file_round_trips",
        _PROJECTION + "test_fit_updates_the_layer_weights_and_keras_file_round_trips[adaptive]",
    ],
}


@pytest.mark.slow
@pytest.mark.skipif(not OTHER_BACKENDS, reason="no other backend installed")
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_heads_suite_passes_on_other_backend(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_SOFTMAX_TEST_EXAMPLES": "5"}
    deselect = [arg for test in LEFT_OUT.get(backend, []) for arg in ("--deselect", test)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *[f"tests/heads/{f}" for f in SECOND_BACKEND_FILES[backend]], "-q",
         "-p", "no:cacheprovider", *deselect],
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


def test_the_second_backend_lists_name_what_exists():
    heads = ROOT / "tests" / "heads"
    for backend, files in SECOND_BACKEND_FILES.items():
        assert "test_composition.py" in files and "test_losses.py" in files, backend
        for name in files:
            assert (heads / name).is_file(), (backend, name)
    for backend, tests in LEFT_OUT.items():
        for test in tests:
            path, function = test.split("::")
            assert f"def {function.split('[')[0]}(" in (ROOT / path).read_text(), (backend, test)
