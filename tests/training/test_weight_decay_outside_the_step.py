"""Weight decay's exclusions are decided before training, not by a name regex inside the train step.

Keras's ``exclude_from_weight_decay(var_names=...)`` runs ``re.search`` on each variable's name in
the first train step; under ``torch.compile`` (torch 2.11 on the GPU machine) that crashed the fast
preset in its first epoch ("Cannot construct ConstantVariable for value of type <class 'type'>").
"""

from __future__ import annotations

import re
import types

import keras
import numpy as np
import pytest

from keras_softmax.models import build_model
from keras_softmax.training.config import resolve
from keras_softmax.training.optim import make_optimizer


@pytest.fixture
def model():
    return build_model("log_softmax", num_classes=10, widths=(4, 8, 8, 8), seed=0, augment=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adam"])
def test_the_same_variables_skip_decay_as_by_name(model, optimizer):
    config = resolve(None, {"optimizer": optimizer, "weight_decay": 5e-3})
    by_variable = make_optimizer(config, 10, model.trainable_variables)
    by_name = make_optimizer(config, 10)
    decayed = [by_variable._use_weight_decay(v) for v in model.trainable_variables]
    assert decayed == [by_name._use_weight_decay(v) for v in model.trainable_variables]
    names = {v.name for v, d in zip(model.trainable_variables, decayed) if not d}
    assert names == {"gamma", "beta", "bias"}  # batch norms and the Dense bias
    assert any(decayed)


def test_no_name_regex_runs_in_the_train_step(model, monkeypatch):
    from keras.src.optimizers import base_optimizer

    config = resolve(None, {"weight_decay": 5e-3})
    model.compile(optimizer=make_optimizer(config, 10, model.trainable_variables),
                  loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)

    def traced_search(*args, **kwargs):
        raise AssertionError("re.search inside the train step (torch.compile cannot trace it)")

    # Only the optimizer's module sees this `re`; its first step is where Keras matched the names.
    monkeypatch.setattr(base_optimizer, "re", types.SimpleNamespace(search=traced_search, compile=re.compile))
    x = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    model.train_on_batch(x, np.arange(4))
