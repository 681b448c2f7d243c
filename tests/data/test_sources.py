"""load_dataset: digits, class folders and archives, the cache, the train/val split, errors."""

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_softmax.cifar100 import FINE_NAMES, FINE_TO_COARSE
from keras_softmax.data import DATASETS, Dataset, DatasetError, load_dataset
from keras_softmax.data import jpeg_worker, sources

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_ARCHIVE = SHARED_DATA / "cifar100-train-jpg.tar.gz"
COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "eel": (30, 30, 200)}


def write_tree(root, per_class=4, test_per_class=2, classes=COLOURS, fmt="png"):
    """train/<class>/*.png (and test/...) of solid colours; returns root."""
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (32, 32), colour).save(folder / f"{i}.{fmt}")
    return root


def write_tar(tree, archive, wrap="copy"):
    """A .tar.gz of ``tree`` under the folder ``wrap``."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=wrap)
    return archive


def pool(labels):
    """A training pool whose image i holds i in its first two pixels, to track where it goes."""
    labels = np.asarray(labels, np.int32)
    index = np.arange(len(labels))
    x = np.zeros((len(labels), 32, 32, 3), np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = index % 256, index // 256
    return sources._pool("pool", [str(c) for c in range(labels.max() + 1)], x, labels)


def ids(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


# --- digits --------------------------------------------------------------------------------------

def test_digits_shapes_dtypes_and_range():
    data = load_dataset("digits")
    assert isinstance(data, Dataset) and "digits" in DATASETS
    assert data.name == "digits" and data.class_names == [str(i) for i in range(10)]
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (32, 32, 3)
    assert data.y_train.dtype == np.int32 and data.y_val.dtype == np.int32
    assert data.image_shape == (32, 32, 3) and data.num_classes == 10
    assert data.sizes() == {"train": 1617, "val": 180, "test": 0}
    assert data.x_train.min() == 0 and data.x_train.max() == 255
    assert (data.x_train[..., 0] == data.x_train[..., 2]).all()  # grey, replicated to RGB
    assert data.x_test is None and data.fine_to_coarse is None
    assert repr(data) == "Dataset(name='digits', num_classes=10, train=1617, val=180, test=0)"


def test_digits_split_is_seeded():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)


def test_digits_val_count_and_limit():
    assert load_dataset("digits", val_split=100).sizes()["val"] == 100
    data = load_dataset("digits", limit=200, seed=3)
    assert data.sizes() == {"train": 180, "val": 20, "test": 0}
    kept = np.bincount(np.concatenate([data.y_train, data.y_val]), minlength=10)
    assert np.abs(kept - 20).max() <= 1  # classes hold 174..183 of the 1797 digits
    assert np.abs(np.bincount(data.y_val, minlength=10) - 2).max() <= 1


# --- the split -----------------------------------------------------------------------------------

def test_split_is_stratified_disjoint_and_complete():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    data = sources._hold_out(pool(labels), 0.2, 0, None)
    train, val = ids(data.x_train), ids(data.x_val)
    assert len(val) == 40 and not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(200))
    np.testing.assert_array_equal(labels[val], data.y_val)
    assert np.bincount(data.y_val).tolist() == [20, 10, 6, 4]


def test_split_rounds_shares_by_largest_remainder():
    labels = np.repeat(np.arange(3), [5, 3, 2])
    counts = {tuple(np.bincount(sources._hold_out(pool(labels), 5, s, None).y_val, minlength=3))
              for s in range(20)}
    assert counts <= {(3, 1, 1), (2, 2, 1), (3, 2, 0), (2, 1, 2)}  # shares 2.5, 1.5, 1
    assert all(sum(c) == 5 for c in counts) and len(counts) > 1  # ties go different ways by seed


def test_limit_takes_a_seeded_stratified_subset():
    labels = np.repeat(np.arange(5), 40)
    a, b = (sources._hold_out(pool(labels), 10, 7, 50) for _ in range(2))
    assert a.sizes() == {"train": 40, "val": 10, "test": 0}
    np.testing.assert_array_equal(ids(a.x_train), ids(b.x_train))
    assert np.bincount(np.concatenate([a.y_train, a.y_val])).tolist() == [10] * 5
    other = sources._hold_out(pool(labels), 10, 8, 50)
    assert set(ids(other.x_train)) != set(ids(a.x_train))


@pytest.mark.parametrize("val_split", [1.0, -0.1, 1.5, -3, True, False, "0.1", None])
def test_bad_val_split(val_split):
    with pytest.raises(DatasetError, match="val_split must be"):
        load_dataset("digits", val_split=val_split)


@pytest.mark.parametrize("val_split", [0, 0.0])
def test_val_split_zero_trains_on_every_image(val_split):
    whole = load_dataset("digits", val_split=0.1, limit=None)
    pool = np.concatenate([whole.x_train, whole.x_val]), np.concatenate([whole.y_train, whole.y_val])
    data = load_dataset("digits", val_split=val_split, seed=3)
    assert data.sizes() == {"train": 1797, "val": 0, "test": 0}
    assert data.x_val.shape == (0, 32, 32, 3) and data.y_val.dtype == np.int32
    # every image of the pool, each once
    assert sorted(map(bytes, data.x_train)) == sorted(map(bytes, pool[0]))
    assert np.bincount(data.y_train).tolist() == np.bincount(pool[1]).tolist()
    assert load_dataset("digits", val_split=0, limit=100).sizes()["train"] == 100
    with pytest.raises(DatasetError, match=r"no validation split in digits \(val_split = 0.*use --split test"):
        data.split("val")


def test_val_split_leaving_no_training_images():
    with pytest.raises(DatasetError, match="leaves no training images"):
        load_dataset("digits", val_split=1797)
    with pytest.raises(DatasetError, match="leaves no training images"):
        load_dataset("digits", limit=1)


@pytest.mark.parametrize("kwargs, message", [({"limit": 0}, "limit must be"),
                                             ({"seed": -1}, "seed must be")])
def test_bad_limit_and_seed(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("digits", **kwargs)


def test_split_names():
    data = load_dataset("digits", limit=100)
    assert data.split("train")[0] is data.x_train and data.split("val")[1] is data.y_val
    with pytest.raises(DatasetError, match=r"^no test split in digits; use --split val$"):
        data.split("test")
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        data.split("dev")


# --- class folders -------------------------------------------------------------------------------

def test_class_folders(tmp_path):
    root = write_tree(tmp_path / "tree")
    data = load_dataset(str(root), val_split=3, cache_dir=tmp_path / "cache")
    assert data.name == str(root) and data.class_names == ["cat", "dog", "eel"]
    assert data.sizes() == {"train": 9, "val": 3, "test": 6}
    assert np.bincount(data.y_val).tolist() == [1, 1, 1]
    for x, y in (data.split("train"), data.split("val"), data.split("test")):
        assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and y.dtype == np.int32
        colours = np.array(list(COLOURS.values()), np.uint8)[y]
        np.testing.assert_array_equal(x, np.broadcast_to(colours[:, None, None, :], x.shape))
    assert data.fine_to_coarse is None


def test_class_folders_without_splits_jpeg_and_resizing(tmp_path):
    for name, colour in COLOURS.items():
        (tmp_path / "flat" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), colour).save(tmp_path / "flat" / name / "a.jpg")
        Image.new("L", (64, 48), 128).save(tmp_path / "flat" / name / "b.JPEG")  # grey, larger
    (tmp_path / "flat" / "notes.txt").write_text("ignored")
    (tmp_path / "flat" / "cat" / ".hidden.jpg").write_bytes(b"not an image")
    data = load_dataset(tmp_path / "flat", val_split=1, cache_dir=tmp_path / "cache")
    assert data.class_names == ["cat", "dog", "eel"] and data.x_test is None
    x, _ = data.split("train")
    images = np.concatenate([x, data.x_val])
    assert images.shape == (6, 32, 32, 3)
    assert np.abs(images.astype(int) - 128).max(axis=(1, 2, 3)).min() <= 2  # a resized grey image


def test_archive_matches_directory(tmp_path):
    root = write_tree(tmp_path / "tree")
    archive = write_tar(root, tmp_path / "tree.tar.gz")
    a = load_dataset(str(root), cache_dir=tmp_path / "cache", val_split=2)
    b = load_dataset(str(archive), cache_dir=tmp_path / "cache", val_split=2)
    assert b.class_names == a.class_names and b.name == str(archive)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(split)[0], b.split(split)[0])
        np.testing.assert_array_equal(a.split(split)[1], b.split(split)[1])


def test_cache_hit_skips_decoding(tmp_path, monkeypatch):
    archive = write_tar(write_tree(tmp_path / "tree"), tmp_path / "tree.tgz")
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    first = load_dataset(archive)
    assert len(list((tmp_path / "cache").glob("tree.tgz-*.npz"))) == 1

    def fail(items):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "_decode_all", fail)
    second = load_dataset(archive)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    with pytest.raises(AssertionError, match="decoded again"):  # a directory has its own entry
        load_dataset(tmp_path / "tree")


def test_cache_is_invalidated_when_the_source_changes(tmp_path):
    tree = write_tree(tmp_path / "tree")
    archive = write_tar(tree, tmp_path / "tree.tar.gz")
    assert load_dataset(archive, cache_dir=tmp_path / "cache").num_classes == 3
    write_tree(tree, classes={"fox": (9, 9, 9)})
    write_tar(tree, archive)
    os.utime(archive, ns=(1, 1))  # even if the size and the clock could not tell
    assert load_dataset(archive, cache_dir=tmp_path / "cache").class_names[-1] == "fox"
    assert load_dataset(tree, cache_dir=tmp_path / "cache").class_names[-1] == "fox"
    Image.new("RGB", (32, 32)).save(tree / "train" / "gnu.png")  # not in a class folder: ignored
    (tree / "train" / "yak").mkdir()
    Image.new("RGB", (32, 32)).save(tree / "train" / "yak" / "0.png")
    assert load_dataset(tree, cache_dir=tmp_path / "cache").class_names[-1] == "yak"


def test_unreadable_cache_is_rebuilt(tmp_path):
    archive = write_tar(write_tree(tmp_path / "tree"), tmp_path / "tree.tar.gz")
    load_dataset(archive, cache_dir=tmp_path / "cache")
    [cache_file] = (tmp_path / "cache").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable dataset cache"):
        assert load_dataset(archive, cache_dir=tmp_path / "cache").num_classes == 3
    assert cache_file.stat().st_size > 100


def test_cifar100_class_names_set_fine_to_coarse(tmp_path):
    classes = {name: (i, i, i) for i, name in enumerate(FINE_NAMES)}
    root = write_tree(tmp_path / "tree", per_class=2, test_per_class=0, classes=classes)
    data = load_dataset(root, cache_dir=tmp_path / "cache", val_split=100)
    assert data.class_names == list(FINE_NAMES) and data.fine_to_coarse == list(FINE_TO_COARSE)


# --- errors --------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match=r"^dataset path not found: .*nowhere \(a class-folder directory or "
                                           r"\.tar\.gz, or a dataset by name: digits, cifar100\)$"):
        load_dataset(str(tmp_path / "nowhere"))
    # A name close to a known one (CIFAR-10 is not one of them) gets it suggested.
    with pytest.raises(DatasetError, match=r"^dataset path not found: cifar10 \(did you mean 'cifar100'\?\)"):
        load_dataset("cifar10")


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "cat" / "readme.txt").write_text("no images")
    with pytest.raises(DatasetError, match="no images found in .*empty"):
        load_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_not_a_dataset_file(tmp_path):
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(DatasetError, match="neither a directory of class folders nor a .tar.gz"):
        load_dataset(tmp_path / "file.txt", cache_dir=tmp_path / "cache")


def test_corrupt_image(tmp_path):
    root = write_tree(tmp_path / "tree")
    (root / "train" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot decode image .*train/cat/bad\.png"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def test_truncated_archive(tmp_path):
    archive = write_tar(write_tree(tmp_path / "tree"), tmp_path / "tree.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read archive"):
        load_dataset(archive, cache_dir=tmp_path / "cache")


def test_test_classes_must_be_training_classes(tmp_path):
    root = write_tree(tmp_path / "tree")
    (root / "test" / "yak").mkdir()
    Image.new("RGB", (32, 32)).save(root / "test" / "yak" / "0.png")
    with pytest.raises(DatasetError, match="test classes missing from train .*: yak"):
        load_dataset(root, cache_dir=tmp_path / "cache")


def test_cifar100_without_tensorflow_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DatasetError, match="cifar100 needs tensorflow-datasets.*class-folder copy"):
        load_dataset("cifar100")


# --- the real CIFAR-100 archive ------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"{SHARED_ARCHIVE} absent")
def test_shared_cifar100_archive():
    """Reads every member of the real archive but decodes only every 50th image (fast)."""
    members = sources._read_tar(SHARED_ARCHIVE)
    assert len(members) == 50_000
    arrays = sources._decode_tree(members[::50], str(SHARED_ARCHIVE))
    assert tuple(arrays["class_names"]) == FINE_NAMES
    assert arrays["x_train"].shape == (1000, 32, 32, 3) and "x_test" not in arrays
    assert np.bincount(arrays["y_train"]).tolist() == [10] * 100
    means = arrays["x_train"].mean(axis=(0, 1, 2)) / 255
    np.testing.assert_allclose(means, [0.507, 0.487, 0.441], atol=0.03)  # CIFAR-100 channel means


# --- decoding in worker processes ----------------------------------------------------------------

WORKERS = sources._WORKERS_VARIABLE


def write_noise_tree(root, per_class=100, classes=("a", "b", "c")):
    """train/<class>/NNN.jpg of seeded noise, one of them 40×24 and one grey; returns root."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
                root / "train" / name / f"{i:03d}.jpg")
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), np.uint8)).save(root / "train" / "a" / "007.jpg")
    Image.fromarray(rng.integers(0, 256, (32, 32), np.uint8), "L").save(root / "train" / "b" / "013.jpg")
    return root


