"""precision = "auto": the choice logic per device, and what a CPU run resolves it to."""

import pytest

from keras_softmax import environment
from keras_softmax.environment import Accelerator, auto_precision
from keras_softmax.training.config import TrainConfig, resolve


@pytest.mark.parametrize("device, expected", [
    (Accelerator("gpu", (9, 0)), "mixed_bfloat16"),   # H100
    (Accelerator("gpu", (8, 0)), "mixed_bfloat16"),   # A100: first with bf16 tensor cores
    (Accelerator("gpu", (8, 6)), "mixed_bfloat16"),
    (Accelerator("gpu", (7, 5)), "float32"),          # T4: no native bf16
    (Accelerator("gpu", None), "float32"),            # capability unknown: the safe choice
    (Accelerator("tpu"), "mixed_bfloat16"),
    (Accelerator("cpu"), "float32"),
    (Accelerator("unknown"), "float32"),
])
def test_auto_precision_choice(device, expected):
    assert auto_precision(device) == expected


def test_capability_strings_parse_like_jax_reports_them():
    assert environment._capability("9.0") == (9, 0)
    assert environment._capability((8, 6)) == (8, 6)
    assert environment._capability(None) is None


def test_auto_is_the_default_and_resolves_to_float32_on_cpu():
    assert TrainConfig().precision == "auto"
    assert resolve(None, {}).precision == "auto"
    assert environment.accelerator().platform == "cpu"
    assert environment.resolve_precision("auto") == "float32"
    assert environment.resolve_precision("mixed_float16") == "mixed_float16"


def test_resolve_precision_uses_the_detected_accelerator(monkeypatch):
    monkeypatch.setattr(environment, "accelerator", lambda: Accelerator("gpu", (9, 0)))
    assert environment.resolve_precision("auto") == "mixed_bfloat16"
    assert environment.resolve_precision("float32") == "float32"
