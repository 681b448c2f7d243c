"""evaluate_model: flip test-time augmentation averages the probabilities of the image and its mirror."""

import types

import keras
import numpy as np
import pytest

import keras_softmax as ks
from keras_softmax.evaluation.evaluate import evaluate_model


def _linear_model(head, weights):
    """uint8 (4, 6, 1) images -> flatten -> fixed linear logits -> head: left and right differ."""
    images = keras.Input((4, 6, 1), dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255.0)(images)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(3, use_bias=False, dtype="float32")
    logits = dense(x)
    dense.set_weights([weights])
    return keras.Model(images, head.layer(logits))


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_tta_flip_averages_probabilities_of_horizontal_mirrors(name):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 4, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, size=12)
    weights = rng.normal(size=(24, 3)).astype("float32")
    head = ks.get_head(name)
    model = _linear_model(head, weights)
    dataset = types.SimpleNamespace(split=lambda split: (images, labels), class_names=["a", "b", "c"],
                                    fine_to_coarse=None)

    def probabilities(x):
        return _softmax((x.reshape(len(x), -1) / 255.0) @ weights.astype(np.float64))

    plain = probabilities(images)
    mirrored = probabilities(images[:, :, ::-1])  # width is axis 2 of NHWC
    upside_down = probabilities(images[:, ::-1])
    expected = (plain + mirrored) / 2  # the mean of probabilities (not of log-probabilities)
    assert np.abs(mirrored - upside_down).max() > 0.05 and np.abs(expected - plain).max() > 0.05

    report = evaluate_model(model, head, dataset, tta_flip=True, batch_size=5)
    assert report["tta_flip"] is True
    assert report["accuracy"] == pytest.approx(np.mean(expected.argmax(-1) == labels))
    assert report["loss"] == pytest.approx(-np.log(expected[np.arange(12), labels]).mean(), rel=1e-4)
    plain_report = evaluate_model(model, head, dataset, tta_flip=False)
    assert plain_report["loss"] == pytest.approx(-np.log(plain[np.arange(12), labels]).mean(), rel=1e-4)
    assert report["loss"] != pytest.approx(plain_report["loss"], rel=1e-3)