@pytest.fixture
def count_workers(monkeypatch):
    """The number of processes Popen started, counted as they start."""
    started = []
    popen = sources.subprocess.Popen

    def counting(*args, **kwargs):
        started.append(args[0])
        return popen(*args, **kwargs)

    monkeypatch.setattr(sources.subprocess, "Popen", counting)
    return started


def decode(members, workers, monkeypatch):
    monkeypatch.setenv(WORKERS, str(workers))
    return sources._decode_tree(members, "noise")


@pytest.mark.parametrize("kind", ["directory", "archive"])
def test_workers_decode_as_one_process_does(tmp_path, monkeypatch, count_workers, kind):
    root = write_noise_tree(tmp_path / "tree")
    members = (sources._list_directory(root) if kind == "directory"
               else sources._read_tar(write_tar(root, tmp_path / "tree.tar")))
    assert all(isinstance(payload, str if kind == "directory" else bytes) for _, payload in members)
    alone = decode(members, 1, monkeypatch)
    assert count_workers == []
    together = decode(members, 3, monkeypatch)
    assert len(count_workers) == 3
    x = alone["x_train"]
    assert x.shape == (300, 32, 32, 3) and len({image.tobytes() for image in x}) == 300
    assert (x[113, ..., 0] == x[113, ..., 2]).all()  # the grey one, in its place (b/013.jpg)
    assert together["x_train"].tobytes() == x.tobytes()
    np.testing.assert_array_equal(together["y_train"], alone["y_train"])


