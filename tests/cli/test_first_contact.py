"""Issue 22, "first contact": evaluate matches classes by name; predict takes folders and globs,
keeps going past an unreadable image, and explains an unfinished run.

Each test here failed on the code before issue 22 (see the docstrings for what it did then).
"""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from .helpers import assert_ok, assert_user_error, invoke, strict_json


def _class_folders(root, names_and_labels, per_class=6):
    """``root/train/<name>/*.png`` from the digits images of the given labels; returns the images by name."""
    from PIL import Image

    from keras_softmax.data import load_dataset

    data = load_dataset("digits", val_split=0.1, seed=0)
    images = {}
    for name, label in names_and_labels:
        folder = root / "train" / name
        folder.mkdir(parents=True)
        chosen = data.x_train[data.y_train == label][:per_class]
        for i, image in enumerate(chosen):
            Image.fromarray(np.asarray(image)).save(folder / f"{i}.png")
        images[name] = chosen
    return images


def test_evaluate_refuses_a_dataset_whose_class_names_the_model_does_not_know(shared_run, tmp_path):
    """Folders ``zero``..``nine`` used to be scored by position against a model trained on ``0``..``9``
    (a silent 10 %); now one line lists the unknown names and nothing is written."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    _class_folders(tmp_path / "words", [(w, i) for i, w in enumerate(words)], per_class=2)
    before = sorted(p.name for p in shared_run.path.iterdir())
    evaluations = sorted(p.name for p in (shared_run.path / "evaluations").glob("*")) \
        if (shared_run.path / "evaluations").is_dir() else []
    line = assert_user_error(invoke("evaluate", shared_run.path, "--dataset", tmp_path / "words", "--split", "train"),
                             "10 of the dataset's 10 classes are not classes of the model", "matched by folder name")
    for word in ("zero", "five", "nine"):
        assert word in line
    assert sorted(p.name for p in shared_run.path.iterdir()) == before
    after = sorted(p.name for p in (shared_run.path / "evaluations").glob("*")) \
        if (shared_run.path / "evaluations").is_dir() else []
    assert after == evaluations


def test_evaluate_scores_a_subset_of_the_classes_by_name(shared_run, tmp_path):
    """A 3-class folder on a 10-class model ended in "class_names has 3 names but probs has 10
    classes"; now it is scored on those three classes, found by name whatever their order."""
    _class_folders(tmp_path / "three", [("7", 7), ("1", 1), ("3", 3)])
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    # the shared run may already hold other tests' evaluations: take the one this command writes
    earlier = set((run / "evaluations").iterdir()) if (run / "evaluations").is_dir() else set()
    result = assert_ok(invoke("evaluate", run, "--dataset", tmp_path / "three", "--split", "train"))
    (where,) = set((run / "evaluations").iterdir()) - earlier
    report = strict_json((where / "report.json").read_text())
    assert [row["name"] for row in report["per_class"]] == ["1", "3", "7"]  # the folder's classes, sorted
    assert report["classes_scored"]["dataset"] == 3 and report["classes_scored"]["model"] == 10

    from keras_softmax.data import load_dataset
    from keras_softmax.training.config import resolve

    config = resolve(run / "config.toml")
    data = load_dataset(str(tmp_path / "three"), val_split=config.val_split, seed=config.seed)
    assert data.class_names == ["1", "3", "7"]
    model = keras.saving.load_model(str(run / "model.keras"))
    outputs = np.exp(model.predict(data.x_train, verbose=0))[:, [1, 3, 7]]  # the model's columns, by name
    expected_hits, total = int(np.sum(outputs.argmax(axis=1) == data.y_train)), len(data.y_train)
    assert report["accuracy"] == pytest.approx(expected_hits / total)
    assert f"train accuracy {100 * expected_hits / total:.2f}%" in result.stdout


