"""``.keras`` and SavedModel exports reload to the in-memory model's outputs (no training noise)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_softmax.export import export_saved_model, save_keras  # noqa: E402
from keras_softmax.models import build_model  # noqa: E402

ATOL = 1e-5


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


# A probability head and a log head; the stochastic Gumbel head is the next test.
@pytest.mark.parametrize("head", ["softmax", "log_softmax"])
def test_keras_and_saved_model_reload_equal_the_model(head, images, tmp_path):
    model = build_model(head, num_classes=10, widths=(4, 8, 8, 8), seed=0)
    expected = model.predict(images, verbose=0)
    info = {"head": head, "output_kind": model.layers[-1].output_kind}

    reloaded = keras.saving.load_model(str(save_keras(model, tmp_path / "model.keras")))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=ATOL, rtol=0)

    exported = export_saved_model(model, tmp_path / "saved_model", info)
    assert not (tmp_path / ".saved_model.tmp").exists()
    assert json.loads((exported / "assets.extra" / "model_info.json").read_text()) == info
    loaded = tf.saved_model.load(str(exported))  # keep a reference: TF frees the variables with it
    served = loaded.serve(tf.constant(images, dtype=tf.uint8)).numpy()
    np.testing.assert_allclose(served, expected, atol=ATOL, rtol=0)

    # Each is a distribution over the classes (exp for the log head).
    probabilities = np.exp(served) if info["output_kind"] == "log_probabilities" else served
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


def test_gumbel_noise_is_training_only(images, tmp_path):
    keras.utils.set_random_seed(0)  # the initial weights must not depend on which tests ran before
    model = build_model("gumbel", num_classes=10, widths=(4, 8, 8, 8), seed=0, augment=False)
    first, second = model.predict(images, verbose=0), model.predict(images, verbose=0)
    np.testing.assert_array_equal(first, second)
    reloaded = keras.saving.load_model(str(save_keras(model, tmp_path / "model.keras")))
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), first, atol=ATOL, rtol=0)
    loaded = tf.saved_model.load(str(export_saved_model(model, tmp_path / "saved_model")))
    for _ in range(2):
        np.testing.assert_allclose(loaded.serve(tf.constant(images)).numpy(), first, atol=ATOL, rtol=0)
    # The check means something: the head layer does add noise in training. (The head alone: a
    # training call of the whole model would also move the BatchNormalization statistics.)
    head = model.layers[-1]
    logits = keras.Model(model.input, model.get_layer("logits").output)(images)
    clean = keras.ops.convert_to_numpy(head(logits, training=False))
    np.testing.assert_allclose(clean, first, atol=ATOL, rtol=0)
    noisy = keras.ops.convert_to_numpy(head(logits, training=True))
    assert np.abs(noisy - clean).max() > 0, "no Gumbel noise in training: the serving check means nothing"
    # (an untrained model's logits may saturate the softmax; on unit-scale logits the noise is plain)
    unit = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    assert np.abs(keras.ops.convert_to_numpy(head(unit, training=True) - head(unit, training=False))).max() > 1e-2


def test_run_saved_model_equals_run_model_keras(shared_run, digit_pngs):
    _, images, _ = digit_pngs
    model = keras.saving.load_model(str(shared_run.path / "model.keras"))
    expected = model.predict(images, verbose=0)
    loaded = tf.saved_model.load(str(shared_run.path / "saved_model"))
    served = loaded.serve(tf.constant(images, dtype=tf.uint8)).numpy()
    np.testing.assert_allclose(served, expected, atol=ATOL, rtol=0)
    assert np.all(served <= 0), "log_softmax serves log-probabilities"
