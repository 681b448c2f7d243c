"""sam_rho: sharpness-aware minimization (issue 24), on JAX.

Three epochs of one step each are checked against a closed form: softmax regression, whose gradient is
xᵀ(p − y)/n, with Gaussian noise on the input that both passes of a step must share (the reference
draws it from the layer's random state, threaded from step to step as the model does), with SAM on
every step, on none, and from ``sam_start``'s epoch on (the callback that switches ``fit``). With
BatchNorm the step must leave exactly the plain step's moving statistics and random state (both from
the first pass, at the unperturbed weights), and a tiny command-line run trains with it, compiled ahead. On another backend, and with the sampled head,
the setting is refused before any work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from keras_softmax.training.config import ConfigError, first_sam_epoch, resolve
from keras_softmax.training.trainer import check_head_options, train

from .test_trainer import TINY, _quiet

ROOT = Path(__file__).resolve().parents[2]

_ON_JAX = textwrap.dedent("""
    import json, subprocess, sys
    import numpy as np
    import keras
    from keras_softmax.training import sharpness_aware

    rng = np.random.default_rng(0)
    n, d, k, rho, lr = 24, 5, 4, 0.5, 0.3
    x = rng.normal(size=(n, d)).astype("float32")
    y = rng.integers(0, k, n)

    def regression():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((d,)), keras.layers.GaussianNoise(0.5, seed=7), keras.layers.Dense(k)])
        model.compile(optimizer=keras.optimizers.SGD(lr), jit_compile=True,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    def numpy_step(xn, w, b, sam):
        onehot = np.eye(k)[y]
        def grads(w, b):
            z = xn @ w + b
            p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
            loss = -np.mean(np.log(p[np.arange(n), y]))
            return loss, xn.T @ (p - onehot) / n, (p - onehot).mean(0)
        loss, gw, gb = grads(w, b)
        if sam:
            norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
            _, gw, gb = grads(w + rho * gw / norm, b + rho * gb / norm)
        return loss, w - lr * gw, b - lr * gb

    def epochs(rules, first_epoch):
        # len(rules) one-step epochs of fit, SAM from first_epoch (install, or the callback), against the
        # closed form with SAM where rules[i]; the noise draws threaded from the layer's random state
        model = regression()
        callbacks = []
        if first_epoch == 0:
            sharpness_aware.install(model, rho)
        elif first_epoch < len(rules):
            callbacks.append(sharpness_aware.SharpnessAwareFrom(rho, first_epoch))
        noise, dense = model.layers
        w, b = (np.asarray(v, np.float64) for v in dense.get_weights())
        plain_w, plain_b = w, b
        seed_state = [v.value for v in noise.non_trainable_variables]
        for sam in rules:
            xn, seed_state = noise.stateless_call([], seed_state, x, training=True)
            xn = np.asarray(xn, np.float64)
            want_loss, w, b = numpy_step(xn, w, b, sam)
            _, plain_w, plain_b = numpy_step(xn, plain_w, plain_b, False)
        history = model.fit(x, y, batch_size=n, epochs=len(rules), shuffle=False, verbose=0, callbacks=callbacks)
        got_w, got_b = dense.get_weights()
        return {"error": float(max(np.abs(got_w - w).max(), np.abs(got_b - b).max())),
                "loss_error": float(abs(history.history["loss"][-1] - want_loss)),
                "from_plain": float(max(np.abs(got_w - plain_w).max(), np.abs(got_b - plain_b).max())),
                "noise": float(np.abs(xn - x).mean())}

    result = {"plain": epochs([False] * 3, 3), "sam": epochs([True] * 3, 0), "late": epochs([False, False, True], 2),
              "late2": epochs([False, True, True], 1)}

    # BatchNorm and augmentation: the statistics and random state are the plain step's, the weights are not
    from keras_softmax import build_model, get_head
    def resnet(sam):
        keras.utils.set_random_seed(3)
        model = build_model(get_head("log_softmax"), num_classes=3, widths=(4, 4, 8, 8), input_shape=(32, 32, 3),
                            augment=True, seed=5)
        model.get_layer("augment").set_extra_augmentation(policy="trivial_wide", erasing=0.5)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=get_head("log_softmax").loss,
                      jit_compile=True)
        if sam:
            sharpness_aware.install(model, 0.05)
        return model
    images = rng.integers(0, 256, (16, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 3, 16)
    plain, sharp = resnet(False), resnet(True)
    for model in (plain, sharp):
        model.train_on_batch(images, labels)
    non_trainable = max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
                        for a, b in zip(plain.non_trainable_weights, sharp.non_trainable_weights))
    trainable = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                    for a, b in zip(plain.trainable_weights, sharp.trainable_weights))
    result["batchnorm"] = {"non_trainable": non_trainable, "trainable": trainable,
                           "count": len(sharp.non_trainable_weights)}

    # a tiny run from the command line, the steps compiled ahead (they lower model.train_step)
    out = sys.argv[1]
    run = subprocess.run([sys.executable, "-m", "keras_softmax_cli", "train", "--head", "log_softmax", "--epochs", "2",
                          "--set", "widths=[4,4,8,8]", "--set", "limit=200", "--set", "batch_size=32",
                          "--set", "sam_rho=0.05", "--set", "sam_start=0.6", "--set", "compile_ahead=true",
                          "--out", out],
                         capture_output=True, text=True)
    result["cli"] = {"code": run.returncode, "output": run.stdout[-1500:] + run.stderr[-1500:]}
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_a_sam_step_matches_its_closed_form_and_trains_from_the_command_line(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT),
           "KERAS_SOFTMAX_CACHE": str(tmp_path / "cache")}
    process = subprocess.run([sys.executable, "-c", _ON_JAX, str(tmp_path / "run")], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    for rule in ("plain", "sam", "late", "late2"):  # every schedule of SAM steps against the closed form
        figures = result[rule]
        assert figures["error"] < 2e-5 and figures["loss_error"] < 2e-5 and figures["noise"] > 0.1, result
    # ... and far from the plain steps where it took a SAM step: the test can tell them apart
    assert min(result[rule]["from_plain"] for rule in ("sam", "late", "late2")) > 1e-3, result
    assert result["plain"]["from_plain"] < 2e-5, result
    batchnorm = result["batchnorm"]
    assert batchnorm["count"] > 10 and batchnorm["non_trainable"] == 0.0 and batchnorm["trainable"] > 1e-4, batchnorm
    assert result["cli"]["code"] == 0, result["cli"]["output"]
    config = (tmp_path / "run" / "config.toml").read_text()
    assert "sam_rho = 0.05" in config and "sam_start = 0.6" in config and (tmp_path / "run" / "model.keras").is_file()


def test_sam_rho_is_a_non_negative_number():
    assert resolve(None, {"sam_rho": 0.05}).sam_rho == 0.05
    with pytest.raises(ConfigError, match=r"sam_rho must be a number >= 0 \(0: off\) \(got -0.1"):
        resolve(None, {"sam_rho": -0.1})


def test_sam_start_belongs_to_sam_and_starts_with_its_epoch():
    with pytest.raises(ConfigError, match=r"sam_start = 0.75 belongs to sharpness-aware minimization, which is off: "
                                          r"set sam_rho too"):
        resolve(None, {"sam_start": 0.75})
    assert first_sam_epoch(resolve(None, {"sam_rho": 0.05})) == 0
    config = resolve(None, {"sam_rho": 0.05, "sam_start": 0.75, "epochs": 300})
    assert first_sam_epoch(config) == 224  # epoch 225 of 300 (Keras's 224), SWA's first averaged epoch at 0.75
    assert first_sam_epoch(resolve(None, {"sam_rho": 0.05, "sam_start": 0.7, "epochs": 10})) == 6


def test_sam_with_the_sampled_head_is_refused_before_any_work():
    check_head_options(resolve(None, {"head": "sampled", "sam_rho": 0.0}))
    with pytest.raises(ConfigError, match="sam_rho is not available with the sampled head: its class rows train "
                                          "sparsely"):
        check_head_options(resolve(None, {"head": "sampled", "sam_rho": 0.05}))


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the refusal is for the other backends")
def test_sam_on_another_backend_is_refused_before_the_run_directory_exists(tmp_path):
    config = resolve(None, {**TINY, "sam_rho": 0.05})
    with pytest.raises(ConfigError, match=f"sam_rho needs the JAX backend .*not {keras.backend.backend()}"):
        train(config, tmp_path / "run", log=_quiet)
    assert not (tmp_path / "run").exists()


def test_install_refuses_a_model_with_a_train_step_of_its_own():
    from keras_softmax.training import sharpness_aware

    class Custom(keras.Model):
        def train_step(self, *args, **kwargs):
            return super().train_step(*args, **kwargs)

    inputs = keras.Input((3,))
    model = Custom(inputs, keras.layers.Dense(2)(inputs))
    match = "has a train step of its own" if keras.backend.backend() == "jax" else "needs the JAX backend"
    with pytest.raises(ValueError, match=match):
        sharpness_aware.install(model, 0.05)
