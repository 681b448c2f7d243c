"""Datasets as uint8 image arrays: bundled digits, CIFAR-100 (tensorflow-datasets), class folders.

Every source gives 32×32 RGB ``uint8`` images and ``int32`` labels. The training pool is split into
train and validation sets here (seeded, stratified); a source's own test split is kept as is.

>>> data = load_dataset("digits", val_split=0.2, seed=1)
>>> data.sizes()
{'train': 1438, 'val': 359, 'test': 0}
>>> x, y = data.split("val")
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import numbers
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from keras_softmax.cifar100 import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE
from keras_softmax.data import jpeg_worker
from keras_softmax.data.jpeg_worker import IMAGE_SIZE
from keras_softmax.data.jpeg_worker import one_line as _one_line  # one-line error reports
from keras_softmax.environment import cache_root
from keras_softmax.io import atomic_path
from keras_softmax.names import did_you_mean

DATASETS = {
    "digits": "scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), upsampled to 32×32 RGB",
    "cifar100": "CIFAR-100 from tensorflow-datasets (50,000 train + 10,000 test images, 100 classes)",
}
"""Named sources of :func:`load_dataset`; any other source is a path to class folders."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_CACHE_FORMAT = "v1"
_WORKERS_VARIABLE = "KERAS_SOFTMAX_DECODE_WORKERS"
_PARALLEL_FROM = 2_000  # fewer images decode in this process: a worker's start would cost more
_IMAGES_PER_WORKER = 1_000
_MAX_WORKERS = 32
_FOLDER_HINT = ("use a class-folder copy instead: a directory or .tar.gz of train/<class>/*.jpg, "
                "e.g. ../shared/data/cifar100-train-jpg.tar.gz")


class DatasetError(ValueError):
    """A dataset cannot be loaded or split; the message is one line, meant for the user."""


@dataclasses.dataclass(eq=False, repr=False)
class Dataset:
    """Images and labels of one source, split into train / val (/ test).

    Images are ``uint8`` arrays of shape ``(N, 32, 32, 3)``, labels ``int32`` arrays of shape ``(N,)``
    indexing ``class_names``. ``fine_to_coarse[i]`` is the superclass of class ``i`` where known.
    """

    name: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    fine_to_coarse: list[int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of split ``"train"``, ``"val"`` or ``"test"``."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "val":
            if not len(self.y_val):
                raise DatasetError(f"no validation split in {self.name} (val_split = 0: every training image "
                                   "trains); use --split test")
            return self.x_val, self.y_val
        if name == "test":
            if self.x_test is None:
                raise DatasetError(f"no test split in {self.name}; use --split val")
            return self.x_test, self.y_test
        raise DatasetError(f"unknown split {name!r}: expected train, val or test")

    def sizes(self) -> dict:
        """Number of images per split (0 for a missing test split)."""
        return {"train": len(self.y_train), "val": len(self.y_val),
                "test": 0 if self.y_test is None else len(self.y_test)}

    def __repr__(self):
        sizes = ", ".join(f"{split}={size}" for split, size in self.sizes().items())
        return f"Dataset(name={self.name!r}, num_classes={self.num_classes}, {sizes})"


#: The shape of every image a source gives (folders and digits are resized to it), known before loading.
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)


@dataclasses.dataclass(frozen=True)
class Outline:
    """What a :class:`Dataset` will hold, known before its images are decoded.

    Enough to build and compile a model while the images decode: the classes, the image shape and
    the sizes of the train and validation splits (:func:`load_dataset`'s ``on_outline``).
    """

    name: str
    class_names: list[str]
    num_train: int
    num_val: int
    fine_to_coarse: list[int] | None = None
    image_shape: tuple = IMAGE_SHAPE

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def outline_of(data: Dataset) -> Outline:
    """The :class:`Outline` of a loaded dataset."""
    return Outline(data.name, list(data.class_names), len(data.y_train), len(data.y_val), data.fine_to_coarse,
                   data.image_shape)