@pytest.fixture
def png_folder(tmp_path, digit_pngs):
    paths, _, _ = digit_pngs
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, path in enumerate(paths):
        shutil.copy(path, (folder if i % 2 else folder / "more") / path.name)
    (folder / "notes.txt").write_text("not an image, and not one of the folder's images")
    return folder, paths


def test_predict_takes_a_folder(shared_run, png_folder):
    """``predict RUN photos/`` answered "Is a directory"."""
    folder, paths = png_folder
    result = assert_ok(invoke("predict", shared_run.path, folder, "--json", "--top-k", "1"))
    results = strict_json(result.stdout)
    assert sorted(r["image"].rsplit("/", 1)[1] for r in results) == sorted(p.name for p in paths)
    assert all(len(r["predictions"]) == 1 for r in results)


def test_predict_takes_a_glob(shared_run, png_folder):
    folder, paths = png_folder
    result = assert_ok(invoke("predict", shared_run.path, str(folder / "**" / "*.png"), "--json"))
    assert len(strict_json(result.stdout)) == len(paths)


def test_an_unreadable_image_gets_its_own_line_and_the_rest_are_predicted(shared_run, digit_pngs, tmp_path):
    """One unreadable file used to abort the whole batch with no result for the good images."""
    paths, _, _ = digit_pngs
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = invoke("predict", shared_run.path, paths[0], bad, paths[1], tmp_path / "absent.png")
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"Error: cannot read image {bad}")
    assert errors[1] == f"Error: image not found: {tmp_path / 'absent.png'}"
    printed = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert printed == [str(paths[0]), str(paths[1])]


def test_predict_on_an_unfinished_run_says_how_to_resume_it(shared_run, digit_pngs, tmp_path):
    """It said the run was "neither a SavedModel directory nor a run directory"."""
    from keras_softmax.training.rundir import RunDirectory

    run = RunDirectory(tmp_path / "unfinished")
    run.prepare(resume=False, overwrite=False)
    shutil.copy(shared_run.path / "config.toml", run.config)
    run.checkpoints.mkdir()
    (run.checkpoints / "epoch-0001.weights.h5").write_bytes(b"weights")
    run.state.write_text(json.dumps({"epoch": 1, "weights": "epoch-0001.weights.h5", "history": []}))
    line = assert_user_error(invoke("predict", run.path, digit_pngs[0][0]),
                             "is an unfinished run", "after epoch 1", f"keras-softmax train --resume --out {run.path}")
    assert "neither" not in line


def test_cifar100_without_its_data_says_what_is_missing_in_one_line(tmp_path, monkeypatch):
    """``--dataset cifar100`` on a clean install failed with "No module named 'importlib_resources'",
    and without network it retried for minutes. Now: tensorflow-datasets imports and builds the
    dataset (the cli extra installs what it needs), and with no data and no network one line says so."""
    pytest.importorskip("tensorflow_datasets")
    import socket

    def offline(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # (read when tensorflow-datasets is imported)
    monkeypatch.setattr(socket, "create_connection", offline)
    import tensorflow_datasets

    if tensorflow_datasets.builder("cifar100").is_prepared():
        pytest.skip("CIFAR-100 is prepared here: nothing is missing")
    out = tmp_path / "run"
    line = assert_user_error(invoke("train", "--dataset", "cifar100", "--epochs", "1", "--out", out),
                             "cifar100 is not in ", "and cannot be downloaded",
                             "Name or service not known", "class-folder copy")
    assert "importlib_resources" not in line
    assert not out.exists()


@pytest.mark.slow
def test_cifar100_trains_when_its_data_is_there(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    if not tfds.builder("cifar100").is_prepared():
        pytest.skip("CIFAR-100 is not prepared in the tensorflow-datasets folder here (no network to fetch it)")
    assert_ok(invoke("train", "--dataset", "cifar100", "--epochs", "1", "--set", "limit=500",
                     "--set", "widths=[4, 8, 8, 8]", "--set", "jit_compile=false", "--out", tmp_path / "run"))
    assert (tmp_path / "run" / "report.json").is_file()
