"""Every head and loss round-trips: get_config/from_config, keras serialization, and .keras files."""

import keras
import numpy as np
import pytest

import keras_softmax as ks

from .helpers import HEADS, SMALL_MAP, to_np

#: Non-default parameters, so a round trip that drops one shows.
PARAMS = {
    "softmax": {"temperature": 2.5, "drop_lowest": 0.25},
    "log_softmax": {"temperature": 0.5, "drop_lowest": 0.1},
    "gumbel": {"temperature": 0.7, "hard": True, "seed": 3, "drop_lowest": 0.2},
    "log_gumbel": {"temperature": 3.0, "seed": 5},
    "sparsemax": {"fenchel_young_gradient": False},
    "entmax15": {},
    "taylor": {"order": 4},
    "log_taylor": {"order": 6},
    "base2": {},
    "exp_sin": {},
    "normal_cdf": {},
    "hierarchical": {"fine_to_coarse": list(SMALL_MAP)},
    "entmax_alpha": {"alpha": 1.7, "learn_alpha": True, "iterations": 40},
}
LOSSES = [
    ks.ProbabilityCrossEntropy(epsilon=1e-5, label_smoothing=0.1),
    ks.NegativeLogLikelihood(label_smoothing=0.05),
    ks.SparsemaxLoss(label_smoothing=0.2),
    ks.Entmax15Loss(),
    ks.EntmaxAlphaLoss(alpha=1.25, label_smoothing=0.1),
]


def width(name):
    return len(SMALL_MAP) + 3 if name == "hierarchical" else 8


def sample_logits(name, batch=3):
    return np.random.default_rng(0).normal(size=(batch, width(name))).astype("float32") * 3


def test_params_cover_every_head():
    assert set(PARAMS) == set(HEADS)


@pytest.mark.parametrize("name", HEADS)
def test_config_round_trip(name):
    layer = ks.get_head(name, **PARAMS[name]).layer
    z = sample_logits(name)
    config = layer.get_config()
    for key, value in PARAMS[name].items():
        assert config[key] == value
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    np.testing.assert_array_equal(to_np(clone(z)), to_np(layer(z)))
    # generic keras (de)serialization finds the registered class by name
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)
    np.testing.assert_array_equal(to_np(revived(z)), to_np(layer(z)))


@pytest.mark.parametrize("name", HEADS)
def test_keras_file_round_trip(name, tmp_path):
    head = ks.get_head(name, **PARAMS[name])
    inputs = keras.Input((4,))
    outputs = head.layer(keras.layers.Dense(width(name))(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the heads are registered
    np.testing.assert_array_equal(to_np(loaded(x)), to_np(model(x)))
    assert type(loaded.layers[-1]) is type(head.layer)
    assert loaded.layers[-1].get_config() == head.layer.get_config()


@pytest.mark.parametrize("name", ["log_gumbel", "sparsemax", "hierarchical", "entmax_alpha"])
def test_compiled_model_round_trips_its_loss(name, tmp_path):
    head = ks.get_head(name, **PARAMS[name])
    inputs = keras.Input((4,))
    model = keras.Model(inputs, head.layer(keras.layers.Dense(width(name))(inputs)))
    model.compile(optimizer="sgd", loss=head.make_loss(label_smoothing=0.1))
    path = tmp_path / "compiled.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    y = np.arange(6) % 3
    assert type(loaded.loss) is type(head.loss)
    assert loaded.loss.get_config() == model.loss.get_config()
    # (as numpy: a bare sparse layer's output under its own loss is refused, tests/heads/test_composition.py)
    np.testing.assert_allclose(to_np(loaded.loss(y, to_np(loaded(x)))), to_np(model.loss(y, to_np(model(x)))),
                               rtol=1e-6)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: type(loss).__name__)
def test_loss_round_trip(loss):
    rng = np.random.default_rng(3)
    if isinstance(loss, ks.NegativeLogLikelihood):
        y_pred = to_np(keras.ops.log_softmax(rng.normal(size=(4, 5)).astype("float32")))
    elif isinstance(loss, ks.SparsemaxLoss):
        y_pred = to_np(ks.Sparsemax()(rng.normal(size=(4, 5)).astype("float32")))
    elif isinstance(loss, ks.Entmax15Loss):
        y_pred = to_np(ks.Entmax15()(rng.normal(size=(4, 5)).astype("float32")))
    elif isinstance(loss, ks.EntmaxAlphaLoss):
        y_pred = to_np(ks.EntmaxAlpha(alpha=loss.alpha)(rng.normal(size=(4, 5)).astype("float32")))
    else:
        y_pred = to_np(keras.ops.softmax(rng.normal(size=(4, 5)).astype("float32")))
    y = np.array([0, 3, 4, 1])
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is type(loss) and revived.get_config() == config
    want = to_np(loss(y, y_pred))
    for other in (clone, revived):
        np.testing.assert_array_equal(to_np(other(y, y_pred)), want)

