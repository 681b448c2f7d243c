"""Batches for ``model.fit`` / ``model.evaluate``: tf.data on TensorFlow, numpy batches elsewhere.

Both give uint8 images and int32 labels, or with CutMix float32 target distributions. CutMix
(Yun et al. 2019) here works per sample: with probability ``cutmix`` each image gets a box, of area
fraction ``1 - lam`` with ``lam ~ U(0, 1)`` before clipping to the image, pasted from a partner
chosen by a random permutation of its batch; its target is ``lam' * onehot(y) + (1 - lam') *
onehot(y_partner)`` with ``lam'`` the fraction of its own pixels that remain.

>>> batches = make_batches(x_train, y_train, 128, shuffle=True, seed=0)
>>> model.fit(batches, epochs=10)

Training that may be resumed asks for a stream of epochs instead: with ``epochs=(first, stop)`` each
epoch's order and CutMix draws are a pure function of ``(seed, epoch)``, so a run resumed at epoch
``k`` (``epochs=(k, stop)``) sees exactly the batches the uninterrupted run saw from epoch ``k`` on:

>>> stream = make_batches(x_train, y_train, 128, shuffle=True, seed=0, drop_remainder=True, epochs=(k, 10))
>>> model.fit(stream, epochs=10, initial_epoch=k, steps_per_epoch=len(y_train) // 128)
"""

from __future__ import annotations

import numbers
import operator

import keras
import numpy as np


def make_batches(x, y, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_remainder: bool = False, cutmix: float = 0.0, num_classes: int | None = None,
                 backend: str | None = None, epochs: tuple[int, int] | None = None, pad_to: int = 1,
                 shard: tuple[int, int] = (0, 1)):
    """Batch ``(x, y)`` for Keras, reshuffled every epoch when ``shuffle``.

    Args:
        x: uint8 images ``(N, H, W, C)``.
        y: integer labels ``(N,)``.
        batch_size: images per batch; the last batch is smaller unless ``drop_remainder``.
        shuffle: reshuffle the images every epoch, deterministically from ``seed``.
        seed: seeds the shuffling and CutMix.
        drop_remainder: drop a last, incomplete batch.
        cutmix: probability in [0, 1] that a sample gets a CutMix box (see the module docstring);
            when > 0, targets are float32 distributions ``(batch, num_classes)``.
        num_classes: number of classes; required for CutMix.
        backend: ``"tensorflow"`` gives a ``tf.data.Dataset``; anything else a
            ``keras.utils.PyDataset`` of numpy batches (which never imports TensorFlow). Defaults to
            ``keras.backend.backend()``.
        epochs: ``(first, stop)``: one stream holding the batches of epochs ``first .. stop - 1``
            in turn (:func:`steps_per_epoch` batches each), each epoch's order and CutMix draws a
            pure function of ``(seed, epoch)``; give ``fit`` that ``steps_per_epoch``. ``None``
            (default): the batches of one epoch, drawn anew each time Keras iterates them.
        pad_to: pad the images with copies of the first ones to a multiple of ``pad_to`` and give
            ``(images, labels, weights)`` batches, weight 0 on the copies: with ``batch_size`` a
            multiple of ``pad_to`` every batch then splits evenly over ``pad_to`` devices (for
            evaluation under data parallelism; Keras applies the weights to ``weighted_metrics``).
        shard: ``(index, count)``: give only the ``index``-th of ``count`` contiguous, equal shares
            of every batch, one process's share of the global batch when several processes train
            together (numpy batches only). Every batch must divide by ``count``.

    Returns:
        A ``tf.data.Dataset`` or :class:`NumpyBatches`, either accepted by ``model.fit``. Pass
        ``shuffle=False`` to ``fit``: these batches are shuffled already, and Keras would otherwise
        reorder a PyDataset's batches with Python's global ``random`` (and warn about tf.data).
    """
    x, y = np.asarray(x), np.asarray(y)
    _check(x, y, batch_size, seed, cutmix, num_classes)
    if epochs is not None:
        epochs = _check_epochs(epochs)
    weights = None
    if pad_to != 1:
        x, y, weights = _pad(x, y, batch_size, pad_to, cutmix)
    if (backend or keras.backend.backend()) == "tensorflow":
        if tuple(shard) != (0, 1):
            raise ValueError("shard applies to numpy batches only")
        if epochs is not None:
            if weights is not None:
                raise ValueError("pad_to is for evaluation batches, not a training stream of epochs")
            return _tf_epoch_stream(x, y, batch_size, shuffle, seed, drop_remainder, cutmix, num_classes, epochs)
        return _tf_batches(x, y, batch_size, shuffle, seed, drop_remainder, cutmix, num_classes, weights)
    return NumpyBatches(x, y, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder,
                        cutmix=cutmix, num_classes=num_classes, epochs=epochs, weights=weights, shard=shard)


