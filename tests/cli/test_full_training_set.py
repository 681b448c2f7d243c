"""``val_split = 0``: train on every training image (the settings chosen on a validation split before),
then report on the dataset's test split; refused where nothing is held out to report on."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from keras_softmax.data import load_dataset

from .helpers import ROOT, TINY, assert_ok, assert_user_error, invoke

TWO_EPOCHS = [*TINY, "--epochs", "2"]  # TINY's limit=300 keeps the whole 300-image train/ below


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """train/<digit>/*.png (300 images) and test/<digit>/*.png (120 other images) of scikit-learn's digits."""
    data = load_dataset("digits", val_split=0.2, seed=0)
    root = tmp_path_factory.mktemp("digits-tree")
    for split, images, labels in (("train", data.x_train[:300], data.y_train[:300]),
                                  ("test", data.x_val[:120], data.y_val[:120])):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / data.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def _read_split(root, split):
    """The split's images and labels read straight from the PNG files (classes: sorted folder names)."""
    names = sorted(p.name for p in (root / split).iterdir())
    images, labels = [], []
    for index, name in enumerate(names):
        for path in sorted((root / split / name).iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(index)
    return np.stack(images), np.asarray(labels)


def test_every_training_image_trains_and_the_test_split_is_reported(tree, tmp_path):
    import keras

    out = tmp_path / "run"
    result = assert_ok(invoke("train", "--head", "log_softmax", *TWO_EPOCHS, "--val-split", "0", "--dataset", tree,
                              "--out", out))
    assert "300 train / no val (val_split = 0) images" in result.output
    assert "evaluating on the test split" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("done: test accuracy"), last

    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test"
    assert report["split_sizes"] == {"train": 300, "val": 0, "test": 120}
    assert "calibration" not in report  # a temperature is fit on validation only
    # No validation figures in the history: nothing was held out.
    with (out / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(row["val_loss"] == "" and row["val_accuracy"] == "" for row in rows)

    # The reported accuracy is the saved model's on the test images read independently of the package.
    images, labels = _read_split(tree, "test")
    model = keras.saving.load_model(str(out / "model.keras"))
    predicted = np.argmax(np.asarray(model.predict(images, verbose=0)), axis=-1)
    assert report["accuracy"] == pytest.approx(float(np.mean(predicted == labels)), abs=1e-9)
    assert report["num_examples"] == 120

    # The run has no validation split to evaluate; its test split evaluates to the same figure.
    assert_user_error(invoke("evaluate", out), "no validation split", "val_split = 0", "--split test")
    assert_ok(invoke("evaluate", out, "--split", "test"))
    (evaluation,) = (out / "evaluations").glob("*-test")
    again = json.loads((evaluation / "report.json").read_text())
    assert again["accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)


def test_nothing_to_report_on_is_refused_before_the_directory_is_claimed(tmp_path):
    out = tmp_path / "run"
    assert_user_error(invoke("train", *TWO_EPOCHS, "--val-split", "0", "--out", out),
                      "val_split = 0", "digits", "test split")
    assert not out.exists()


_JAX_AHEAD = textwrap.dedent("""
    import sys
    from keras_softmax.training import trainer
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train
    trainer.can_warm_convolutions = lambda placement: True  # as on a GPU
    config = resolve(None, {"dataset": sys.argv[1], "val_split": 0, "epochs": 1, "widths": [4, 4, 8, 8],
                            "batch_size": 64, "compile_ahead": sys.argv[3] == "ahead"})
    lines = []
    run = train(config, sys.argv[2], log=lines.append)
    print("\\n".join(lines))
""")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ahead", "convolutions only"])
def test_jax_compiles_no_test_step_ahead_without_a_validation_split(tree, tmp_path, mode):
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_SOFTMAX_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", _JAX_AHEAD, str(tree), str(tmp_path / "run"), mode],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    ahead = [line for line in process.stdout.splitlines() if "compiled ahead in" in line]
    # fit runs no test step, so neither its program nor its batch's convolutions are compiled ahead
    expected = ("convolutions at batch 64 and train step compiled ahead in " if mode == "ahead" else
                "convolutions at batch 64 compiled ahead in ")
    assert len(ahead) == 1 and ahead[0].startswith(expected), process.stdout
