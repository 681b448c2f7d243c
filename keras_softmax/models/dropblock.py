"""DropBlock (Ghiasi, Lin & Le 2018): dropout of contiguous square regions of a feature map.

In training, every position (i, j) of the valid region ``[0, H - b] x [0, W - b]`` of every feature
map (one per image and channel) starts a dropped ``b x b`` block with probability

    gamma = rate / b^2 * H W / ((H - b + 1) (W - b + 1)),

the paper's rate, under which about ``rate`` of the activations would be dropped if blocks did not
overlap (they may, so slightly fewer are). A position is kept when no block covers it; the kept
activations are multiplied by (number of activations) / (number kept), counted over the whole batch,
so the layer keeps the mean activation as dropout does. With ``b = 1`` it is dropout with rate
``gamma = rate``. The block size is clipped to the feature map: ``b = min(block_size, H, W)``; a map
no larger than a block loses whole channels (spatial dropout). At inference the layer is the identity.

Only ``keras.ops`` and ``keras.random``: it compiles under XLA on every backend.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

from keras_softmax.ops import check_fraction


def block_seed_probability(rate: float, block_size: int, height: int, width: int) -> float:
    """The paper's gamma for a ``height x width`` map (block size clipped to the map); <= rate."""
    b = min(block_size, height, width)
    return rate / b**2 * height * width / ((height - b + 1) * (width - b + 1))


@keras.saving.register_keras_serializable(package="keras_softmax")
class DropBlock2D(keras.layers.Layer):
    """Drop ``block_size x block_size`` squares of each feature map in training (see the module).

    Args:
        rate: the share of activations to drop, in [0, 1) (0: the identity).
        block_size: side of a dropped square (int >= 1; clipped to the feature map).
        seed: int seed of the layer's ``SeedGenerator`` (``None``: random, reproducible under
            ``keras.utils.set_random_seed``).

    Call arguments:
        inputs: ``(batch, height, width, channels)`` features with static height and width.
        training: drop when True; identity otherwise.

    Example:
        >>> layer = DropBlock2D(rate=0.1, block_size=2, seed=0)
        >>> y = layer(features, training=True)
    """

    def __init__(self, rate=0.1, block_size=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1 (got {block_size!r})")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (got {seed!r})")
        self.rate = check_fraction("rate", rate)
        self.block_size = int(block_size)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                f"DropBlock2D expects (batch, height, width, channels) features with a static height and "
                f"width, got {input_shape}"
            )

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        b = min(self.block_size, height, width)
        gamma = block_seed_probability(self.rate, self.block_size, height, width)
        shape = (ops.shape(inputs)[0], height - b + 1, width - b + 1, channels)
        starts = ops.cast(keras.random.uniform(shape, seed=self.seed_generator, dtype="float32") < gamma, "float32")
        if b > 1:
            # A block started at (i, j) covers rows i..i+b-1 and columns j..j+b-1: pad b-1 zeros on every side
            # and take the b x b maximum, so output (y, x) is 1 where some start lies in [y-b+1, y] x [x-b+1, x].
            padded = ops.pad(starts, [[0, 0], [b - 1, b - 1], [b - 1, b - 1], [0, 0]])
            starts = ops.max_pool(padded, pool_size=b, strides=1, padding="valid", data_format="channels_last")
        keep = 1.0 - starts
        scale = 1.0 / ops.maximum(ops.mean(keep), 1e-6)
        return inputs * ops.cast(keep * scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "block_size": self.block_size, "seed": self.seed}
