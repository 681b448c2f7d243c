"""In-model input preprocessing: uint8 -> normalised float, and XLA-friendly augmentation.

Both layers use only ``keras.ops`` / ``keras.random``, so a model that contains them keeps
``jit_compile=True`` on every backend. (``keras.layers.RandomCrop`` and friends set
``supports_jit = False``, and a model holding one silently falls back to ``jit_compile=False``: on
the JAX backend that runs training op by op, about a hundred times slower; GUIDE §4.)
"""

from __future__ import annotations

import contextlib
import numbers

import keras
import numpy as np
from keras import ops

from keras_softmax.models.walk import all_layers

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

    Stronger, optional augmentation after the crop and flip, drawn from the same generator (with
    the defaults nothing more is drawn, so the crops and flips are those of a layer without them):
    ``policy="trivial"`` / ``"trivial_wide"`` applies one TrivialAugment operation per image
    (:func:`trivial_augment`: geometric and colour operations on the pixel scale, which the layer
    recovers from its input as ``x * std + mean``), then ``erasing > 0`` erases one random box per
    image with that probability (:func:`random_erasing`, filled with 0: the mean colour after
    :class:`ImageNormalization`). A factory that builds this layer without them can switch them on
    before the model is compiled with :meth:`set_extra_augmentation`.

    Args:
        padding: pixels added on each side before cropping (int >= 0); 0 disables cropping.
        flip: whether to flip horizontally with probability 0.5.
        fill_mode: ``"constant"`` (zeros) or ``"reflect"``.
        seed: int seed of the layer's ``SeedGenerator`` (``None``: a random seed, reproducible
            under ``keras.utils.set_random_seed``).
        policy: one of :data:`AUGMENT_POLICIES` ("none": no extra operation).
        erasing: probability in [0, 1] of random erasing per image (0: off).
        mean, std: per-channel mean and standard deviation (pixel / 255 scale) with which the input
            was normalised, as given to :class:`ImageNormalization` (0 and 1: the input is pixel / 255).

    Call arguments:
        inputs: images of shape ``(batch, height, width, channels)``; height and width must be static.
        training: augment when True; identity otherwise.

    Returns:
        Images of the same shape and dtype.

    Example:
        >>> layer = RandomCropFlip(padding=4, seed=0)
        >>> augmented = layer(images, training=True)
    """

    def __init__(self, padding=4, flip=True, fill_mode="constant", seed=None, policy="none", erasing=0.0,
                 mean=0.0, std=1.0, **kwargs):
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
        self.paused = False  # identity in training too (augmentation_held); not part of the config
        self.set_extra_augmentation(policy=policy, erasing=erasing, mean=mean, std=std)

    def set_extra_augmentation(self, policy="none", erasing=0.0, mean=0.0, std=1.0):
        """Set ``policy``, ``erasing``, ``mean`` and ``std`` (see the class); ``ValueError`` if invalid.

        Takes effect the next time the layer is traced or called (set it before ``model.compile`` /
        ``fit``), and is part of :meth:`get_config`, so a saved model keeps it.
        """
        if policy not in AUGMENT_POLICIES:
            raise ValueError(f"policy must be one of {AUGMENT_POLICIES} (got {policy!r})")
        if (isinstance(erasing, bool) or not isinstance(erasing, numbers.Real) or not np.isfinite(erasing)
                or not 0.0 <= erasing <= 1.0):
            raise ValueError(f"erasing must be a probability in [0, 1] (got {erasing!r})")
        mean = _channel_values("mean", mean, positive=False)
        std = _channel_values("std", std, positive=True)
        self.policy, self.erasing, self.mean, self.std = policy, float(erasing), mean, std

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
        if not training or self.paused:
            return inputs
        x = self._crop_flip(inputs)
        if self.policy != "none":
            batch = ops.shape(x)[0]
            u = keras.random.uniform((batch, 3), seed=self.seed_generator, dtype="float32")
            channels = x.shape[-1]
            mean = np.broadcast_to(np.asarray(self.mean, "float32"), (channels,))
            std = np.broadcast_to(np.asarray(self.std, "float32"), (channels,))
            pixels = ops.cast(x, "float32") * std + mean
            pixels = trivial_augment(pixels, u, self.policy, fill=mean)
            x = ops.cast((pixels - mean) / std, keras.backend.standardize_dtype(x.dtype))
        if self.erasing > 0:
            batch = ops.shape(x)[0]
            u = keras.random.uniform((batch, 5), seed=self.seed_generator, dtype="float32")
            x = random_erasing(x, u, self.erasing)
        return x

    def _crop_flip(self, inputs):
        if self.padding == 0 and not self.flip:
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
            "policy": self.policy,
            "erasing": self.erasing,
            "mean": list(self.mean),
            "std": list(self.std),
        }


#: What :func:`augmentation_held` leaves of each :class:`RandomCropFlip`'s augmentation in training mode.
AUGMENTATION_HOLDS = ("training", "crop_flip", "none")


@contextlib.contextmanager
def augmentation_held(model, keep: str = "none"):
    """Within the block, every :class:`RandomCropFlip` of ``model`` (nested models included) augments
    less in training mode: ``keep = "none"``: not at all (the images as at inference); ``"crop_flip"``:
    the crop and flip only (no TrivialAugment operation, no erasing); ``"training"``: as configured.

    For passes that need the rest of the model in training mode but other images than training's,
    e.g. BatchNorm statistics of test-like images (:mod:`keras_softmax.training.batchnorm`). The change
    takes effect where the layer is next traced or called, so compiled training steps keep theirs; the
    layers are restored on leaving the block, whatever happens in it.
    """
    if keep not in AUGMENTATION_HOLDS:
        raise ValueError(f"keep must be one of {AUGMENTATION_HOLDS} (got {keep!r})")
    layers = [layer for layer in all_layers(model) if isinstance(layer, RandomCropFlip)]
    saved = [(layer.paused, layer.policy, layer.erasing) for layer in layers]
    try:
        for layer in layers:
            if keep == "none":
                layer.paused = True
            elif keep == "crop_flip":
                layer.policy, layer.erasing = "none", 0.0
        yield layers
    finally:
        for layer, (paused, policy, erasing) in zip(layers, saved):
            layer.paused, layer.policy, layer.erasing = paused, policy, erasing


# --- TrivialAugment and random erasing: per-image operations drawn inside the compiled step -------

#: Policies of the extra per-image operation of :class:`RandomCropFlip` (``policy``).
AUGMENT_POLICIES = ("none", "trivial", "trivial_wide")

#: The operations TrivialAugment chooses from, one per image, uniformly (Müller & Hutter 2021; the
#: list of torchvision's ``TrivialAugmentWide`` without ``equalize``, whose per-image histogram has
#: no cheap vectorised form).
TRIVIAL_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
               "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast")

#: Largest magnitude of each operation, per policy. "trivial": torchvision's RandAugment ranges
#: (shear 0.3, translation 150/331 of the image size, rotation 30 degrees, enhancement factors
#: 1 +- 0.9, posterize down to 4 bits); "trivial_wide": TrivialAugmentWide's (shear 0.99, translation
#: up to the image size (32 px on CIFAR), 135 degrees, factors 1 +- 0.99, down to 2 bits). Solarize's
#: threshold goes from 255 down to 0 in both.
TRIVIAL_RANGES = {
    "trivial": {"shear": 0.3, "translate": 150.0 / 331.0, "rotate": 30.0, "enhance": 0.9, "posterize": 4.0},
    "trivial_wide": {"shear": 0.99, "translate": 1.0, "rotate": 135.0, "enhance": 0.99, "posterize": 6.0},
}

#: Random erasing's box: area fraction and aspect ratio (height / width) ranges (Zhong et al. 2020,
#: torchvision's ``RandomErasing`` defaults).
ERASING_SCALE = (0.02, 0.33)
ERASING_RATIO = (0.3, 3.3)

# PIL's ITU-R 601-2 luma (``Image.convert("L")``).
_LUMA = (0.299, 0.587, 0.114)


def _grey(x):
    """Luma of ``(B, H, W, C)`` images in [0, 1] as ``(B, H, W, 1)`` (the image itself if C != 3)."""
    if x.shape[-1] != 3:
        return ops.mean(x, axis=-1, keepdims=True)
    return x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:3] * _LUMA[2]


def _smooth(x):
    """PIL's SMOOTH filter (3x3, weights 1 around a centre of 5, / 13); border pixels unchanged."""
    height, width = x.shape[1], x.shape[2]
    padded = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = 4.0 * x
    for dy in range(3):
        for dx in range(3):
            total = total + padded[:, dy:dy + height, dx:dx + width, :]
    rows = ops.arange(height)[:, None]
    cols = ops.arange(width)[None, :]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return ops.where(interior[None, :, :, None], total / 13.0, x)


