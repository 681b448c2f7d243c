"""The settings behind the original study's recipe and the superclass questions (issue 7, item 4)."""

import keras
import numpy as np
import pytest

from keras_softmax.data import DatasetError, load_dataset
from keras_softmax.data.sources import Dataset, to_coarse
from keras_softmax.training.config import ConfigError, resolve
from keras_softmax.training.optim import learning_rate_schedule, make_optimizer

ORIGINAL = {"optimizer": "adam", "schedule": "onecycle", "lr": 0.01, "weight_decay": 1e-5, "global_clipnorm": 0.1,
            "batch_size": 128, "augment": False, "normalize": False, "val_split": 0.2, "label_smoothing": 0.0}


def test_original_recipe_resolves_and_builds_its_optimizer():
    config = resolve(None, dict(ORIGINAL, epochs=10))
    optimizer = make_optimizer(config, steps_per_epoch=100)
    assert isinstance(optimizer, keras.optimizers.Adam) and not isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.global_clipnorm == pytest.approx(0.1)
    assert optimizer.weight_decay == pytest.approx(1e-5)


def test_onecycle_schedule_rises_to_lr_then_falls_to_almost_zero():
    config = resolve(None, dict(ORIGINAL, epochs=10))
    schedule = learning_rate_schedule(config, steps_per_epoch=100)
    lr = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 150, 300, 650, 1000)]
    assert lr[0] == pytest.approx(0.01 / 25)
    assert lr[0] < lr[1] < lr[2] == pytest.approx(0.01)  # peak after 30 % of the steps
    assert lr[2] > lr[3] > lr[4]
    assert lr[4] == pytest.approx(0.01 / 25 / 1e4, rel=1e-3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adamw, adam"),
    ({"schedule": "step"}, "schedule must be one of cosine, constant, onecycle"),
    ({"global_clipnorm": -0.1}, "global_clipnorm must be a number >= 0"),
    ({"normalize": "no"}, "normalize must be true or false"),
    ({"labels": "super"}, "labels must be one of fine, coarse"),
])
def test_new_settings_are_validated_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        resolve(None, overrides)
    assert "\n" not in str(error.value)


def test_normalize_false_feeds_pixels_over_255():
    from keras_softmax.training.trainer import build_for

    data = load_dataset("digits", limit=100, val_split=10)
    config = resolve(None, {"normalize": False, "widths": [4, 8, 8, 8], "augment": False})
    _, model = build_for(config, data)
    layer = model.get_layer("normalize")
    out = keras.ops.convert_to_numpy(layer(np.full((1, 32, 32, 3), 255, "uint8")))
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)


def test_to_coarse_relabels_every_split():
    x = np.zeros((6, 32, 32, 3), np.uint8)
    data = Dataset("tiny", ["a", "b", "c", "d"], x, np.array([0, 1, 2, 3, 0, 1], np.int32), x[:2],
                   np.array([2, 3], np.int32), fine_to_coarse=[1, 0, 1, 0])
    coarse = to_coarse(data)
    assert coarse.class_names == ["coarse0", "coarse1"]
    assert coarse.y_train.tolist() == [1, 0, 1, 0, 1, 0] and coarse.y_val.tolist() == [1, 0]
    assert coarse.fine_to_coarse is None


def test_coarse_labels_need_a_map():
    with pytest.raises(DatasetError, match="needs a fine->coarse map, and digits has none"):
        load_dataset("digits", labels="coarse")