def load_dataset(source, *, val_split: float | int = 0.1, seed: int = 0, limit: int | None = None,
                 cache_dir: str | os.PathLike | None = None, labels: str = "fine", on_outline=None) -> Dataset:
    """Load ``source`` and hold out a seeded, stratified validation set from its training images.

    Args:
        source: ``"digits"``, ``"cifar100"`` (tensorflow-datasets), or the path of a directory of
            class folders (``train/<class>/*.jpg``, optional ``test/<class>/...``, or the class
            folders directly), or of a ``.tar.gz`` of such a tree. Class ``i`` is the i-th folder
            name in sorted order. Decoded folders are cached as ``.npz`` files in ``cache_dir``.
        val_split: a fraction in (0, 1) of the training images, an integer count >= 1, or 0: no
            validation split (every training image trains; choose settings on a split first).
        seed: seeds the ``limit`` subset and the validation split; the same seed gives the same split.
        limit: keep only this many training images (a seeded, stratified subset) before splitting.
        cache_dir: where decoded class folders (and tensorflow-datasets downloads) are kept; default
            ``$KERAS_SOFTMAX_CACHE`` or ``~/.cache/keras_softmax``.
        labels: ``"fine"`` (the classes) or ``"coarse"``: the superclasses of the source's
            fine->coarse map (see :func:`to_coarse`), split after the fine-label split so that the
            same images are held out either way.
        on_outline: called once with the dataset's :class:`Outline`, as early as the source allows:
            for class folders (``labels="fine"``) as soon as they are listed, before the images
            decode, so that a caller loading in a thread can build its model meanwhile; for other
            sources just before returning. Not called when loading fails first.

    Raises:
        DatasetError: the source is missing, unreadable or empty, or the split arguments are invalid.
    """
    source = os.fspath(source)
    _check_split_args(val_split, seed, limit)
    if labels not in ("fine", "coarse"):
        raise DatasetError(f"labels must be fine or coarse (got {labels!r})")
    told = []  # the outline, once given

    def listed(class_names, pool_size):
        """Class folders listed, images not yet decoded: give the outline now (fine labels only)."""
        if on_outline is None or labels != "fine":
            return
        try:
            num_train, num_val = _split_sizes(pool_size, val_split, limit, source)
        except DatasetError:  # raised after decoding, as without an outline: errors keep their order
            return
        told.append(Outline(source, list(class_names), num_train, num_val, _fine_to_coarse(class_names)))
        on_outline(told[-1])

    if source == "digits":
        pool = _load_digits()
    elif source == "cifar100":
        pool = _load_cifar100(cache_dir)
    else:
        pool = _load_folder(source, _cache_root(cache_dir), listed)
    if labels == "coarse" and pool.fine_to_coarse is None:
        raise DatasetError(f"labels = \"coarse\" needs a fine->coarse map, and {pool.name} has none "
                           "(CIFAR-100 and class folders named as its 100 classes have one)")
    data = _hold_out(pool, val_split, seed, limit)
    data = to_coarse(data) if labels == "coarse" else data
    if on_outline is not None and not told:
        on_outline(outline_of(data))
    return data


def to_coarse(data: Dataset) -> Dataset:
    """``data`` relabelled with its superclasses: ``y -> fine_to_coarse[y]`` in every split.

    Class names are CIFAR-100's superclass names for its table, else ``"coarse<i>"``; the result
    has no map of its own.
    """
    if data.fine_to_coarse is None:
        raise DatasetError(f"{data.name} has no fine->coarse map, so it has no superclass labels")
    table = np.asarray(data.fine_to_coarse, dtype=np.int32)
    if len(table) != data.num_classes:
        raise DatasetError(f"{data.name}: fine->coarse map has {len(table)} entries for {data.num_classes} classes")
    num_coarse = int(table.max()) + 1
    if tuple(data.fine_to_coarse) == FINE_TO_COARSE:
        names = list(COARSE_NAMES)
    else:
        names = [f"coarse{i}" for i in range(num_coarse)]
    return dataclasses.replace(
        data, class_names=names, y_train=table[data.y_train], y_val=table[data.y_val],
        y_test=None if data.y_test is None else table[data.y_test], fine_to_coarse=None,
    )


# --- splitting -----------------------------------------------------------------------------------

def _check_split_args(val_split, seed, limit):
    if isinstance(val_split, bool) or not isinstance(val_split, numbers.Real) or not (
            (isinstance(val_split, numbers.Integral) and val_split >= 1) or 0 <= val_split < 1):
        raise DatasetError(f"val_split must be 0, a fraction in (0, 1) or an integer count >= 1 "
                           f"(got {val_split!r})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DatasetError(f"seed must be an integer >= 0 (got {seed!r})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 1):
        raise DatasetError(f"limit must be an integer >= 1 (got {limit!r})")


def _split_sizes(pool_size: int, val_split, limit, name) -> tuple[int, int]:
    """``(train, val)`` image counts of a pool of ``pool_size`` training images after the split."""
    size = limit if limit is not None and limit < pool_size else pool_size
    if val_split == 0:  # no validation split
        return size, 0
    num_val = int(val_split) if isinstance(val_split, numbers.Integral) else max(1, round(val_split * size))
    if num_val >= size:
        raise DatasetError(f"val_split={val_split!r} leaves no training images ({size} images in {name})")
    return size - num_val, num_val


