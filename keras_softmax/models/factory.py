"""The model factory: uint8 images -> normalisation -> augmentation -> backbone -> logits -> head.

:func:`build_model` is the one entry point that builds a classifier; :func:`compile_model` compiles
it with the loss that matches its head (GUIDE §3) and a top-1 accuracy metric.
"""

from __future__ import annotations

import numbers

import keras

from keras_softmax.heads.registry import HEADS, HeadWithLoss, complete_params, get_head, head_of_layer, head_spec
from keras_softmax.heads.base import Head
from keras_softmax.metrics import accuracy_metric, nll_metric
from keras_softmax.models.augment import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    ImageNormalization,
    RandomCropFlip,
)
from keras_softmax.models.resnet12 import DEFAULT_WIDTHS, resnet12
from keras_softmax.models.sparse_rows import functional_model

#: Backbone name -> functional builder ``f(inputs, widths) -> feature map``; each halves the
#: image size this many times.
BACKBONES = {"resnet12": resnet12}
_DOWNSAMPLING = {"resnet12": 16}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_widths(widths):
    try:
        values = tuple(widths)
    except TypeError:
        raise ValueError(f"widths must be a sequence of 4 positive integers (got {widths!r})") from None
    if len(values) != 4 or not all(_is_int(w) and w > 0 for w in values):
        raise ValueError(f"widths must be a sequence of 4 positive integers (got {widths!r})")
    return tuple(int(w) for w in values)


def _check_input_shape(input_shape, min_size):
    try:
        values = tuple(input_shape)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(_is_int(v) and v > 0 for v in values):
        raise ValueError(
            f"input_shape must be (height, width, channels), positive integers (got {input_shape!r})"
        )
    if values[0] < min_size or values[1] < min_size:
        raise ValueError(
            f"input_shape height and width must be at least {min_size} (got {input_shape!r})"
        )
    return tuple(int(v) for v in values)


def _resolve_head(head, head_params, num_classes=None):
    if isinstance(head, HeadWithLoss):
        if head_params:
            raise ValueError("head_params applies only when head is a registry name")
        return head
    if isinstance(head, str):
        head_spec(head)  # an unknown name: ValueError listing the names
        return get_head(head, **complete_params(head, head_params, num_classes))
    raise ValueError(
        f"head must be a registry name or a HeadWithLoss (got {head!r}); names: {', '.join(HEADS)}"
    )


