"""Shared fixtures: every test starts and ends under the float32 global dtype policy."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _float32_dtype_policy():
    """Tests may set a mixed-precision policy; put float32 back whatever happens."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
