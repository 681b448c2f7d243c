"""ResNet-12 backbone (GUIDE §4), as a functional builder.

ResNet-12 (Oreshkin et al. 2018, Lee et al. 2019) is four residual stages; each stage is

    x ─ conv3x3─BN─LReLU ─ conv3x3─BN─LReLU ─ conv3x3─BN ─(+)─ LReLU ─ maxpool 2x2
    └──────────────── conv1x1─BN (shortcut) ─────────────────┘

with LeakyReLU slope 0.1 and bias-free convolutions (the batch norm supplies the shift). Each
stage halves the height and width, so 32x32 images give 2x2x``widths[-1]`` features.

The regularisation of the reference implementations (Lee et al. 2019's MetaOptNet, Tian et al. 2020),
off by default: with ``drop_rate = r > 0`` each stage's pooled output goes through dropout at rate r
(stages 1-2) or DropBlock at rate r with ``drop_block_size`` (stages 3-4; :mod:`.dropblock`).
"""

from __future__ import annotations

import keras

from keras_softmax.models.dropblock import DropBlock2D
from keras_softmax.models.initializers import HostHeNormal
from keras_softmax.ops import check_fraction

#: The default stage widths, as in the original ResNet-12.
DEFAULT_WIDTHS = (64, 160, 320, 640)
#: Negative slope of every LeakyReLU.
LEAKY_SLOPE = 0.1
#: Batch-norm settings of the usual (PyTorch) ResNet-12: a moving average that adapts within a few
#: hundred steps, which matters for short CIFAR runs, and PyTorch's epsilon.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
#: The stages whose output goes through DropBlock when ``drop_rate > 0``; the others get dropout.
DROP_BLOCK_STAGES = (3, 4)


def _conv(filters, kernel_size, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer=HostHeNormal(),
        data_format="channels_last",
        name=name,
    )


def _batch_norm(name):
    return keras.layers.BatchNormalization(
        axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )


def residual_stage(x, filters, name):
    """One ResNet-12 stage: two conv-BN-LeakyReLU, conv-BN, + conv1x1-BN shortcut, LeakyReLU, pool.

    Layer names: ``{name}_conv1..3``, ``{name}_bn1..3``, ``{name}_relu1..2`` on the main path,
    ``{name}_shortcut_conv``, ``{name}_shortcut_bn``, then ``{name}_add``, ``{name}_relu`` and
    ``{name}_pool``.

    Args:
        x: a ``(batch, height, width, channels)`` tensor.
        filters: output channels of the stage.
        name: layer-name prefix, e.g. ``"stage1"``.

    Returns:
        A ``(batch, height // 2, width // 2, filters)`` tensor.
    """
    shortcut = _conv(filters, 1, f"{name}_shortcut_conv")(x)
    shortcut = _batch_norm(f"{name}_shortcut_bn")(shortcut)

    y = x
    for k in (1, 2, 3):
        y = _conv(filters, 3, f"{name}_conv{k}")(y)
        y = _batch_norm(f"{name}_bn{k}")(y)
        if k < 3:  # no activation after the third batch norm, until after the add
            y = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_relu{k}")(y)

    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    y = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_relu")(y)
    pool = keras.layers.MaxPooling2D(pool_size=2, data_format="channels_last", name=f"{name}_pool")
    return pool(y)


def resnet12(inputs, widths=DEFAULT_WIDTHS, drop_rate=0.0, drop_block_size=2, seed=None):
    """Apply a ResNet-12 backbone to ``inputs`` (functional API) and return its feature map.

    The stages are named ``stage1`` .. ``stage4`` (see :func:`residual_stage`). Parameters: a stage
    from ``c_in`` to ``c`` channels has ``9 c_in c + 18 c^2`` (3x3 convs) ``+ c_in c`` (shortcut)
    weights and four batch norms of ``4 c`` values each (``2 c`` trainable).

    Args:
        inputs: a ``(batch, height, width, channels)`` tensor, e.g. normalised images.
            Height and width should be at least 16 (each stage halves them).
        widths: the four stage widths (output channels), default ``(64, 160, 320, 640)``.
        drop_rate: rate in [0, 1) of the dropout after stages 1-2 (``stage{k}_dropout``) and of the
            DropBlock after stages 3-4 (``stage{k}_dropblock``); 0 adds no layer.
        drop_block_size: the DropBlock's block side (2 for 32x32 images, as Tian et al. 2020 for
            CIFAR; 5 for 84x84).
        seed: int seed of the dropout layers (stage k draws from ``seed + 10 + k``; ``None``: random).

    Returns:
        The ``(batch, height // 16, width // 16, widths[-1])`` feature map, before pooling.

    Example:
        >>> images = keras.Input((32, 32, 3))
        >>> features = resnet12(images, widths=(64, 160, 320, 640))   # (None, 2, 2, 640)
    """
    widths = tuple(widths)
    if len(widths) != 4:
        raise ValueError(f"widths must have 4 entries, one per stage (got {widths!r})")
    drop_rate = check_fraction("drop_rate", drop_rate)
    x = inputs
    for index, filters in enumerate(widths, start=1):
        x = residual_stage(x, int(filters), name=f"stage{index}")
        if drop_rate > 0:
            layer_seed = None if seed is None else seed + 10 + index
            if index in DROP_BLOCK_STAGES:
                x = DropBlock2D(drop_rate, drop_block_size, seed=layer_seed, name=f"stage{index}_dropblock")(x)
            else:
                x = keras.layers.Dropout(drop_rate, seed=layer_seed, name=f"stage{index}_dropout")(x)
    return x


def resnet12_num_params(widths=DEFAULT_WIDTHS, in_channels=3):
    """The number of parameters (trainable and batch-norm statistics) of :func:`resnet12`."""
    total, c_in = 0, in_channels
    for c in widths:
        total += 9 * c_in * c + 18 * c * c + c_in * c + 4 * 4 * c
        c_in = c
    return total
