"""``keras-softmax train --head adaptive|sampled|entmax_alpha`` on digits and the CIFAR-100 copy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from .helpers import TINY, assert_ok, assert_user_error, invoke

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar100-train-jpg.tar.gz"
NEW_HEADS = {
    "adaptive": ["--head-param", "cutoffs=[3]"],
    "sampled": ["--head-param", "num_sampled=4"],
    "entmax_alpha": ["--head-param", "learn_alpha=true", "--head-param", "alpha=1.3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("head", list(NEW_HEADS))
def test_train_on_digits(head, tmp_path):
    out = tmp_path / head
    # XLA for adaptive (its per-chunk conds); fit compiles the other two in tests/heads/test_projection.py
    # and test_entmax_alpha.py
    jit = "true" if head == "adaptive" else "false"
    result = assert_ok(invoke("train", "--head", head, *NEW_HEADS[head], "--epochs", "2", *TINY,
                              "--set", f"jit_compile={jit}", "--out", out))
    assert f"training {head} on digits" in result.stdout
    if head == "sampled":  # the digits preset's optimizer has weight decay: the exact dense update
        assert "class-kernel updates: dense: " in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["head"] == head and 0.0 <= report["accuracy"] <= 1.0
    with (out / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    if head in ("adaptive", "sampled"):
        assert all(r["accuracy"] == "" for r in rows)  # not measured in training (features, not scores)
    model = keras.saving.load_model(out / "model.keras")
    layer = model.layers[-1]
    assert layer.name.startswith(head.split("_")[0]) or type(layer).__name__.lower().startswith(head[:5])
    if head in ("adaptive", "sampled"):
        assert layer.num_classes == 10 and "logits" not in [x.name for x in model.layers]
        assert layer.class_order is None or sorted(layer.class_order) == list(range(10))
    else:
        assert layer.learn_alpha and float(np.asarray(layer.alpha_value())) != pytest.approx(1.3)


def test_projection_heads_refuse_cutmix_and_sampled_label_smoothing(tmp_path):
    for head, setting in (("sampled", "cutmix=0.5"), ("adaptive", "cutmix=0.5"), ("sampled", "label_smoothing=0.1")):
        assert_user_error(invoke("train", "--head", head, *TINY, "--set", setting, "--out", tmp_path / "run"),
                          setting.split("=")[0], "must be 0")
    assert not (tmp_path / "run").exists()


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("head", list(NEW_HEADS))
def test_one_epoch_on_the_cifar100_copy(head, tmp_path, cache_dir):
    if not ARCHIVE.is_file():
        pytest.skip(f"the CIFAR-100 copy is not here: {ARCHIVE}")
    out = tmp_path / "run"
    # the preset's label smoothing (0.1) stays on, except for sampled softmax, which has none
    extra = {"adaptive": [], "sampled": ["--head-param", "num_sampled=32", "--set", "label_smoothing=0"],
             "entmax_alpha": NEW_HEADS[head]}[head]
    assert_ok(invoke("train", "--head", head, *extra, "--dataset", ARCHIVE, "--epochs", "1", "--set", "limit=600",
                     "--set", "widths=[4, 8, 8, 8]", "--batch-size", "64", "--val-split", "100",
                     "--set", "jit_compile=false", "--out", out))
    report = json.loads((out / "report.json").read_text())
    assert report["split_sizes"]["val"] == 100 and len(report["confusion_matrix"]) == 100
    if head == "adaptive":
        layer = keras.saving.load_model(out / "model.keras").layers[-1]
        assert layer.num_classes == 100 and layer.cutoffs == [20]  # the default for 100 classes