def _hold_out(pool: Dataset, val_split, seed, limit) -> Dataset:
    """``pool`` with its training images reduced to ``limit`` and split into train and val."""
    rng = np.random.default_rng(seed)
    x, y = pool.x_train, pool.y_train
    if limit is not None and limit < len(y):
        keep = _stratified_sample(y, limit, rng)
        x, y = x[keep], y[keep]
    _, num_val = _split_sizes(len(y), val_split, limit, pool.name)
    if num_val == 0:  # val_split = 0: every image trains
        return dataclasses.replace(pool, x_train=x, y_train=y, x_val=x[:0], y_val=y[:0])
    val = _stratified_sample(y, num_val, rng)
    train = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    return dataclasses.replace(pool, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])


def _stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` labels, each class taking its share (largest remainder, random ties)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    take = np.floor(quota).astype(np.int64)
    order = rng.permutation(len(classes))
    by_remainder = order[np.argsort(-(quota - take)[order], kind="stable")]
    take[by_remainder[: size - take.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def _pool(name, class_names, x_train, y_train, x_test=None, y_test=None, fine_to_coarse=None):
    """A Dataset holding the whole training pool, before the validation split."""
    empty_x, empty_y = x_train[:0], y_train[:0]
    return Dataset(name, list(class_names), x_train, y_train.astype(np.int32), empty_x, empty_y,
                   x_test, None if y_test is None else y_test.astype(np.int32), fine_to_coarse)


# --- named sources -------------------------------------------------------------------------------

def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DatasetError("the digits dataset needs scikit-learn (pip install scikit-learn)") \
            from error
    digits = load_digits()
    small = np.round(digits.images * (255 / 16)).astype(np.uint8)
    large = np.stack([np.asarray(Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                 Image.Resampling.BILINEAR))
                      for image in small])
    x = np.repeat(large[..., None], 3, axis=-1)
    return _pool("digits", [str(i) for i in range(10)], x, digits.target)


def _load_cifar100(cache_dir) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except Exception as error:  # ImportError, or a broken TensorFlow underneath
        raise DatasetError(f"cifar100 needs tensorflow-datasets, which cannot be imported "
                           f"({_one_line(error)}); {_FOLDER_HINT}") from error
    data_dir = None if cache_dir is None else os.fspath(Path(cache_dir).expanduser() / "tfds")
    try:
        builder = tfds.builder("cifar100", data_dir=data_dir)
        if not builder.is_prepared():
            _check_can_download(builder)  # one line now, not ten silent retries over minutes
        builder.download_and_prepare()
        train, test = (tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
                       for split in ("train", "test"))
        class_names = builder.info.features["label"].names
    except DatasetError:
        raise
    except Exception as error:  # no network, a failed download, a corrupt preparation...
        raise DatasetError(f"could not load cifar100 with tensorflow-datasets "
                           f"({_one_line(error)}); {_FOLDER_HINT}") from error
    return _pool("cifar100", class_names, train["image"], train["label"], test["image"],
                 test["label"], list(FINE_TO_COARSE))


#: Where tensorflow-datasets downloads CIFAR-100 from.
CIFAR100_HOST = "www.cs.toronto.edu"


def _check_can_download(builder) -> None:
    """``DatasetError`` in one line when CIFAR-100 is not prepared and its host cannot be reached."""
    import socket

    try:
        socket.create_connection((CIFAR100_HOST, 443), timeout=10).close()
    except OSError as error:
        raise DatasetError(f"cifar100 is not in {builder.data_dir_root} and cannot be downloaded "
                           f"({CIFAR100_HOST}: {error.strerror or error.__class__.__name__}); download it where "
                           f"there is network (tensorflow-datasets, TFDS_DATA_DIR) or {_FOLDER_HINT}") from None


# --- class folders -------------------------------------------------------------------------------

def _cache_root(cache_dir) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root()


def _fine_to_coarse(class_names) -> list[int] | None:
    """CIFAR-100's fine->coarse map for folders named as its 100 classes, else None."""
    return list(FINE_TO_COARSE) if tuple(class_names) == FINE_NAMES else None


def _load_folder(source: str, cache_root: Path, listed=None) -> Dataset:
    """A directory or tar archive of class folders, decoded once and then read from the cache.

    ``listed(class_names, number of training images)`` is called once they are known, before decoding.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset path not found: {source}{did_you_mean(source, DATASETS)} (a class-folder directory "
                           f"or .tar.gz, or a dataset by name: {', '.join(DATASETS)})")
    path = path.resolve()
    if path.is_dir():
        members = _list_directory(path)
        stats = [(m[0], *_size_and_mtime(m[1])) for m in members]
    elif tarfile.is_tarfile(path):
        members = None  # read only on a cache miss
        stats = _size_and_mtime(path)
    else:
        raise DatasetError(f"not a dataset: {source} is neither a directory of class folders "
                           f"nor a .tar.gz archive of one")
    key = hashlib.sha256(repr((_CACHE_FORMAT, IMAGE_SIZE, str(path), stats)).encode()).hexdigest()
    cache_file = cache_root / f"{path.name}-{key[:16]}.npz"
    arrays = _read_cache(cache_file)
    if arrays is None:
        arrays = _decode_tree(_read_tar(path) if members is None else members, source, listed)
        _write_cache(cache_file, arrays)
    elif listed is not None:
        listed([str(name) for name in arrays["class_names"]], len(arrays["y_train"]))
    class_names = [str(name) for name in arrays["class_names"]]
    fine_to_coarse = _fine_to_coarse(class_names)
    return _pool(source, class_names, arrays["x_train"], arrays["y_train"], arrays.get("x_test"),
                 arrays.get("y_test"), fine_to_coarse)


def _size_and_mtime(path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _image_parts(name: str) -> tuple[str, ...] | None:
    """The path components of an image file's name, or None for other and hidden files."""
    parts = tuple(p for p in name.replace(os.sep, "/").split("/") if p not in ("", "."))
    if not parts or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return None
    if any(p.startswith(".") for p in parts):
        return None
    return parts


def _list_directory(root: Path) -> list[tuple[tuple[str, ...], str]]:
    """``(relative path components, file path)`` of every image under ``root``, in sorted order."""
    members = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders.sort()
        for file in sorted(files):
            parts = _image_parts(os.path.relpath(os.path.join(folder, file), root))
            if parts:
                members.append((parts, os.path.join(folder, file)))
    return members


def _read_tar(path: Path) -> list[tuple[tuple[str, ...], bytes]]:
    """``(path components, file bytes)`` of every image in a tar archive, read without extracting."""
    try:
        with tarfile.open(path, "r:*") as archive:
            return [(parts, archive.extractfile(member).read()) for member in archive
                    if member.isfile() and (parts := _image_parts(member.name))]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read archive {path}: {_one_line(error)}") from error


def _decode_tree(members, source: str, listed=None) -> dict[str, np.ndarray]:
    """Sort members into splits and classes and decode them: the arrays the cache holds.

    ``listed(class_names, number of training images)`` is called before the images decode.
    """
    parts = [p for p, _ in members]
    while (parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1
           and parts[0][0] not in ("train", "test")):
        parts = [p[1:] for p in parts]  # a wrapping folder, e.g. "cifar/train/apple/1.jpg"
    has_splits = any(p[0] == "train" for p in parts)
    splits = {"train": [], "test": []}
    for p, (_, payload) in zip(parts, members):
        if has_splits and len(p) > 2 and p[0] in splits:
            splits[p[0]].append((p[1], "/".join(p), payload))
        elif not has_splits and len(p) > 1:
            splits["train"].append((p[0], "/".join(p), payload))
    if not splits["train"]:
        raise DatasetError(f"no images found in {source}: expected train/<class>/*.jpg "
                           f"or <class>/*.jpg ({', '.join(IMAGE_EXTENSIONS)})")
    class_names = sorted({item[0] for item in splits["train"]})
    unknown = sorted({item[0] for item in splits["test"]} - set(class_names))
    if unknown:
        raise DatasetError(f"test classes missing from train in {source}: {', '.join(unknown[:5])}")
    if listed is not None:
        listed(class_names, len(splits["train"]))
    label = {name: i for i, name in enumerate(class_names)}
    arrays = {"class_names": np.array(class_names)}
    for split, items in splits.items():
        if items:
            items.sort(key=lambda item: item[1])
            arrays[f"x_{split}"] = _decode_all([(f"{source}:{name}", payload)
                                                for _, name, payload in items])
            arrays[f"y_{split}"] = np.array([label[item[0]] for item in items], np.int32)
    return arrays


def _decode_all(items: list[tuple[str, bytes | str]]) -> np.ndarray:
    """Decode ``(name, bytes or file path)`` items into one ``(N, 32, 32, 3)`` uint8 array.

    Many images (2,000 or more, with 2 or more usable CPUs) are decoded by k worker processes, each
    given one contiguous chunk, k = min(CPUs, ceil(N / 1000), 32): CIFAR-100's 50,000 JPEGs take
    about 5 s in one process. The workers run :mod:`.jpeg_worker` as a script (``sys.executable
    path/to/jpeg_worker.py``), which imports only numpy and PIL and starts in about 0.1 s. Not
    :mod:`multiprocessing`: a spawned worker that unpickles a function from ``keras_softmax``
    re-imports the whole package, Keras and its backend (seconds per worker), and forking a process
    that runs TensorFlow or JAX threads is unsafe. The result is the same, byte for byte and in
    order, as one process's; the first image that cannot be decoded raises the same
    :class:`DatasetError`. If a worker cannot start, or fails other than on an image, the items
    are decoded in this process (with a warning).

    ``KERAS_SOFTMAX_DECODE_WORKERS`` (a positive integer) sets k whatever N; 1 decodes in this
    process.
    """
    workers = _decode_workers(len(items))
    if workers > 1:
        out = _decode_in_workers(items, workers)
        if out is not None:
            return out
    out = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, (name, payload) in enumerate(items):
        out[i] = _decode_image(name, payload)
    return out


def _decode_workers(count: int) -> int:
    """How many worker processes decode ``count`` images (1: none, this process decodes)."""
    setting = os.environ.get(_WORKERS_VARIABLE, "").strip()
    if setting:
        try:
            workers = int(setting)
        except ValueError:
            workers = 0
        if workers < 1:
            raise DatasetError(f"{_WORKERS_VARIABLE} must be a positive integer (got {setting!r})")
        return max(1, min(workers, count))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if count < _PARALLEL_FROM or cpus < 2:
        return 1
    return min(cpus, math.ceil(count / _IMAGES_PER_WORKER), _MAX_WORKERS)


def _decode_in_workers(items, workers: int) -> np.ndarray | None:
    """Decode in ``workers`` processes, one contiguous chunk each; None if a worker fails to run.

    A worker's stdin, stdout and stderr are unnamed temporary files, not pipes: nothing can block,
    and this process's share of the work is a write and a read per worker (pipes fed and drained
    by ``communicate()`` in a thread per worker cost this process 1.4 s of CPU for CIFAR-100, files
    0.4 s: a serial part that would cap the speedup on many cores).
    """
    bounds = [len(items) * i // workers for i in range(workers + 1)]
    out = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    with contextlib.ExitStack() as files:
        started = []
        try:
            try:
                for start, stop in zip(bounds, bounds[1:]):
                    batch, output, errors = (files.enter_context(tempfile.TemporaryFile())
                                             for _ in range(3))
                    batch.write(jpeg_worker.pack_batch(payload for _, payload in items[start:stop]))
                    batch.seek(0)
                    started.append((subprocess.Popen([sys.executable, jpeg_worker.__file__],
                                                     stdin=batch, stdout=output, stderr=errors),
                                    output, errors, start, stop))
            except (OSError, ValueError) as error:
                return _fall_back(f"cannot start a decode worker ({_one_line(error)})")
            for process, *_ in started:
                process.wait()
        finally:  # after an error or an interrupt, leave no worker running
            for process, *_ in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        for process, output, errors, start, stop in started:  # in order: the first bad image
            if process.returncode == 0 and _read_exactly(output, out[start:stop]):
                continue
            errors.seek(0)
            report = errors.read().decode(errors="replace").strip().splitlines()
            bad = re.fullmatch(r"item (\d+): (.*)", report[-1]) if report else None
            if process.returncode == 1 and bad and int(bad[1]) < stop - start:
                raise DatasetError(f"cannot decode image {items[start + int(bad[1])][0]}: {bad[2]}")
            reason = report[-1] if report else f"exit status {process.returncode}"
            return _fall_back(f"a decode worker failed ({reason})")
    return out


def _read_exactly(file, array: np.ndarray) -> bool:
    """Fill the contiguous ``array`` from the start of ``file``; False if its size differs."""
    file.seek(0)
    return file.readinto(array.data.cast("B")) == array.nbytes and not file.read(1)


def _fall_back(reason: str) -> None:
    warnings.warn(f"decoding images in one process: {reason}", stacklevel=7)  # load_dataset's caller
    return None


def _decode_image(name: str, payload: bytes | str) -> np.ndarray:
    """One image as a (32, 32, 3) uint8 array (see :func:`.jpeg_worker.decode_image`)."""
    try:
        return jpeg_worker.decode_image(payload)
    except jpeg_worker.ImageDecodeError as error:
        raise DatasetError(f"cannot decode image {name}: {error}") from None


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(f"ignoring unreadable dataset cache {path}: {_one_line(error)}", stacklevel=4)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, **arrays)
    except OSError as error:
        warnings.warn(f"could not write dataset cache {path}: {_one_line(error)}", stacklevel=4)
