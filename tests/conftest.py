"""Shared fixtures: every test starts and ends under the float32 global dtype policy."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _float32_dtype_policy():
    """Tests may set a mixed-precision policy; put float32 back whatever happens."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def pytest_collection_modifyitems(config, items):
    """The JAX run of the heads suite (tests/test_backends.py, the longest single test) goes first, so
    that one xdist worker runs it while the other works through the rest, instead of at the end alone."""
    first = [item for item in items if item.nodeid.endswith("test_heads_suite_passes_on_other_backend[jax]")]
    items[:] = first + [item for item in items if item not in first]
