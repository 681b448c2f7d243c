"""configure_xla: our XLA defaults join the user's XLA_FLAGS on JAX and never override them."""

import keras
import pytest

from keras_softmax import environment


def test_adds_compilation_parallelism_on_jax(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    environment.configure_xla()
    flags = __import__("os").environ["XLA_FLAGS"].split()
    assert flags[0] == "--xla_dump_to=/tmp/x"
    assert any(f.startswith("--xla_gpu_force_compilation_parallelism=") for f in flags)


def test_a_users_own_value_wins(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_force_compilation_parallelism=1")
    environment.configure_xla()
    assert __import__("os").environ["XLA_FLAGS"] == "--xla_gpu_force_compilation_parallelism=1"


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_other_backends_are_left_alone(monkeypatch, backend):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    environment.configure_xla()
    assert "XLA_FLAGS" not in __import__("os").environ