def test_corrupt_image_with_workers_names_the_first(tmp_path, monkeypatch, count_workers):
    root = write_noise_tree(tmp_path / "tree")
    (root / "train" / "b" / "050.jpg").write_bytes(b"not a jpeg")  # image 150: the second chunk
    good = (root / "train" / "c" / "010.jpg").read_bytes()
    (root / "train" / "c" / "010.jpg").write_bytes(good[:20])  # image 210: the third chunk
    messages = []
    for workers in (3, 1):
        monkeypatch.setenv(WORKERS, str(workers))
        with pytest.raises(DatasetError) as caught:
            load_dataset(root, cache_dir=tmp_path / "cache")
        messages.append(str(caught.value))
    assert len(count_workers) == 3
    assert re.fullmatch(r"cannot decode image .*tree:train/b/050\.jpg: UnidentifiedImageError: .*",
                        messages[0])
    assert messages[0] == messages[1]


def noise_jpeg(seed=0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)).save(
        buffer, "JPEG")
    return buffer.getvalue()


def test_worker_script_imports_neither_keras_nor_the_package(tmp_path):
    Image.new("L", (64, 64), 77).save(tmp_path / "grey.png")
    payloads = [noise_jpeg(), str(tmp_path / "grey.png")]
    run = subprocess.run([sys.executable, "-X", "importtime", jpeg_worker.__file__],
                         input=jpeg_worker.pack_batch(payloads), capture_output=True, check=True)
    assert run.stdout == b"".join(jpeg_worker.decode_image(p).tobytes() for p in payloads)
    imported = {line.split("|")[-1].strip() for line in run.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert {"numpy", "PIL.Image"} <= imported
    assert not {m for m in imported
                if m.split(".")[0] in ("keras", "keras_softmax", "tensorflow", "jax", "torch")}


def test_worker_script_reports_the_bad_item_and_ignores_files_beside_it(tmp_path):
    script = tmp_path / "jpeg_worker.py"
    script.write_text(Path(jpeg_worker.__file__).read_text())
    (tmp_path / "numpy.py").write_text("raise ImportError('the numpy beside the script')\n")
    batch = jpeg_worker.pack_batch([noise_jpeg(1), noise_jpeg(2), b"not an image", noise_jpeg(3)])
    run = subprocess.run([sys.executable, str(script)], input=batch, capture_output=True)
    assert run.returncode == 1 and len(run.stdout) == 2 * 32 * 32 * 3
    assert re.fullmatch(r"item 2: UnidentifiedImageError: cannot identify image file [^\n]*\n",
                        run.stderr.decode()), run.stderr.decode()


def test_one_worker_starts_no_process(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("started a process")

    monkeypatch.setattr(sources.subprocess, "Popen", fail)
    members = sources._list_directory(write_noise_tree(tmp_path / "tree"))
    monkeypatch.delenv(WORKERS, raising=False)
    few = sources._decode_tree(members, "noise")  # 300 images: too few for workers
    np.testing.assert_array_equal(decode(members * 10, 1, monkeypatch)["x_train"][:300:10],
                                  few["x_train"][:30])


def test_workers_that_cannot_run_fall_back_to_one_process(tmp_path, monkeypatch, count_workers):
    members = sources._read_tar(write_tar(write_noise_tree(tmp_path / "tree"), tmp_path / "t.tar"))
    expected = decode(members, 1, monkeypatch)["x_train"]
    monkeypatch.setattr(sources.sys, "executable", str(tmp_path / "no-python"))
    with pytest.warns(UserWarning, match="one process: cannot start a decode worker"):
        np.testing.assert_array_equal(decode(members, 3, monkeypatch)["x_train"], expected)
    monkeypatch.undo()
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nsys.exit('worker crashed')\n")
    monkeypatch.setattr(jpeg_worker, "__file__", str(crash))
    with pytest.warns(UserWarning, match=r"one process: a decode worker failed \(worker crashed\)"):
        np.testing.assert_array_equal(decode(members, 3, monkeypatch)["x_train"], expected)


@pytest.mark.parametrize("setting, images, cpus, workers", [
    (None, 1_999, 16, 1), (None, 2_000, 16, 2), (None, 50_000, 16, 16), (None, 50_000, 2, 2),
    (None, 50_000, 64, 32), (None, 50_000, 1, 1), ("3", 10, 1, 3), ("8", 5, 16, 5), ("1", 50_000, 16, 1),
])
def test_number_of_workers(monkeypatch, setting, images, cpus, workers):
    if setting is None:
        monkeypatch.delenv(WORKERS, raising=False)
    else:
        monkeypatch.setenv(WORKERS, setting)
    monkeypatch.setattr(sources.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert sources._decode_workers(images) == workers


@pytest.mark.parametrize("setting", ["0", "-2", "two", "1.5"])
def test_bad_number_of_workers(monkeypatch, setting):
    monkeypatch.setenv(WORKERS, setting)
    with pytest.raises(DatasetError, match=f"^{WORKERS} must be a positive integer"):
        sources._decode_workers(100)
