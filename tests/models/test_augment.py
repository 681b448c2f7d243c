"""ImageNormalization and RandomCropFlip: exact numpy references, randomness, serialization, XLA."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_softmax.models import CIFAR100_MEAN, CIFAR100_STD, ImageNormalization, RandomCropFlip

BACKEND = keras.backend.backend()


def _images(batch=128, height=8, width=6, channels=2, seed=0):
    """Distinct non-zero values, so that a crop of the zero-padded image identifies its offset."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(batch * height * width * channels).astype("float32") + 1.0
    return values.reshape(batch, height, width, channels)


def _match_crops(x, y, padding, fill_mode="constant"):
    """For each image, the (dy, dx, flipped) whose crop of the padded ``x`` equals ``y`` exactly."""
    p = padding
    mode = {"constant": "constant", "reflect": "reflect"}[fill_mode]
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
    height, width = x.shape[1:3]
    found = []
    for i in range(len(x)):
        matches = [
            (dy, dx, flipped)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for flipped in (False, True)
            if np.array_equal(
                y[i],
                padded[i, dy : dy + height, dx : dx + width][:, ::-1] if flipped
                else padded[i, dy : dy + height, dx : dx + width],
            )
        ]
        assert matches, f"image {i} is not a crop (or flipped crop) of the padded input"
        found.append(matches[0])
    return found


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


# --- ImageNormalization -------------------------------------------------------------------------


def test_normalization_matches_numpy():
    x = np.random.default_rng(0).integers(0, 256, size=(4, 5, 5, 3)).astype("uint8")
    y = _numpy(ImageNormalization()(x))
    expected = (x / 255.0 - np.array(CIFAR100_MEAN)) / np.array(CIFAR100_STD)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_normalization_scalar_mean_std_and_config():
    layer = ImageNormalization(mean=0.5, std=0.25, name="norm")
    y = _numpy(layer(np.full((1, 2, 2, 3), 255, "uint8")))
    np.testing.assert_allclose(y, 2.0)
    clone = ImageNormalization.from_config(layer.get_config())
    assert clone.mean == (0.5,) and clone.std == (0.25,) and clone.name == "norm"