def trivial_augment(images, draws, policy="trivial", fill=0.0):
    """Apply one TrivialAugment operation per image, chosen and scaled by ``draws``.

    Operation ``k = floor(draws[:, 0] * len(TRIVIAL_OPS))`` of :data:`TRIVIAL_OPS`, magnitude
    ``m = draws[:, 1]`` in [0, 1) of the policy's largest (:data:`TRIVIAL_RANGES`), and a negative
    sign when ``draws[:, 2] < 0.5`` (for the signed ones). With ``s = ±m``, on pixel values in [0, 1]:

    - geometric (nearest neighbour, about the image centre ``c``; pixels from outside are ``fill``):
      output pixel ``p`` takes input pixel ``round(A (p - c) + c)``, ``A`` one of: shear_x
      ``x' = x + s·shear·(y - cy)``; shear_y likewise; translate ``x' = x - s·translate·W``
      (``y`` with ``H``); rotate by ``s·rotate`` degrees;
    - ``f = 1 + s·enhance``: brightness ``f·x``; color ``g + f (x - g)``, ``g`` the pixel's luma;
      contrast ``μ + f (x - μ)``, ``μ`` the image's mean luma; sharpness ``b + f (x - b)``, ``b`` PIL's
      SMOOTH filter of the image (borders kept);
    - posterize: keep ``8 - round(m·posterize)`` bits of ``round(255 x)``; solarize: ``v = round(255 x)``
      becomes ``255 - v`` where ``v >= 255 (1 - m)``; autocontrast: each channel rescaled to span
      [0, 1] (unchanged if constant).

    The result is clipped to [0, 1]. Everything is elementwise arithmetic and one gather, with
    static shapes, so it compiles under XLA.

    Args:
        images: float32 ``(B, H, W, C)`` in [0, 1], static H, W, C.
        draws: ``(B, 3)`` uniforms in [0, 1).
        policy: "trivial" or "trivial_wide" (:data:`TRIVIAL_RANGES`).
        fill: value (scalar or per channel) of pixels a geometric operation brings in from outside.

    Returns:
        float32 images of the same shape.
    """
    if policy not in TRIVIAL_RANGES:
        raise ValueError(f"policy must be one of {tuple(TRIVIAL_RANGES)} (got {policy!r})")
    limits = TRIVIAL_RANGES[policy]
    batch = ops.shape(images)[0]
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    count = len(TRIVIAL_OPS)
    op = ops.clip(ops.cast(ops.floor(draws[:, 0] * count), "int32"), 0, count - 1)
    magnitude = draws[:, 1]
    signed = ops.where(draws[:, 2] < 0.5, -magnitude, magnitude)

    def chosen(name):
        return ops.equal(op, TRIVIAL_OPS.index(name))[:, None]  # (B, 1)

    # Geometry: where each output pixel comes from, relative to the centre.
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    dy = ops.cast(ops.repeat(ops.arange(height), width), "float32")[None, :] - cy  # (1, H*W)
    dx = ops.cast(ops.tile(ops.arange(width), (height,)), "float32")[None, :] - cx
    s = signed[:, None]
    shear = s * limits["shear"]
    theta = s * (limits["rotate"] * np.pi / 180.0)
    cos, sin = ops.cos(theta), ops.sin(theta)
    src_y = ops.where(chosen("shear_y"), dy + shear * dx, dy)
    src_x = ops.where(chosen("shear_x"), dx + shear * dy, dx)
    src_y = ops.where(chosen("translate_y"), dy - s * (limits["translate"] * height), src_y)
    src_x = ops.where(chosen("translate_x"), dx - s * (limits["translate"] * width), src_x)
    src_y = ops.where(chosen("rotate"), cos * dy - sin * dx, src_y)
    src_x = ops.where(chosen("rotate"), sin * dy + cos * dx, src_x)
    iy = ops.cast(ops.round(src_y + cy), "int32")
    ix = ops.cast(ops.round(src_x + cx), "int32")
    inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
    index = ops.clip(iy, 0, height - 1) * width + ops.clip(ix, 0, width - 1)
    flat = ops.reshape(images, (batch, height * width, channels))
    flat = ops.take_along_axis(flat, index[:, :, None], axis=1)
    fill = ops.cast(ops.broadcast_to(ops.convert_to_tensor(fill, "float32"), (channels,)), "float32")
    flat = ops.where(inside[:, :, None], flat, fill)
    x = ops.reshape(flat, (batch, height, width, channels))

    # Colour: every candidate computed for every image, one kept (a few elementwise passes).
    def per_image(values):
        return ops.reshape(values, (-1, 1, 1, 1))

    factor = per_image(1.0 + signed * limits["enhance"])
    grey = _grey(x)
    mean_grey = ops.mean(grey, axis=(1, 2), keepdims=True)
    blurred = _smooth(x)
    levels = ops.round(x * 255.0)
    step = ops.power(2.0, ops.round(per_image(magnitude) * limits["posterize"]))
    lo = ops.min(x, axis=(1, 2), keepdims=True)
    hi = ops.max(x, axis=(1, 2), keepdims=True)
    spread = hi - lo
    candidates = {
        "brightness": factor * x,
        "color": grey + factor * (x - grey),
        "contrast": mean_grey + factor * (x - mean_grey),
        "sharpness": blurred + factor * (x - blurred),
        "posterize": ops.floor(levels / step) * step / 255.0,
        "solarize": ops.where(levels >= 255.0 * (1.0 - per_image(magnitude)), 255.0 - levels, levels) / 255.0,
        "autocontrast": ops.where(spread > 0, (x - lo) / ops.where(spread > 0, spread, 1.0), x),
    }
    out = x
    for name, value in candidates.items():
        out = ops.where(per_image(ops.cast(ops.equal(op, TRIVIAL_OPS.index(name)), "float32")) > 0, value, out)
    return ops.clip(out, 0.0, 1.0)


