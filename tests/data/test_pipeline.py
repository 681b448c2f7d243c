"""make_batches: numpy batches (any backend) and tf.data (when TensorFlow is installed), CutMix."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_softmax.data import make_batches
from keras_softmax.data.pipeline import NumpyBatches

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
PATHS = ["numpy", pytest.param("tensorflow", marks=pytest.mark.skipif(not HAS_TENSORFLOW,
                                                                     reason="no TensorFlow"))]


def epochs(batches, count):
    """``count`` epochs of ``[(images, targets), ...]`` as numpy arrays, as Keras would draw them."""
    out = []
    for _ in range(count):
        out.append([(np.asarray(x), np.asarray(y)) for x, y in batches])
        if isinstance(batches, NumpyBatches):
            batches.on_epoch_end()
    return out


def labelled_images(n, size=8):
    """Image i is filled with the value i and labelled i: pixels tell where each came from."""
    y = np.arange(n, dtype=np.int64)
    x = np.broadcast_to(y.astype(np.uint8)[:, None, None, None], (n, size, size, 3)).copy()
    return x, y


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("drop_remainder, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batch_sizes_and_dtypes(path, drop_remainder, sizes):
    x, y = labelled_images(10)
    batches = make_batches(x, y, 4, shuffle=False, drop_remainder=drop_remainder, backend=path)
    [epoch] = epochs(batches, 1)
    assert [len(yb) for _, yb in epoch] == sizes
    assert all(xb.dtype == np.uint8 and yb.dtype == np.int32 for xb, yb in epoch)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in epoch]), np.arange(sum(sizes)))
    if path == "numpy":
        assert isinstance(batches, NumpyBatches) and len(batches) == len(sizes)
        with pytest.raises(IndexError):
            batches[len(sizes)]


@pytest.mark.parametrize("path", PATHS)
def test_shuffle_sees_every_sample_once_and_is_seeded(path):
    x, y = labelled_images(50)
    runs = [epochs(make_batches(x, y, 8, shuffle=True, seed=s, backend=path), 2) for s in (3, 3, 4)]
    orders = [[np.concatenate([yb for _, yb in epoch]) for epoch in run] for run in runs]
    for order in (o for run in orders for o in run):
        assert sorted(order) == list(range(50))
    for (xb, yb) in runs[0][0]:
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)  # images stay with their labels
    np.testing.assert_array_equal(orders[0][0], orders[1][0])  # same seed, same epochs
    np.testing.assert_array_equal(orders[0][1], orders[1][1])
    assert not np.array_equal(orders[0][0], orders[0][1])  # reshuffled every epoch
    assert not np.array_equal(orders[0][0], orders[2][0])  # another seed, another order


@pytest.mark.parametrize("path", PATHS)
def test_cutmix_targets_match_pasted_area(path):
    n = 200
    x, y = labelled_images(n)
    batches = make_batches(x, y, 64, shuffle=True, cutmix=0.5, num_classes=n, backend=path)
    mixed = 0
    for epoch in epochs(batches, 2):
        for images, targets in epoch:
            assert images.dtype == np.uint8 and targets.dtype == np.float32
            assert targets.shape == (len(images), n)
            np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
            assert (images == images[..., :1]).all()  # the same box in every channel
            area = np.stack([np.bincount(im[..., 0].ravel(), minlength=n) for im in images]) / 64
            np.testing.assert_allclose(targets, area, atol=1e-6)
            mixed += int((targets.max(axis=1) < 1).sum())
    assert 0.3 < mixed / (2 * n) < 0.6  # about half the samples get a box


@pytest.mark.parametrize("path", PATHS)
def test_cutmix_is_seeded(path):
    x, y = labelled_images(40)
    a, b, c = (epochs(make_batches(x, y, 16, shuffle=False, seed=s, cutmix=1.0, num_classes=40,
                                   backend=path), 2) for s in (0, 0, 1))
    for epoch_a, epoch_b in zip(a, b):
        for (xa, ta), (xb, tb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a[0][0][1], a[1][0][1])  # new boxes every epoch
    assert not np.array_equal(a[0][0][1], c[0][0][1])


def test_numpy_batch_depends_only_on_seed_epoch_and_index():
    x, y = labelled_images(40)
    batches = make_batches(x, y, 16, shuffle=True, seed=5, cutmix=1.0, num_classes=40, backend="jax")
    first = batches[0]
    batches[2], batches[1]
    again = batches[0]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_default_backend():
    x, y = labelled_images(8)
    batches = make_batches(x, y, 4, shuffle=False)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert isinstance(batches, tf.data.Dataset)
    else:
        assert isinstance(batches, NumpyBatches)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be"),
    ({"cutmix": 0.5}, "cutmix needs num_classes"),
    ({"cutmix": 1.5, "num_classes": 8}, "cutmix must be a probability"),
    ({"cutmix": 0.5, "num_classes": 4}, r"labels must lie in \[0, 4\)"),
    ({"seed": -1}, "seed must be"),
    ({"y": np.arange(7)}, "expected images"),
])
def test_bad_arguments(kwargs, message):
    x, y = labelled_images(8)
    args = {"x": x, "y": y, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_batches(args.pop("x"), args.pop("y"), args.pop("batch_size"), shuffle=True, **args)


@pytest.mark.parametrize("cutmix", [0.0, 1.0])
def test_model_fit_accepts_batches(cutmix):
    x, y = labelled_images(32)
    y = y % 4
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    loss = "categorical_crossentropy" if cutmix else "sparse_categorical_crossentropy"
    model.compile("sgd", loss)
    batches = make_batches(x, y, 8, shuffle=True, cutmix=cutmix, num_classes=4)
    history = model.fit(batches, epochs=2, verbose=0, shuffle=False)  # keep Keras from reordering
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    if isinstance(batches, NumpyBatches):  # on JAX, once more after a first batch builds the model
        assert batches.epoch in (2, 3)


def test_numpy_path_works_without_tensorflow(tmp_path):
    """Under JAX with TensorFlow unimportable, loading and batching never reach for it."""
    pytest.importorskip("jax")
    script = textwrap.dedent("""
        import sys

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                    raise ImportError(f"{name} is blocked")

        sys.meta_path.insert(0, NoTensorFlow())
        from keras_softmax.data import DatasetError, load_dataset, make_batches

        data = load_dataset("digits", limit=100)
        batches = make_batches(*data.split("train"), 32, shuffle=True, cutmix=0.5, num_classes=10)
        assert len([b for b in batches]) == 3
        try:
            load_dataset("cifar100")
        except DatasetError as error:
            assert "class-folder copy" in str(error)
        assert not any(m.split(".")[0] == "tensorflow" for m in sys.modules), "tensorflow imported"
        print("ok")
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("num_images, batch_size, expected", [
    (5000, 512, 500),     # CIFAR copy's validation split: no ragged 392-image batch
    (45000, 512, 500),
    (4999, 512, 512),     # no divisor in [256, 512]: keep the batch size
    (10, 512, 10),        # fewer images than a batch: one batch
    (180, 64, 60),
])
def test_even_batch_size(num_images, batch_size, expected):
    from keras_softmax.data import even_batch_size

    size = even_batch_size(num_images, batch_size)
    assert size == expected
    assert size <= max(batch_size, 1)
    if size != batch_size:
        assert num_images % size == 0


