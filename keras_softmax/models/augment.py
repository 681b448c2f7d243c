"""In-model input preprocessing: uint8 -> normalised float, and XLA-friendly augmentation.

Both layers use only ``keras.ops`` / ``keras.random``, so a model that contains them keeps
``jit_compile=True`` on every backend. (``keras.layers.RandomCrop`` and friends set
``supports_jit = False``, and a model holding one silently falls back to ``jit_compile=False``: on
the JAX backend that runs training op by op, about a hundred times slower; GUIDE §4.)
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops

#: Per-channel (R, G, B) mean of the CIFAR-100 training images, pixel values scaled to [0, 1].
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
#: Per-channel (R, G, B) standard deviation of the CIFAR-100 training images, scaled to [0, 1].
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)

_FILL_MODES = ("constant", "reflect")


def _channel_values(name, values, positive):
    """``values`` (a number or a sequence of numbers) as a tuple of finite floats."""
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a sequence of numbers (got {values!r})") from None
    if not out or not all(np.isfinite(out)):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers (got {values!r})")
    if positive and min(out) <= 0:
        raise ValueError(f"{name} must be > 0 for every channel (got {values!r})")
    return out


@keras.saving.register_keras_serializable(package="keras_softmax")
class ImageNormalization(keras.layers.Layer):
    """Cast images to float and normalise each channel: ``y = (x / 255 - mean) / std``.

    The arithmetic is done in float32 whatever the input dtype; the result is cast to the layer's
    compute dtype (bfloat16 / float16 under a mixed dtype policy). ``mean`` and ``std`` are on the
    [0, 1] scale (pixel / 255), one value per channel, or a single value for all channels.

    Args:
        mean: per-channel mean, default :data:`CIFAR100_MEAN`.
        std: per-channel standard deviation (> 0), default :data:`CIFAR100_STD`.

    Call arguments:
        inputs: images of shape ``(batch, height, width, channels)``, any numeric dtype, in [0, 255].

    Returns:
        The normalised images, same shape, in the layer's compute dtype.

    Example:
        >>> layer = ImageNormalization()
        >>> y = layer(np.zeros((1, 32, 32, 3), "uint8"))   # (0 - mean) / std per channel
    """

    def __init__(self, mean=CIFAR100_MEAN, std=CIFAR100_STD, **kwargs):
        super().__init__(**kwargs)
        self.mean = _channel_values("mean", mean, positive=False)
        self.std = _channel_values("std", std, positive=True)
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(
                "mean and std must have the same number of channels "
                f"(got {len(self.mean)} and {len(self.std)})"
            )

    def build(self, input_shape):
        channels = input_shape[-1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if channels is not None and len(values) not in (1, channels):
                raise ValueError(
                    f"ImageNormalization: {name} has {len(values)} values but the images have "
                    f"{channels} channels"
                )
        # y = x * scale + offset, with scale = 1 / (255 std) and offset = -mean / std.
        channels = channels or max(len(self.mean), len(self.std))
        mean = np.broadcast_to(np.asarray(self.mean, "float64"), (channels,))
        std = np.broadcast_to(np.asarray(self.std, "float64"), (channels,))
        self._scale = (1.0 / (255.0 * std)).astype("float32")
        self._offset = (-mean / std).astype("float32")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        x = x * ops.convert_to_tensor(self._scale) + ops.convert_to_tensor(self._offset)
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean), "std": list(self.std)}


@keras.saving.register_keras_serializable(package="keras_softmax")
class RandomCropFlip(keras.layers.Layer):
    """Random pad-and-crop and horizontal flip, written with gathers so that it compiles under XLA.

    In training (``training=True``) each image is padded by ``padding`` pixels on every side, a
    window of the original size is cut out at a random offset ``(dy, dx)``, each drawn uniformly
    from ``[0, 2 * padding]``, and (if ``flip``) the window is mirrored left-right with probability
    0.5. Offsets and flips are independent per image. At inference the layer is the identity.

    Padding values: ``fill_mode="constant"`` pads with zeros of the layer's input. Placed after
    :class:`ImageNormalization`, as in :func:`keras_softmax.models.build_model`, a zero is the
    dataset's mean colour. ``fill_mode="reflect"`` mirrors the image at its border (without
    repeating the edge pixel, like ``numpy.pad(mode="reflect")``) and needs ``padding`` smaller
    than the height and width.

    How it stays XLA-friendly: no padded copy is built and no python-side randomness is used. The
    random numbers come from a ``keras.random.SeedGenerator`` (a layer variable, so a compiled
    training step advances it), and the crop and flip are two ``take_along_axis`` gathers, over
    rows then columns, whose index grids (``offset - padding + arange(size)``, reversed for a
    flipped image) have static shapes. Out-of-image indices are clipped and their pixels zeroed
    (``constant``) or reflected back into the image (``reflect``). The result is exact: every
    output image is a crop of the padded input, bit for bit.

    Args:
        padding: pixels added on each side before cropping (int >= 0); 0 disables cropping.
        flip: whether to flip horizontally with probability 0.5.
        fill_mode: ``"constant"`` (zeros) or ``"reflect"``.
        seed: int seed of the layer's ``SeedGenerator`` (``None``: a random seed, reproducible
            under ``keras.utils.set_random_seed``).

    Call arguments:
        inputs: images of shape ``(batch, height, width, channels)``; height and width must be static.
        training: augment when True; identity otherwise.

    Returns:
        Images of the same shape and dtype.

    Example:
        >>> layer = RandomCropFlip(padding=4, seed=0)
        >>> augmented = layer(images, training=True)
    """

    def __init__(self, padding=4, flip=True, fill_mode="constant", seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"padding must be an integer >= 0 (got {padding!r})")
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be True or False (got {flip!r})")
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"fill_mode must be one of {_FILL_MODES} (got {fill_mode!r})")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer or None (got {seed!r})")
        self.padding = int(padding)
        self.flip = flip
        self.fill_mode = fill_mode
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"RandomCropFlip expects (batch, height, width, channels) images, got {input_shape}"
            )
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(f"RandomCropFlip needs a static height and width, got {input_shape}")
        if self.fill_mode == "reflect" and self.padding >= min(height, width):
            raise ValueError(
                f"fill_mode='reflect' needs padding < height and width (got padding={self.padding} "
                f"for {height}x{width} images)"
            )

    def call(self, inputs, training=None):
        if not training or (self.padding == 0 and not self.flip):
            return inputs
        height, width = inputs.shape[1], inputs.shape[2]
        p = self.padding
        batch = ops.shape(inputs)[0]
        # Three uniforms per image: row offset, column offset, flip.
        u = keras.random.uniform((batch, 3), seed=self.seed_generator, dtype="float32")
        offsets = ops.cast(ops.floor(u[:, :2] * float(2 * p + 1)), "int32")
        offsets = ops.clip(offsets, 0, 2 * p) - p  # (batch, 2), each in [-p, p]

        rows = ops.arange(height, dtype="int32")[None, :] + offsets[:, :1]  # (batch, height)
        cols = ops.arange(width, dtype="int32")[None, :]
        if self.flip:
            flipped = u[:, 2:] < 0.5  # (batch, 1)
            cols = ops.where(flipped, ops.flip(cols, axis=-1), cols)
        cols = cols + offsets[:, 1:]  # (batch, width)

        rows, row_ok = self._source_index(rows, height)
        cols, col_ok = self._source_index(cols, width)
        x = ops.take_along_axis(inputs, rows[:, :, None, None], axis=1)
        x = ops.take_along_axis(x, cols[:, None, :, None], axis=2)
        if row_ok is not None:
            inside = ops.logical_and(row_ok[:, :, None, None], col_ok[:, None, :, None])
            x = ops.where(inside, x, ops.zeros_like(x))
        return x

    def _source_index(self, index, size):
        """Map indices into the padded image to indices into the image, and a mask of valid ones."""
        if self.padding == 0:
            return index, None
        if self.fill_mode == "reflect":
            index = ops.abs(index)
            return ops.where(index > size - 1, 2 * (size - 1) - index, index), None
        inside = ops.logical_and(index >= 0, index < size)
        return ops.clip(index, 0, size - 1), inside

    def get_config(self):
        return {
            **super().get_config(),
            "padding": self.padding,
            "flip": self.flip,
            "fill_mode": self.fill_mode,
            "seed": self.seed,
        }