def _pad(x, y, batch_size, pad_to, cutmix):
    """``(x, y)`` padded to a multiple of ``pad_to`` with copies of the first images, and the weights."""
    if isinstance(pad_to, bool) or not isinstance(pad_to, numbers.Integral) or pad_to < 1:
        raise ValueError(f"pad_to must be an integer >= 1 (got {pad_to!r})")
    if batch_size % pad_to:
        raise ValueError(f"batch_size {batch_size} must be a multiple of pad_to {pad_to}")
    if cutmix:
        raise ValueError("pad_to is for evaluation batches, without cutmix")
    copies = np.arange(-len(y) % pad_to) % len(y)
    weights = np.concatenate([np.ones(len(y), np.float32), np.zeros(len(copies), np.float32)])
    return np.concatenate([x, x[copies]]), np.concatenate([y, y[copies]]), weights


def steps_per_epoch(num_images: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches in one epoch of ``num_images``."""
    return num_images // batch_size if drop_remainder else -(-num_images // batch_size)


def _check_epochs(epochs):
    try:
        first, stop = (operator.index(e) for e in epochs)
    except (TypeError, ValueError):
        raise ValueError(f"epochs must be a pair of integers (first, stop) (got {epochs!r})") from None
    if not 0 <= first < stop:
        raise ValueError(f"epochs must satisfy 0 <= first < stop (got {epochs!r})")
    return first, stop


def _check(x, y, batch_size, seed, cutmix, num_classes):
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected images (N, H, W, C) and labels (N,), "
                         f"got shapes {x.shape} and {y.shape}")
    if len(y) == 0:
        raise ValueError("no images to batch")
    if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
            or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (got {seed!r})")
    if not 0.0 <= cutmix <= 1.0:
        raise ValueError(f"cutmix must be a probability in [0, 1] (got {cutmix!r})")
    if cutmix:
        if num_classes is None:
            raise ValueError("cutmix needs num_classes")
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}) for cutmix")


class NumpyBatches(keras.utils.PyDataset):
    """Numpy batches for backends without TensorFlow, reshuffled each epoch from ``(seed, epoch)``.

    Batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, so it is reproducible whatever order
    (or thread) asks for it. Keras calls :meth:`on_epoch_end` after each epoch. With
    ``epochs=(first, stop)`` it is one stream of those epochs' batches instead (index ``j`` is batch
    ``j % per_epoch`` of epoch ``first + j // per_epoch``) and ignores :meth:`on_epoch_end`. With
    ``weights`` batches are ``(images, labels, weights)``. With ``shard=(k, n)`` every process builds
    the same whole batch and keeps its ``k``-th share, so the shares of all processes are the one batch.
    """

    def __init__(self, x, y, batch_size, *, shuffle, seed=0, drop_remainder=False, cutmix=0.0,
                 num_classes=None, epochs=None, weights=None, shard=(0, 1)):
        super().__init__()
        self.x, self.y = x, y.astype(np.int32)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.drop_remainder, self.cutmix = drop_remainder, float(cutmix)
        self.num_classes = num_classes
        self.weights = weights
        self.shard_index, self.shard_count = (int(v) for v in shard)
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"shard must be (index, count) with 0 <= index < count (got {shard!r})")
        last = len(self.y) % self.batch_size
        if self.batch_size % self.shard_count or (last and not drop_remainder and last % self.shard_count):
            raise ValueError(f"every batch must divide by the {self.shard_count} shards "
                             f"(batch_size {batch_size}, {len(self.y)} images)")
        self.epochs = epochs
        self.epoch = 0 if epochs is None else epochs[0]
        self._order = self._epoch_order(self.epoch)

    @property
    def batches_per_epoch(self) -> int:
        return steps_per_epoch(len(self.y), self.batch_size, self.drop_remainder)

    def __len__(self):
        if self.epochs is None:
            return self.batches_per_epoch
        return self.batches_per_epoch * (self.epochs[1] - self.epochs[0])

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        epoch = self.epoch
        if self.epochs is not None:
            epoch, index = self.epochs[0] + index // self.batches_per_epoch, index % self.batches_per_epoch
            if epoch != self.epoch:
                self.epoch, self._order = epoch, self._epoch_order(epoch)
        order = self._order
        chosen = order[index * self.batch_size: (index + 1) * self.batch_size]
        images, labels = self.x[chosen], self.y[chosen]
        if self.cutmix:
            rng = np.random.default_rng((self.seed, epoch, index))
            images, labels = _cutmix_numpy(images, labels, self.cutmix, self.num_classes, rng)
        batch = (images, labels) if self.weights is None else (images, labels, self.weights[chosen])
        if self.shard_count == 1:
            return batch
        share = len(chosen) // self.shard_count
        return tuple(part[self.shard_index * share:(self.shard_index + 1) * share] for part in batch)

    def on_epoch_end(self):
        if self.epochs is None:
            self.epoch += 1
            self._order = self._epoch_order(self.epoch)

    def _epoch_order(self, epoch):
        if not self.shuffle:
            return np.arange(len(self.y))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.y))


def _cutmix_numpy(images, labels, probability, num_classes, rng):
    """CutMix a numpy batch: ``(mixed uint8 images, float32 targets)``."""
    n, height, width = images.shape[:3]
    partner = rng.permutation(n)
    applied = rng.random(n) < probability
    cut = np.sqrt(1.0 - rng.random(n))
    cut_h = np.where(applied, np.floor(height * cut), 0).astype(np.int64)
    cut_w = np.where(applied, np.floor(width * cut), 0).astype(np.int64)
    top = rng.integers(0, height, n) - cut_h // 2
    left = rng.integers(0, width, n) - cut_w // 2
    y0, y1 = np.clip(top, 0, height), np.clip(top + cut_h, 0, height)
    x0, x1 = np.clip(left, 0, width), np.clip(left + cut_w, 0, width)
    mixed = images.copy()
    for i in np.flatnonzero((y1 > y0) & (x1 > x0)):
        mixed[i, y0[i]:y1[i], x0[i]:x1[i]] = images[partner[i], y0[i]:y1[i], x0[i]:x1[i]]
    kept = (1.0 - (y1 - y0) * (x1 - x0) / (height * width)).astype(np.float32)[:, None]
    eye = np.eye(num_classes, dtype=np.float32)
    return mixed, kept * eye[labels] + (1.0 - kept) * eye[labels[partner]]


def _tf_batches(x, y, batch_size, shuffle, seed, drop_remainder, cutmix, num_classes, weights=None):
    """A tf.data pipeline: slices, cache, shuffle (reshuffled each epoch), batch, CutMix, prefetch."""
    import tensorflow as tf

    arrays = (x, y.astype(np.int32)) if weights is None else (x, y.astype(np.int32), weights)
    dataset = tf.data.Dataset.from_tensor_slices(arrays).cache()
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if cutmix:
        # One stateless seed pair per batch, new each epoch and reproducible from ``seed``.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda batch, pair: _cutmix_tf(tf, *batch, cutmix, num_classes, pair),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _tf_epoch_stream(x, y, batch_size, shuffle, seed, drop_remainder, cutmix, num_classes, epochs):
    """tf.data batches of ``epochs = (first, stop)`` in turn, each a pure function of ``(seed, epoch)``.

    Epoch ``e`` gathers its batches by a stateless permutation keyed ``(seed, e)``; batch ``i``'s
    CutMix draws use that key folded with ``i``. Nothing depends on how many epochs came before.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(x)
    labels = tf.convert_to_tensor(y.astype(np.int32))
    n = len(y)

    def one_epoch(epoch):
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=key)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        batches = batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
        if cutmix:
            batches = batches.enumerate().map(
                lambda i, batch: _cutmix_tf(tf, *batch, cutmix, num_classes,
                                            tf.random.experimental.stateless_fold_in(key, i)))
        return batches

    first, stop = epochs
    total = steps_per_epoch(n, batch_size, drop_remainder) * (stop - first)
    dataset = tf.data.Dataset.range(first, stop).flat_map(one_epoch)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(total))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _cutmix_tf(tf, images, labels, probability, num_classes, seed):
    """CutMix a tf batch, same rules as :func:`_cutmix_numpy`, from a stateless seed pair."""
    n = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 6)
    partner = tf.argsort(tf.random.stateless_uniform([n], seeds[0]))
    applied = tf.random.stateless_uniform([n], seeds[1]) < probability
    cut = tf.sqrt(1.0 - tf.random.stateless_uniform([n], seeds[2]))
    cut_h = tf.where(applied, tf.cast(tf.floor(height * cut), tf.int32), 0)
    cut_w = tf.where(applied, tf.cast(tf.floor(width * cut), tf.int32), 0)
    top = tf.random.stateless_uniform([n], seeds[3], 0, height, tf.int32) - cut_h // 2
    left = tf.random.stateless_uniform([n], seeds[4], 0, width, tf.int32) - cut_w // 2
    y0, y1 = tf.clip_by_value(top, 0, height), tf.clip_by_value(top + cut_h, 0, height)
    x0, x1 = tf.clip_by_value(left, 0, width), tf.clip_by_value(left + cut_w, 0, width)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    box = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None])
           & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
    mixed = tf.where(box[..., None], tf.gather(images, partner), images)
    kept = (1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (height * width))[:, None]
    own = tf.one_hot(labels, num_classes)
    other = tf.one_hot(tf.gather(labels, partner), num_classes)
    return mixed, kept * own + (1.0 - kept) * other


def even_batch_size(num_images: int, batch_size: int) -> int:
    """A batch size for evaluating ``num_images`` without a ragged last batch, where one is near.

    The largest divisor of ``num_images`` in ``[batch_size / 2, batch_size]``, else ``batch_size``
    itself. Every distinct batch shape is one more XLA compilation (seconds on a GPU), and a
    5,000-image validation split at batch 512 otherwise ends in a batch of 392: 500 avoids it.
    """
    if num_images <= batch_size:
        return max(1, num_images)
    for size in range(batch_size, max(1, batch_size // 2) - 1, -1):
        if num_images % size == 0:
            return size
    return batch_size
