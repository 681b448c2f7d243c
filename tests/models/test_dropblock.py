"""DropBlock2D: the blocks' shape and placement, the drop rate against its closed form, the rescaling,
the identity at inference, seeding, serialization, XLA, and error messages."""

import keras
import numpy as np
import pytest

from keras_softmax.models import DropBlock2D
from keras_softmax.models.dropblock import block_seed_probability

from .jit_calls import twice_under_jax_jit

BACKEND = keras.backend.backend()


def _ones(batch=64, height=8, width=8, channels=4):
    return np.ones((batch, height, width, channels), "float32")


def _dropped(layer, x):
    """The boolean map of dropped activations (the input is all ones, so exactly the zeros)."""
    return keras.ops.convert_to_numpy(layer(x, training=True)) == 0


def _coverage(height, width, b):
    """How many valid block starts cover each position: an independent count, position by position."""
    n = np.zeros((height, width), int)
    for i in range(height - b + 1):
        for j in range(width - b + 1):
            n[i:i + b, j:j + b] += 1
    return n


def test_the_seed_probability_is_the_papers_gamma():
    # gamma = rate / b^2 * HW / ((H-b+1)(W-b+1)); b = 1 is dropout's rate, a map one block large is the rate.
    assert block_seed_probability(0.1, 3, 8, 8) == pytest.approx(0.1 / 9 * 64 / 36)
    assert block_seed_probability(0.2, 1, 5, 7) == pytest.approx(0.2)
    assert block_seed_probability(0.3, 2, 2, 2) == pytest.approx(0.3)
    assert block_seed_probability(0.3, 5, 2, 2) == pytest.approx(0.3)  # the block is clipped to the map
    assert block_seed_probability(0.1, 2, 6, 9) == pytest.approx(0.1 / 4 * 54 / 40)


def test_identity_at_inference_and_at_rate_zero():
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    layer = DropBlock2D(0.5, 3, seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(DropBlock2D(0.0, 3, seed=0)(x, training=True)), x)


@pytest.mark.parametrize("b", [2, 3])
def test_the_dropped_set_is_a_union_of_whole_blocks_starting_inside_the_map(b):
    # Morphological check: every dropped position lies in some b x b square, with its top-left corner in
    # the valid region, that is dropped entirely; so the opening of the dropped set is the set itself.
    dropped = _dropped(DropBlock2D(0.3, b, seed=1), _ones(batch=16, height=9, width=7, channels=3))
    assert 0.05 < dropped.mean() < 0.6
    height, width = dropped.shape[1:3]
    for image in range(dropped.shape[0]):
        for channel in range(dropped.shape[3]):
            d = dropped[image, :, :, channel]
            rebuilt = np.zeros_like(d)
            for i in range(height - b + 1):
                for j in range(width - b + 1):
                    if d[i:i + b, j:j + b].all():
                        rebuilt[i:i + b, j:j + b] = True
            np.testing.assert_array_equal(rebuilt, d)


def test_the_kept_activations_are_rescaled_to_keep_the_mean():
    x = np.random.default_rng(2).uniform(0.5, 1.5, size=(32, 8, 8, 4)).astype("float32")
    layer = DropBlock2D(0.25, 3, seed=3)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] * kept.size / kept.sum(), rtol=1e-5)


@pytest.mark.parametrize("shape, b, rate", [((7, 6), 3, 0.2), ((8, 8), 2, 0.1), ((5, 5), 1, 0.3)])
def test_the_drop_rate_matches_its_closed_form(shape, b, rate):
    # A position covered by n valid starts is kept with probability (1 - gamma)^n, so the expected share
    # dropped is 1 - mean((1 - gamma)^n) (a little under `rate`, where blocks overlap; `rate` when b = 1).
    height, width = shape
    x = _ones(batch=512, height=height, width=width, channels=8)
    gamma = block_seed_probability(rate, b, height, width)
    expected = 1.0 - np.mean((1.0 - gamma) ** _coverage(height, width, b))
    observed = np.mean(_dropped(DropBlock2D(rate, b, seed=4), x))
    # Positions of one map are dependent; the maps (512 x 8) are independent: bound by a map's variance.
    maps = _dropped(DropBlock2D(rate, b, seed=5), x).mean(axis=(1, 2)).ravel()
    assert abs(observed - expected) < 5 * maps.std() / np.sqrt(maps.size) + 1e-3
    if b == 1:
        assert expected == pytest.approx(rate)
    else:
        assert expected < rate


def test_a_map_no_larger_than_a_block_loses_whole_channels():
    dropped = _dropped(DropBlock2D(0.3, 5, seed=6), _ones(batch=256, height=2, width=2, channels=16))
    per_map = dropped.reshape(256, 4, 16)
    assert np.all(per_map.all(axis=1) | ~per_map.any(axis=1))  # each (image, channel) map: all or nothing
    assert abs(per_map.all(axis=1).mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / (256 * 16))


def test_the_seed_makes_the_blocks_reproducible():
    x = _ones(batch=8)
    first = _dropped(DropBlock2D(0.2, 2, seed=7), x)
    np.testing.assert_array_equal(_dropped(DropBlock2D(0.2, 2, seed=7), x), first)
    assert not np.array_equal(_dropped(DropBlock2D(0.2, 2, seed=8), x), first)
    layer = DropBlock2D(0.2, 2, seed=7)
    assert not np.array_equal(_dropped(layer, x), _dropped(layer, x))  # the generator advances


def test_a_model_with_it_saves_and_loads(tmp_path):
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, DropBlock2D(0.15, 3, seed=9, name="db")(inputs))
    model.save(tmp_path / "m.keras")
    layer = keras.saving.load_model(tmp_path / "m.keras").get_layer("db")
    assert isinstance(layer, DropBlock2D)
    assert (layer.rate, layer.block_size, layer.seed) == (0.15, 3, 9)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"rate": 1.0}, "rate"), ({"rate": -0.1}, "rate"), ({"rate": True}, "rate"), ({"rate": "0.1"}, "rate"),
     ({"block_size": 0}, "block_size"), ({"block_size": 2.5}, "block_size"), ({"block_size": True}, "block_size"),
     ({"seed": -1}, "seed")],
)
def test_invalid_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DropBlock2D(**kwargs)


def test_it_needs_an_image_shaped_input():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        DropBlock2D(0.1)(np.ones((2, 8, 3), "float32"), training=True)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit test")
def test_compiles_inside_jax_jit():
    y1, y2 = twice_under_jax_jit(DropBlock2D(0.3, 2, seed=0), _ones(batch=8))
    assert 0 < np.mean(y1 == 0) < 1
    assert not np.array_equal(y1, y2)  # the seed state threads through