def test_normalization_compute_dtype_under_mixed_policy():
    layer = ImageNormalization(dtype="mixed_bfloat16")
    y = layer(np.zeros((1, 2, 2, 3), "uint8"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"


@pytest.mark.parametrize(
    "kwargs", [{"std": (0.2, 0.0, 0.2)}, {"mean": "abc"}, {"mean": (0.1, 0.2), "std": (0.1, 0.2, 0.3)}]
)
def test_normalization_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ImageNormalization(**kwargs)


def test_normalization_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="channels"):
        ImageNormalization()(np.zeros((1, 2, 2, 1), "uint8"))


# --- RandomCropFlip -----------------------------------------------------------------------------


def test_identity_at_inference():
    x = _images(batch=4)
    layer = RandomCropFlip(padding=2, seed=0)
    np.testing.assert_array_equal(_numpy(layer(x)), x)
    np.testing.assert_array_equal(_numpy(layer(x, training=False)), x)


def test_training_output_is_exact_crop_of_zero_padded_input():
    x = _images(batch=256)
    y = _numpy(RandomCropFlip(padding=2, seed=1)(x, training=True))
    assert y.shape == x.shape and y.dtype == x.dtype
    found = _match_crops(x, y, padding=2)
    dys, dxs, flips = (np.array(v) for v in zip(*found))
    # Offsets are uniform over [0, 2p]: every value turns up in 256 draws, and they vary per image.
    assert set(dys) == set(range(5)) and set(dxs) == set(range(5))
    assert 0.35 < flips.mean() < 0.65  # flips about half the time (binomial sd ~ 0.03)
    # Some images keep their content untouched, some are shifted: a per-image random choice.
    assert np.any((dys == 2) & (dxs == 2)) and np.any((dys != 2) | (dxs != 2))


def test_reflect_fill_mode_crops_reflect_padded_input():
    x = _images(batch=64)
    y = _numpy(RandomCropFlip(padding=3, fill_mode="reflect", seed=2)(x, training=True))
    found = _match_crops(x, y, padding=3, fill_mode="reflect")
    assert len({(dy, dx) for dy, dx, _ in found}) > 10


@pytest.mark.parametrize("height, width, padding", [(3, 5, 4), (1, 1, 1)])
def test_odd_sizes_and_padding_beyond_the_image(height, width, padding):
    x = _images(batch=32, height=height, width=width, channels=1)
    y = _numpy(RandomCropFlip(padding=padding, seed=4)(x, training=True))
    _match_crops(x, y, padding=padding)
    assert np.any(np.all(y == 0, axis=(1, 2, 3)))  # some crops fall entirely in the zero border


def test_flip_only_and_crop_only():
    x = _images(batch=64)
    flipped = _numpy(RandomCropFlip(padding=0, flip=True, seed=3)(x, training=True))
    is_flipped = [np.array_equal(f, o[:, ::-1]) for f, o in zip(flipped, x)]
    assert all(np.array_equal(f, o) or r for f, o, r in zip(flipped, x, is_flipped))
    assert 10 < sum(is_flipped) < 54
    cropped = _numpy(RandomCropFlip(padding=1, flip=False, seed=3)(x, training=True))
    assert not any(f for _, _, f in _match_crops(x, cropped, padding=1))
    off = RandomCropFlip(padding=0, flip=False)
    np.testing.assert_array_equal(_numpy(off(x, training=True)), x)


def test_deterministic_with_seed_and_fresh_noise_per_call():
    x = _images(batch=16)
    a, b = RandomCropFlip(padding=2, seed=7), RandomCropFlip(padding=2, seed=7)
    first_a, first_b = _numpy(a(x, training=True)), _numpy(b(x, training=True))
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.array_equal(_numpy(a(x, training=True)), first_a)  # the generator advances
    other = _numpy(RandomCropFlip(padding=2, seed=8)(x, training=True))
    assert not np.array_equal(other, first_a)


def test_keeps_dtype_and_exactness_in_bfloat16():
    x = _images(batch=16, height=4, width=4, channels=1)  # values <= 256: exact in bfloat16
    layer = RandomCropFlip(padding=1, seed=0, dtype="mixed_bfloat16")
    y = layer(ops.cast(x, "bfloat16"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    _match_crops(x, _numpy(ops.cast(y, "float32")), padding=1)


def test_config_round_trip():
    layer = RandomCropFlip(padding=3, flip=False, fill_mode="reflect", seed=5, name="aug")
    config = layer.get_config()
    assert {k: config[k] for k in ("padding", "flip", "fill_mode", "seed")} == {
        "padding": 3, "flip": False, "fill_mode": "reflect", "seed": 5
    }
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, RandomCropFlip) and clone.get_config() == config


@pytest.mark.parametrize(
    "kwargs",
    [{"padding": -1}, {"padding": 1.5}, {"padding": True}, {"flip": 1}, {"fill_mode": "wrap"}, {"seed": -3}],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandomCropFlip(**kwargs)


def test_reflect_needs_padding_smaller_than_image():
    with pytest.raises(ValueError, match="reflect"):
        RandomCropFlip(padding=4, fill_mode="reflect")(np.zeros((1, 4, 8, 1), "float32"))


def test_supports_jit():
    # keras.layers.RandomCrop sets supports_jit = False; ours must not.
    assert RandomCropFlip().supports_jit and ImageNormalization().supports_jit


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit test")
def test_compiles_inside_jax_jit():
    import jax

    x = _images(batch=32)
    layer = RandomCropFlip(padding=2, seed=0)
    layer.build(x.shape)

    @jax.jit
    def augment(state, images):
        return layer.stateless_call([], state, images, training=True)

    state = [v.value for v in layer.non_trainable_variables]
    y1, state = augment(state, x)
    y2, state = augment(state, x)
    _match_crops(x, np.asarray(y1), padding=2)
    _match_crops(x, np.asarray(y2), padding=2)
    assert not np.array_equal(np.asarray(y1), np.asarray(y2))  # seed state threads through
    lowered = jax.jit(lambda s, i: layer.stateless_call([], s, i, training=True)).lower(state, x)
    assert "gather" in lowered.as_text()


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function(jit_compile=True) test")
def test_compiles_inside_tf_function_with_xla():
    import tensorflow as tf

    x = _images(batch=32)
    layer = RandomCropFlip(padding=2, seed=0)

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec((None, 8, 6, 2), tf.float32)])
    def augment(images):
        return layer(images, training=True)

    y1, y2 = augment(tf.constant(x)).numpy(), augment(tf.constant(x)).numpy()
    _match_crops(x, y1, padding=2)
    _match_crops(x, y2, padding=2)
    assert not np.array_equal(y1, y2)
    hlo = augment.experimental_get_compiler_ir(tf.constant(x))(stage="hlo")
    assert "gather" in hlo