def _stream_epochs(batches, per_epoch, count):
    """Split one pass over an epoch stream into ``count`` epochs of numpy batches."""
    flat = [(np.asarray(x), np.asarray(y)) for x, y in batches]
    assert len(flat) == per_epoch * count
    return [flat[i * per_epoch:(i + 1) * per_epoch] for i in range(count)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cutmix", [0.0, 0.7])
def test_epoch_stream_is_a_pure_function_of_seed_and_epoch(path, cutmix):
    """A run resumed at epoch k (epochs=(k, stop)) draws exactly what the uninterrupted run
    (epochs=(0, stop)) drew from epoch k on: the same order and the same CutMix boxes."""
    x, y = labelled_images(40)
    kwargs = dict(shuffle=True, seed=7, drop_remainder=True, cutmix=cutmix, num_classes=40, backend=path)
    whole = _stream_epochs(make_batches(x, y, 16, epochs=(0, 3), **kwargs), 2, 3)
    resumed = _stream_epochs(make_batches(x, y, 16, epochs=(2, 3), **kwargs), 2, 1)
    for (xa, ya), (xb, yb) in zip(whole[2], resumed[0]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    firsts = [np.asarray(epoch[0][1]) for epoch in whole]
    assert not np.array_equal(firsts[0], firsts[1]) and not np.array_equal(firsts[1], firsts[2])
    if not cutmix:  # every epoch sees its images once
        for epoch in whole:
            labels = np.concatenate([yb for _, yb in epoch])
            assert len(set(labels.tolist())) == 32
            np.testing.assert_array_equal(np.concatenate([xb[:, 0, 0, 0] for xb, _ in epoch]), labels)
    other_seed = _stream_epochs(make_batches(x, y, 16, epochs=(2, 3), **{**kwargs, "seed": 8}), 2, 1)
    assert not np.array_equal(other_seed[0][0][1], resumed[0][0][1])


@pytest.mark.parametrize("epochs_arg", [(2, 2), (-1, 3), "ab", (1.5, 3)])
def test_bad_epoch_stream(epochs_arg):
    x, y = labelled_images(8)
    with pytest.raises(ValueError, match="epochs must"):
        make_batches(x, y, 4, shuffle=True, epochs=epochs_arg)


@pytest.mark.parametrize("path", PATHS)
def test_pad_to_gives_even_batches_with_zero_weight_copies(path):
    """Evaluation under data parallelism: 11 images, batches of 4 over 2 devices -> 4, 4, 3 + 1 copy."""
    x, y = labelled_images(11)
    batches = make_batches(x, y, 4, shuffle=False, pad_to=2, backend=path)
    batches = [tuple(np.asarray(part) for part in batch) for batch in batches]
    assert [len(b[0]) for b in batches] == [4, 4, 4] and all(len(b) == 3 for b in batches)
    labels = np.concatenate([b[1] for b in batches])
    weights = np.concatenate([b[2] for b in batches])
    np.testing.assert_array_equal(labels, [*range(11), 0])  # the copy is image 0 ...
    np.testing.assert_array_equal(weights, [1.0] * 11 + [0.0])  # ... and weighs nothing
    assert weights.dtype == np.float32


def test_shards_of_processes_make_up_the_one_process_batches():
    x, y = labelled_images(40)
    whole = make_batches(x, y, 8, shuffle=True, seed=2, drop_remainder=True, backend="jax")
    shards = [make_batches(x, y, 8, shuffle=True, seed=2, drop_remainder=True, backend="jax", shard=(k, 2))
              for k in range(2)]
    for epoch in range(2):
        for index in range(len(whole)):
            parts = [shard[index] for shard in shards]
            assert [len(p[1]) for p in parts] == [4, 4]
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[index][1])
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[index][0])
        for batches in (whole, *shards):
            batches.on_epoch_end()
    padded = [make_batches(x[:11], y[:11], 4, shuffle=False, backend="jax", pad_to=2, shard=(k, 2))[2]
              for k in range(2)]
    np.testing.assert_array_equal(np.concatenate([p[2] for p in padded]), [1, 1, 1, 0])


@pytest.mark.parametrize("kwargs, message", [
    ({"pad_to": 3}, "batch_size 4 must be a multiple of pad_to 3"),
    ({"pad_to": 2, "cutmix": 0.5, "num_classes": 10}, "without cutmix"),
    ({"shard": (0, 3), "backend": "jax"}, "every batch must divide by the 3 shards"),
    ({"shard": (2, 2), "backend": "jax"}, "shard must be"),
])
def test_bad_pad_and_shard(kwargs, message):
    x, y = labelled_images(10)
    with pytest.raises(ValueError, match=message):
        make_batches(x, y, 4, shuffle=False, **kwargs)
