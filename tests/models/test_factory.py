"""build_model / compile_model: wiring, validation, heads, XLA training, saving, mixed precision."""

import warnings

import keras
import numpy as np
import pytest

import keras_softmax as ks
from keras_softmax.models import ImageNormalization, RandomCropFlip, build_model, compile_model

BACKEND = keras.backend.backend()
TINY = {"widths": (4, 8, 8, 8), "input_shape": (16, 16, 3)}


def _data(n=32, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 16, 16, 3)).astype("uint8"), rng.integers(0, num_classes, size=n)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture
def dtype_policy():
    """Set a global dtype policy for one test; always back to float32 afterwards."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


# --- wiring -------------------------------------------------------------------------------------


def test_layers_in_order_and_names():
    model = build_model("softmax", num_classes=10, dropout=0.2, **TINY)
    assert model.name == "resnet12_softmax"
    assert model.input.dtype == "uint8" and model.input.shape == (None, 16, 16, 3)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["images", "normalize", "augment"]
    assert names.index("augment") < names.index("stage1_conv1") < names.index("stage4_pool")
    assert names[-4:] == ["avg_pool", "dropout", "logits", model.layers[-1].name]
    assert isinstance(model.get_layer("normalize"), ImageNormalization)
    assert isinstance(model.get_layer("augment"), RandomCropFlip)
    assert isinstance(model.layers[-1], ks.Softmax)
    logits = model.get_layer("logits")
    assert logits.units == 10 and logits.dtype_policy.name == "float32"
    assert model.output.shape == (None, 10)


def test_optional_layers_and_options():
    model = build_model("log_softmax", num_classes=5, augment=False, name="plain", **TINY)
    names = {layer.name for layer in model.layers}
    assert "augment" not in names and "dropout" not in names and model.name == "plain"
    model = build_model("log_softmax", num_classes=5, crop_padding=2, flip=False, seed=3, **TINY)
    augment = model.get_layer("augment")
    assert (augment.padding, augment.flip, augment.seed) == (2, False, 3)


def test_head_object_and_head_params():
    head = ks.get_head("log_gumbel", temperature=3.0)
    model = build_model(head, num_classes=10, **TINY)
    assert model.layers[-1] is head.layer and model.name == "resnet12_log_gumbel"
    model = build_model("softmax", num_classes=10, head_params={"temperature": 2.0}, **TINY)
    assert model.layers[-1].temperature == 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"head": "no_such_head"}, "unknown head"),
        ({"head": "softmax", "head_params": {"tau": 1.0}}, "no parameter"),
        ({"head": "softmax", "head_params": {"temperature": 0.0}}, "temperature"),
        ({"head": 3}, "head"),
        ({"head": ks.get_head("softmax"), "head_params": {"temperature": 2.0}}, "head_params"),
        ({"backbone": "resnet50"}, "resnet12"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"widths": (4, 8, 8)}, "widths"),
        ({"widths": (4, 8, 0, 8)}, "widths"),
        ({"widths": (4, 8, 8.0, 8)}, "widths"),
        ({"widths": 8}, "widths"),
        ({"input_shape": (8, 8, 3)}, "input_shape"),
        ({"input_shape": (16, 16)}, "input_shape"),
        ({"dropout": 1.0}, "dropout"),
        ({"drop_block": 1.0}, "drop_block must be a number in \\[0, 1\\)"),
        ({"drop_block": True}, "drop_block"),
        ({"drop_block": 0.1, "drop_block_size": 0}, "drop_block_size must be an integer >= 1"),
        ({"drop_block": 0.1, "drop_block_size": 2.0}, "drop_block_size"),
        ({"crop_padding": -1}, "padding"),
        ({"std": (0.1, 0.1, 0.0)}, "std"),
        ({"num_classes": 10, "head": "hierarchical"}, "num_classes"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, match):
    kwargs = {"num_classes": 10, **TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


# --- outputs are distributions ------------------------------------------------------------------


@pytest.mark.parametrize("head, num_classes", [("softmax", 10), ("log_softmax", 10), ("sparsemax", 10),
                                               ("hierarchical", 100)])
def test_outputs_are_distributions(head, num_classes):
    model = build_model(head, num_classes=num_classes, **TINY)
    x, _ = _data(8)
    out = _numpy(model(x, training=False))
    assert out.shape == (8, num_classes) and out.dtype == np.float32
    probs = np.exp(out) if model.layers[-1].output_kind == "log_probabilities" else out
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    if head == "hierarchical":
        assert model.get_layer("logits").units == 120  # 100 fine + 20 coarse


# --- compile and train --------------------------------------------------------------------------


def test_compile_model_picks_matching_loss_and_accuracy():
    model = build_model("softmax", num_classes=10, **TINY)
    compile_model(model, "softmax", label_smoothing=0.1, jit_compile=False)
    assert isinstance(model.loss, ks.ProbabilityCrossEntropy) and model.loss.label_smoothing == 0.1
    head = ks.get_head("log_softmax")
    model = build_model(head, num_classes=10, **TINY)
    compile_model(model, head, optimizer=keras.optimizers.Adam(1e-3),
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy")])
    assert isinstance(model.loss, ks.NegativeLogLikelihood)
    model = build_model("sparsemax", num_classes=10, **TINY)
    compile_model(model)  # head read off the model
    assert isinstance(model.loss, ks.SparsemaxLoss)


def test_fit_with_jit_compile_keeps_xla():
    model = build_model("log_softmax", num_classes=10, dropout=0.1, seed=0, **TINY)
    compile_model(model, "log_softmax", optimizer="sgd", jit_compile=True)
    augment_state = _numpy(model.get_layer("augment").seed_generator.state).copy()
    x, y = _data(32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "Model doesn't support `jit_compile=True`"
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert model.jit_compile is True
    assert set(history.history) == {"loss", "accuracy", "nll"} and np.isfinite(history.history["loss"][0])
    # The augmentation ran inside the compiled train step: its seed state advanced.
    assert not np.array_equal(_numpy(model.get_layer("augment").seed_generator.state), augment_state)


def test_keras_random_crop_is_what_drops_jit():
    # The failure mode our layer avoids: Keras reports it by a warning and model.jit_compile False.
    images = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.RandomCrop(12, 12)(images)))
    model = keras.Model(images, outputs)
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is False


# --- saving -------------------------------------------------------------------------------------


def test_keras_file_round_trip(tmp_path):
    model = build_model("log_gumbel", num_classes=10, dropout=0.2, seed=1,
                        head_params={"temperature": 2.0, "seed": 4}, **TINY)
    compile_model(model, "log_gumbel")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial batch-norm statistics, as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
    x, _ = _data(16)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_numpy(loaded(x, training=False)), _numpy(model(x, training=False)))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.name == model.name and type(loaded.layers[-1]) is ks.LogGumbelSoftmax
    assert loaded.get_layer("augment").get_config() == model.get_layer("augment").get_config()
    assert loaded.get_layer("normalize").get_config() == model.get_layer("normalize").get_config()


# --- mixed precision ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_gives_finite_float32_outputs(dtype_policy, policy):
    dtype_policy(policy)
    model = build_model("log_softmax", num_classes=10, **TINY)
    compute = policy.split("_")[1]
    assert model.get_layer("stage1_conv1").compute_dtype == compute
    assert model.get_layer("normalize").compute_dtype == compute
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"
    x, y = _data(16)
    out = _numpy(model(x, training=False))
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-5)
    if policy == "mixed_bfloat16":
        compile_model(model)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        out = _numpy(model(x, training=False))
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