def build_model(
    head="log_softmax",
    num_classes=100,
    backbone="resnet12",
    widths=DEFAULT_WIDTHS,
    head_params=None,
    input_shape=(32, 32, 3),
    augment=True,
    crop_padding=4,
    flip=True,
    dropout=0.0,
    drop_block=0.0,
    drop_block_size=2,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    name=None,
    seed=None,
) -> keras.Model:
    """Build a classifier: uint8 images in, the head's distribution over ``num_classes`` out.

    Layers, in order: ``images`` (uint8 input) -> ``normalize`` (:class:`ImageNormalization`) ->
    ``augment`` (:class:`RandomCropFlip`, active only in training; if ``augment``) -> the backbone
    (``stage1_conv1`` ...; with ``drop_block > 0`` its dropout and DropBlock layers) -> ``avg_pool``
    -> ``dropout`` (if ``dropout > 0``) -> ``logits`` (float32 Dense with ``head.num_logits(num_classes)``
    units) -> the head layer (float32).
    A head that owns its projection (``adaptive``, ``sampled``) takes the pooled features itself: no
    ``logits`` layer (its ``num_classes`` parameter is filled in from ``num_classes``). With a head
    that reads only some rows of its class weights per step (``sampled``) the model is a
    :class:`keras_softmax.models.SparseRowsModel`, which updates only those rows on JAX.
    Everything is serializable: ``model.save("m.keras")`` / ``keras.saving.load_model`` round-trip.

    Args:
        head: a registry name (see ``keras_softmax.list_heads()``) or a ``HeadWithLoss``.
        num_classes: number of classes (>= 2).
        backbone: backbone name; one of :data:`BACKBONES`.
        widths: the four stage widths of the backbone.
        head_params: keyword arguments of the head, when ``head`` is a name.
        input_shape: ``(height, width, channels)`` of the images.
        augment: include the random crop / flip layer.
        crop_padding: padding (pixels) of the random crop; 0 disables cropping.
        flip: random horizontal flips.
        dropout: dropout rate in [0, 1) before the logits layer; 0 adds no layer.
        drop_block: rate in [0, 1) of the backbone's own regularisation (ResNet-12: dropout after
            stages 1-2, DropBlock after stages 3-4; :func:`keras_softmax.models.resnet12`); 0: none.
        drop_block_size: the DropBlock's block side (int >= 1).
        mean: per-channel mean of the images on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.
        name: model name; default ``f"{backbone}_{head_name}"``, e.g. ``"resnet12_log_softmax"``.
        seed: int seed of the augmentation and dropout noise (``None``: random).

    Returns:
        An uncompiled ``keras.Model``; see :func:`compile_model`.

    Raises:
        ValueError: for an unknown head, backbone or head parameter, or an invalid value.

    Example:
        >>> model = build_model("log_gumbel", num_classes=100, head_params={"temperature": 3.0})
        >>> model = compile_model(model, "log_gumbel", optimizer="adamw")
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (got {num_classes!r})")
    head = _resolve_head(head, head_params, int(num_classes))
    widths = _check_widths(widths)
    input_shape = _check_input_shape(input_shape, _DOWNSAMPLING[backbone])
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1) (got {dropout!r})")
    if isinstance(drop_block, bool) or not isinstance(drop_block, numbers.Real) or not 0.0 <= drop_block < 1.0:
        raise ValueError(f"drop_block must be a number in [0, 1) (got {drop_block!r})")
    if not _is_int(drop_block_size) or drop_block_size < 1:
        raise ValueError(f"drop_block_size must be an integer >= 1 (got {drop_block_size!r})")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None (got {seed!r})")
    try:
        num_logits = head.num_logits(int(num_classes))
    except ValueError as error:
        raise ValueError(
            f"num_classes={num_classes} does not fit head {head.name!r}: {error}"
        ) from error

    images = keras.Input(input_shape, dtype="uint8", name="images")
    x = ImageNormalization(mean=mean, std=std, name="normalize")(images)
    if augment:
        x = RandomCropFlip(padding=crop_padding, flip=flip, seed=seed, name="augment")(x)
    x = BACKBONES[backbone](x, widths, drop_rate=float(drop_block), drop_block_size=int(drop_block_size), seed=seed)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_last", name="avg_pool")(x)
    if dropout > 0:
        dropout_seed = None if seed is None else seed + 1
        x = keras.layers.Dropout(float(dropout), seed=dropout_seed, name="dropout")(x)
    if head.owns_projection:
        outputs = head.layer(x)
    else:
        logits = keras.layers.Dense(num_logits, dtype="float32", name="logits")(x)
        outputs = head.layer(logits)
    return functional_model(images, outputs, head.layer, name=name or f"{backbone}_{head.name}")


def _head_of(model):
    """The registry spec of the head layer that produces ``model``'s output."""
    spec = head_of_layer(model.layers[-1])
    if spec is None:
        raise ValueError(f"cannot tell the head of model {model.name!r}: pass head= explicitly")
    return spec


def compile_model(
    model, head=None, optimizer="sgd", label_smoothing=0.0, jit_compile="auto", metrics=None
):
    """Compile ``model`` with the loss that matches its head, top-1 accuracy and the unsmoothed NLL.

    Not needed after ``keras.saving.load_model``: a reloaded model trains on with its own compiled loss.

    Args:
        model: a model from :func:`build_model` (or any model ending in a head layer).
        head: a ``HeadWithLoss`` or a registry name; ``None`` reads it off the model's last layer.
        optimizer: anything ``model.compile`` accepts (name or instance).
        label_smoothing: eps in [0, 1) for the loss.
        jit_compile: passed to ``model.compile`` (``"auto"``, True or False).
        metrics: extra metrics, added after ``SparseCategoricalAccuracy(name="accuracy")`` and
            :func:`keras_softmax.metrics.nll_metric` (``nll``: ``-log max(p_y, 1e-12)``, the same
            quantity for every head, unlike the loss)
            (e.g. ``keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy")``).

    Returns:
        ``model``, compiled.

    Example:
        >>> model = build_model("softmax")
        >>> model = compile_model(model, "softmax", optimizer="adamw", label_smoothing=0.1)
    """
    if isinstance(head, HeadWithLoss):
        loss, output_kind = head.make_loss(label_smoothing), head.output_kind
    else:
        spec = _head_of(model) if head is None else head_spec(head)
        loss, output_kind = spec.loss_class(label_smoothing=label_smoothing), spec.output_kind
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    last = model.layers[-1]
    if isinstance(last, Head):  # what the model outputs is its last layer's
        output_kind = last.output_kind
    if isinstance(last, Head) and last.owns_projection:
        # In training such a head outputs its features, not class scores: this metric reports NaN
        # there (and exact accuracy in evaluation) instead of a meaningless number.
        accuracy = accuracy_metric()
    all_metrics = [accuracy, nll_metric(output_kind), *(metrics or [])]
    model.compile(optimizer=optimizer, loss=loss, metrics=all_metrics, jit_compile=jit_compile)
    return model
