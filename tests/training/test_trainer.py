"""train(): a resumed run is the run it continues; the run's loss and head settings; EMA on resume.

Tiny ResNet-12s on a few hundred digits, XLA off: a few seconds per run on a CPU.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_softmax import mismatch
from keras_softmax.training.config import resolve
from keras_softmax.training.rundir import RunDirectory
from keras_softmax.training.trainer import build_for, train, training_loss

TINY = {"widths": [4, 4, 8, 8], "limit": 160, "batch_size": 32, "jit_compile": False, "checkpoint_every": 1,
        "compile_cache": False, "seed": 3}


def _quiet(*args, **kwargs):
    pass


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in model.weights]


class _Killed(Exception):
    """Stands for a SIGKILL right after a checkpoint (the process state is thrown away)."""


def _train_killed_after(monkeypatch, config, out, epoch):
    real_save = RunDirectory.save_checkpoint

    def save_then_die(self, model, done, history):
        real_save(self, model, done, history)
        if done == epoch:
            raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(RunDirectory, "save_checkpoint", save_then_die)
        with pytest.raises(_Killed):
            train(config, out, log=_quiet)
    assert RunDirectory(out).read_state()["epoch"] == epoch


def test_a_resumed_run_is_the_run_it_continues(tmp_path, monkeypatch):
    """Killed after epoch 1 and resumed, a run with every source of randomness on (shuffle, CutMix,
    random crop and flip, dropout, Gumbel noise) and weight EMA ends with the per-epoch losses and
    the weights of the run that was never interrupted. (A resumed epoch used to replay epoch 0's
    shuffle and CutMix draws, and the augmentation and noise generators restarted from their
    initial state.) Resumed once more, after its last checkpoint, it has nothing left to fit and
    must still hand over the EMA weights, not the raw ones the checkpoint holds."""
    config = resolve(None, {**TINY, "head": "gumbel", "epochs": 2, "cutmix": 0.5, "dropout": 0.2, "ema": 0.5,
                            "head_params": {"temperature": 2.0}})
    whole = train(config, tmp_path / "whole", log=_quiet)
    _train_killed_after(monkeypatch, config, tmp_path / "resumed", epoch=1)
    resumed = train(None, tmp_path / "resumed", resume=True, log=_quiet)
    losses = [row["loss"] for row in whole.history]
    assert len(set(losses)) == 2
    np.testing.assert_allclose([row["loss"] for row in resumed.history], losses, rtol=1e-6)
    for a, b in zip(_weights(whole.model), _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    again = train(None, tmp_path / "resumed", resume=True, log=_quiet)  # after the last checkpoint
    assert [row["epoch"] for row in again.history] == [1, 2]
    for a, b in zip(_weights(whole.model), _weights(again.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mismatched_loss_trains_sparse_heads_with_their_true_jacobian():
    """``--set loss=mismatched`` on sparsemax: the gradient the run's head and loss give the logits
    is mismatch.logit_gradients(..., mismatched=True), not the Fenchel-Young straight-through copy
    (1.39 against 0.247 in gradient norm before). Label smoothing applies to it as well."""
    import types

    dataset = types.SimpleNamespace(num_classes=5, image_shape=(32, 32, 3), fine_to_coarse=None)
    z = np.array([[2.0, 1.5, 1.2, 0.8, -1.0], [0.3, 0.1, -0.2, 0.25, 0.0]], dtype="float32")
    y = np.array([4, 2])
    for name in ("sparsemax", "entmax15"):
        config = resolve(None, {**TINY, "head": name, "loss": "mismatched"})
        head, model = build_for(config, dataset)
        assert model.layers[-1].fenchel_young_gradient is False
        loss, layer = training_loss(config, head), model.layers[-1]
        got = keras.ops.convert_to_numpy(  # the backend's autodiff, as logit_gradients uses it
            mismatch._gradient(lambda v: loss(y, layer(v, training=True)) * len(y), z))
        np.testing.assert_allclose(got, mismatch.logit_gradients(name, z, y, mismatched=True), atol=1e-6)
        matched = resolve(None, {**TINY, "head": name})
        assert build_for(matched, dataset)[1].layers[-1].fenchel_young_gradient is True
    smoothed = resolve(None, {**TINY, "head": "softmax", "loss": "mismatched", "label_smoothing": 0.2})
    assert training_loss(smoothed, None).label_smoothing == 0.2


def test_augment_policy_and_random_erasing_reach_the_model_and_its_file(tmp_path):
    """``augment_policy`` / ``random_erasing`` switch TrivialAugment and erasing on in the model's
    augmentation layer, with the normalisation the model uses (pixel scale for the colour
    operations); the saved model keeps them; without the augmentation layer they are refused."""
    import types

    from keras_softmax.models.augment import CIFAR100_MEAN, CIFAR100_STD
    from keras_softmax.training.config import ConfigError

    dataset = types.SimpleNamespace(num_classes=5, image_shape=(16, 16, 3), fine_to_coarse=None)
    config = resolve(None, {**TINY, "augment_policy": "trivial_wide", "random_erasing": 0.25})
    _, model = build_for(config, dataset)
    layer = model.get_layer("augment")
    assert (layer.policy, layer.erasing) == ("trivial_wide", 0.25)
    np.testing.assert_allclose(layer.mean, CIFAR100_MEAN)
    np.testing.assert_allclose(layer.std, CIFAR100_STD)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras").get_layer("augment")
    assert (loaded.policy, loaded.erasing, loaded.mean) == ("trivial_wide", 0.25, layer.mean)

    raw = build_for(resolve(None, {**TINY, "augment_policy": "trivial", "normalize": False}), dataset)[1]
    assert (raw.get_layer("augment").mean, raw.get_layer("augment").std) == ((0.0,), (1.0,))
    plain = build_for(resolve(None, TINY), dataset)[1].get_layer("augment")
    assert (plain.policy, plain.erasing) == ("none", 0.0)
    with pytest.raises(ConfigError, match="augment = true"):
        build_for(resolve(None, {**TINY, "augment": False, "random_erasing": 0.5}), dataset)
    for bad in ({"augment_policy": "randaugment"}, {"random_erasing": 1.5}, {"random_erasing": "yes"}):
        with pytest.raises(ConfigError):
            resolve(None, {**TINY, **bad})



def test_drop_block_reaches_the_backbone_and_its_file(tmp_path):
    """``drop_block`` / ``drop_block_size`` put ResNet-12's dropout and DropBlock layers in the model, seeded
    from the run's seed; the saved model keeps them; off by default; out-of-range values are refused."""
    import types

    from keras_softmax.training.config import ConfigError

    dataset = types.SimpleNamespace(num_classes=5, image_shape=(16, 16, 3), fine_to_coarse=None)
    _, model = build_for(resolve(None, {**TINY, "drop_block": 0.1, "drop_block_size": 3}), dataset)
    layer = model.get_layer("stage3_dropblock")
    assert (layer.rate, layer.block_size, layer.seed) == (0.1, 3, TINY["seed"] + 13)
    assert model.get_layer("stage1_dropout").rate == 0.1
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras").get_layer("stage4_dropblock")
    assert (loaded.rate, loaded.block_size) == (0.1, 3)
    plain = build_for(resolve(None, TINY), dataset)[1]
    assert not [layer.name for layer in plain.layers if "drop" in layer.name]
    for bad in ({"drop_block": 1.0}, {"drop_block": -0.1}, {"drop_block_size": 0}, {"drop_block_size": 1.5}):
        with pytest.raises(ConfigError, match="drop_block"):
            resolve(None, {**TINY, **bad})
