"""ImageNormalization and RandomCropFlip: exact numpy references, randomness, serialization, XLA."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_softmax.models import CIFAR100_MEAN, CIFAR100_STD, ImageNormalization, RandomCropFlip

from .jit_calls import twice_under_jax_jit

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
    y1, y2 = twice_under_jax_jit(layer, x)
    _match_crops(x, y1, padding=2)
    _match_crops(x, y2, padding=2)
    assert not np.array_equal(y1, y2)  # seed state threads through
    state = [v.value for v in layer.non_trainable_variables]
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


# --- TrivialAugment and random erasing ----------------------------------------------------------

from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from keras_softmax.models.augment import (  # noqa: E402
    TRIVIAL_OPS,
    TRIVIAL_RANGES,
    random_erasing,
    trivial_augment,
)


def _uint8_images(batch=6, height=8, width=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def _draws(op, magnitude, negative=False, batch=6):
    """Uniforms that select ``op`` with ``magnitude`` (and the sign) for every image."""
    k = TRIVIAL_OPS.index(op)
    u = np.empty((batch, 3), "float32")
    u[:, 0] = (k + 0.5) / len(TRIVIAL_OPS)
    u[:, 1] = magnitude
    u[:, 2] = 0.25 if negative else 0.75
    return u


def _augment(images_uint8, op, magnitude, negative=False, policy="trivial", fill=0.0):
    x = images_uint8.astype("float32") / 255.0
    out = trivial_augment(x, _draws(op, magnitude, negative, len(x)), policy, fill=fill)
    return _numpy(out) * 255.0


def _pil(images_uint8, transform):
    return np.stack([np.asarray(transform(Image.fromarray(im)), "float32") for im in images_uint8])


@pytest.mark.parametrize(
    "op, enhancer",
    [("brightness", ImageEnhance.Brightness), ("color", ImageEnhance.Color),
     ("contrast", ImageEnhance.Contrast), ("sharpness", ImageEnhance.Sharpness)],
)
@pytest.mark.parametrize("magnitude, negative", [(0.5, False), (0.8, True), (1.0, False)])
def test_enhancements_match_pil(op, enhancer, magnitude, negative):
    """Each enhancement is PIL's ImageEnhance at factor 1 ± m·0.9 (PIL rounds to uint8 and computes
    luma and the contrast mean in integers: within 2.5 grey levels)."""
    images = _uint8_images()
    factor = 1.0 + (-magnitude if negative else magnitude) * TRIVIAL_RANGES["trivial"]["enhance"]
    expected = _pil(images, lambda im: enhancer(im).enhance(factor))
    np.testing.assert_allclose(_augment(images, op, magnitude, negative), expected, atol=2.5)


@pytest.mark.parametrize("magnitude, bits", [(0.0, 8), (0.5, 6), (0.99, 4)])
def test_posterize_matches_pil(magnitude, bits):
    images = _uint8_images()
    expected = _pil(images, lambda im: ImageOps.posterize(im, bits))
    np.testing.assert_allclose(_augment(images, "posterize", magnitude), expected, atol=1e-3)


def test_solarize_and_autocontrast_match_pil():
    images = _uint8_images()
    # Threshold 255 (1 - 0.5) = 127.5: pixels >= 128 invert, as PIL's solarize(threshold=128).
    np.testing.assert_allclose(_augment(images, "solarize", 0.5),
                               _pil(images, lambda im: ImageOps.solarize(im, 128)), atol=1e-3)
    low_contrast = (images // 4 + 60).astype(np.uint8)
    low_contrast[0, ..., 1] = 77  # a constant channel stays as it is
    np.testing.assert_allclose(_augment(low_contrast, "autocontrast", 0.3),
                               _pil(low_contrast, ImageOps.autocontrast), atol=1.0)


def test_identity_and_clipping():
    images = _uint8_images()
    np.testing.assert_allclose(_augment(images, "identity", 0.9), images.astype("float32"), atol=1e-3)
    brightened = _augment(images, "brightness", 1.0, policy="trivial_wide")  # factor 1.99
    assert brightened.max() <= 255.0 + 1e-3 and brightened.min() >= 0.0


@pytest.mark.parametrize("negative, shift", [(False, 2), (True, -2)])
def test_translate_moves_whole_pixels_and_fills(negative, shift):
    """trivial_wide translates by up to the image size: m = 0.25 is 2 px of 8."""
    images = _uint8_images()
    fill = (0.25, 0.5, 0.75)
    out = _augment(images, "translate_x", 0.25, negative, policy="trivial_wide", fill=fill)
    expected = np.empty_like(images, dtype="float32")
    expected[:] = np.asarray(fill, "float32") * 255.0
    if shift > 0:
        expected[:, :, shift:] = images[:, :, :-shift]
    else:
        expected[:, :, :shift] = images[:, :, -shift:]
    np.testing.assert_allclose(out, expected, atol=1e-3)
    out_y = _augment(images, "translate_y", 0.25, negative, policy="trivial_wide", fill=fill)
    np.testing.assert_allclose(out_y, np.swapaxes(
        _augment(np.swapaxes(images, 1, 2), "translate_x", 0.25, negative, policy="trivial_wide", fill=fill),
        1, 2), atol=1e-3)


def test_rotate_by_ninety_degrees_is_rot90():
    """trivial_wide rotates by up to 135 degrees: m = 2/3 is 90 degrees, a lossless quarter turn."""
    images = _uint8_images()
    turned = {_augment(images, "rotate", 2.0 / 3.0, negative, policy="trivial_wide").tobytes()
              for negative in (False, True)}
    expected = {np.rot90(images, k, axes=(1, 2)).astype("float32").tobytes() for k in (1, 3)}
    assert turned == expected


def test_shear_matches_a_pixel_loop():
    images = _uint8_images(height=8, width=10)
    s = 0.6 * TRIVIAL_RANGES["trivial"]["shear"]
    out = _augment(images, "shear_x", 0.6)
    expected = np.zeros_like(images, dtype="float32")
    cy, cx = 3.5, 4.5
    for y in range(8):
        for x in range(10):
            sx = int(np.round(x - cx + s * (y - cy) + cx))
            if 0 <= sx < 10:
                expected[:, y, x] = images[:, y, sx]
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_every_operation_is_chosen_uniformly():
    x = np.full((4000, 4, 4, 3), 0.5, "float32")
    u = np.random.default_rng(0).random((4000, 3)).astype("float32")
    ops_chosen = np.floor(u[:, 0] * len(TRIVIAL_OPS)).astype(int)
    counts = np.bincount(ops_chosen, minlength=len(TRIVIAL_OPS))
    assert counts.min() > 4000 / len(TRIVIAL_OPS) * 0.8
    out = _numpy(trivial_augment(x, u, "trivial"))
    assert out.shape == x.shape and np.isfinite(out).all()
    changed = np.abs(out - x).max(axis=(1, 2, 3)) > 1e-6
    # Brightness and solarize change a grey image whatever their magnitude > 0; identity never does.
    assert not changed[ops_chosen == 0].any()
    assert changed[ops_chosen == TRIVIAL_OPS.index("brightness")].mean() > 0.95


def _erasing_reference(height, width, u, probability):
    """numpy, float64: the box of each image (or None)."""
    boxes = []
    for a, s, r, t, l in u.astype("float64"):
        if a >= probability:
            boxes.append(None)
            continue
        area = (0.02 + s * (0.33 - 0.02)) * height * width
        ratio = np.exp(np.log(0.3) + r * (np.log(3.3) - np.log(0.3)))
        h = int(np.clip(np.round(np.sqrt(area * ratio)), 1, height))
        w = int(np.clip(np.round(np.sqrt(area / ratio)), 1, width))
        top, left = min(int(np.floor(t * (height - h + 1))), height - h), min(int(np.floor(l * (width - w + 1))), width - w)
        boxes.append((top, left, h, w))
    return boxes


def test_random_erasing_matches_a_numpy_reference():
    x = _images(batch=300, height=12, width=10, channels=3)
    u = np.random.default_rng(1).random((300, 5)).astype("float32")
    out = _numpy(random_erasing(x, u, 0.5, value=-1.0))
    boxes = _erasing_reference(12, 10, u, 0.5)
    for image, original, box in zip(out, x, boxes):
        expected = original.copy()
        if box is not None:
            top, left, h, w = box
            expected[top:top + h, left:left + w] = -1.0
        np.testing.assert_array_equal(image, expected)
    erased = np.array([b is not None for b in boxes])
    assert 0.4 < erased.mean() < 0.6
    np.testing.assert_array_equal(_numpy(random_erasing(x, u, 0.0)), x)


def test_layer_policy_draws_after_the_crop_and_round_trips():
    """The layer un-normalises with its mean and std, augments and normalises again: most images
    change, every pixel is back in [0, 1] on the pixel scale; identity at inference; the config
    (policy, erasing, mean, std) round-trips."""
    keras.utils.set_random_seed(0)
    images = _uint8_images(batch=64, height=8, width=8)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    x = (images / 255.0 - np.asarray(mean)) / np.asarray(std)
    x = x.astype("float32")
    plain = RandomCropFlip(padding=0, flip=False, seed=1)
    strong = RandomCropFlip(padding=0, flip=False, seed=1, policy="trivial_wide", erasing=0.5, mean=mean, std=std)
    np.testing.assert_array_equal(_numpy(plain(x, training=True)), x)
    y = _numpy(strong(x, training=True))
    assert y.shape == x.shape and np.isfinite(y).all()
    pixels = y * np.asarray(std) + np.asarray(mean)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # clipped in pixel space
    assert (np.abs(y - x).max(axis=(1, 2, 3)) > 1e-4).mean() > 0.5
    np.testing.assert_array_equal(_numpy(strong(x, training=False)), x)
    config = strong.get_config()
    assert config["policy"] == "trivial_wide" and config["erasing"] == 0.5
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strong))
    assert clone.get_config() == config


def test_set_extra_augmentation_validates():
    layer = RandomCropFlip()
    for kwargs in ({"policy": "auto"}, {"erasing": 1.5}, {"erasing": True}, {"std": 0.0}):
        with pytest.raises(ValueError):
            layer.set_extra_augmentation(**kwargs)
    assert layer.policy == "none" and layer.erasing == 0.0


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit test")
def test_policy_compiles_inside_jax_jit():
    import jax

    x = _images(batch=8, height=8, width=8, channels=3) / 400.0
    layer = RandomCropFlip(padding=2, seed=0, policy="trivial", erasing=0.5)
    layer.build(x.shape)
    state = [v.value for v in layer.non_trainable_variables]
    y, state = jax.jit(lambda s, i: layer.stateless_call([], s, i, training=True))(state, x)
    assert np.isfinite(np.asarray(y)).all()