def random_erasing(images, draws, probability, value=0.0, scale=ERASING_SCALE, ratio=ERASING_RATIO):
    """Random erasing (Zhong et al. 2020): with probability ``probability`` one box per image is set to ``value``.

    From the ``(B, 5)`` uniforms ``u``: the image is erased when ``u0 < probability``; the box has
    area ``a = (scale[0] + u1 (scale[1] - scale[0])) H W`` and aspect ratio (height / width)
    ``r = exp(log ratio[0] + u2 (log ratio[1] - log ratio[0]))``, so height ``h = round(sqrt(a r))``
    and width ``w = round(sqrt(a / r))``, each clipped to [1, image size]; its top-left corner is
    ``(floor(u3 (H - h + 1)), floor(u4 (W - w + 1)))``, so the box lies inside the image. (torchvision
    redraws a box that does not fit, up to ten times; here the box is clipped instead.)

    Args:
        images: ``(B, H, W, C)`` images, static H and W.
        draws: ``(B, 5)`` uniforms in [0, 1).
        probability: in [0, 1].
        value: the fill (0 after :class:`ImageNormalization`: the dataset's mean colour).

    Returns:
        The images with the boxes filled, same shape and dtype.
    """
    height, width = images.shape[1], images.shape[2]
    area = (scale[0] + draws[:, 1] * (scale[1] - scale[0])) * float(height * width)
    log_lo, log_hi = float(np.log(ratio[0])), float(np.log(ratio[1]))
    aspect = ops.exp(log_lo + draws[:, 2] * (log_hi - log_lo))
    h = ops.clip(ops.round(ops.sqrt(area * aspect)), 1.0, float(height))
    w = ops.clip(ops.round(ops.sqrt(area / aspect)), 1.0, float(width))
    top = ops.minimum(ops.floor(draws[:, 3] * (height - h + 1.0)), height - h)
    left = ops.minimum(ops.floor(draws[:, 4] * (width - w + 1.0)), width - w)
    applied = draws[:, 0] < probability
    rows = ops.cast(ops.arange(height), "float32")[None, :]
    cols = ops.cast(ops.arange(width), "float32")[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None]) & applied[:, None]
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    box = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return ops.where(box, ops.cast(value, images.dtype), images)
