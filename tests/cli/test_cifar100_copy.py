"""A short CPU run on the CIFAR-100 JPEG copy in ../shared/data; skipped when the copy is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keras_softmax.cifar100 import FINE_NAMES

from .helpers import assert_ok, invoke

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar100-train-jpg.tar.gz"


@pytest.mark.data
@pytest.mark.slow
def test_one_epoch_on_the_cifar100_copy(tmp_path, cache_dir):
    if not ARCHIVE.is_file():
        pytest.skip(f"the CIFAR-100 copy is not here: {ARCHIVE}")
    out = tmp_path / "run"
    result = assert_ok(invoke("train", "--head", "log_softmax", "--dataset", ARCHIVE, "--epochs", "1",
                              "--set", "limit=1000", "--set", "widths=[4, 8, 8, 8]", "--batch-size", "64",
                              "--val-split", "200", "--set", "jit_compile=false", "--out", out))
    assert "training log_softmax on" in result.stdout and "800 train / 200 val images, 100 classes" in result.stdout

    info = json.loads((out / "model_info.json").read_text())
    names = info["class_names"]
    assert len(names) == 100 and names == sorted(names) and len(set(names)) == 100
    assert {"apple", "aquarium_fish", "worm"} <= set(names)
    assert names == list(FINE_NAMES)  # the official fine labels: folder order is label order
    meta = ARCHIVE.with_name("cifar100-meta.json")
    if meta.is_file():
        assert names == json.loads(meta.read_text())["fine_names"]

    report = json.loads((out / "report.json").read_text())
    assert report["split_sizes"] == {"train": 800, "val": 200, "test": 0}
    assert report["dataset"] == str(ARCHIVE) and report["epochs"] == 1
    assert 0.0 <= report["accuracy"] <= 1.0 and len(report["confusion_matrix"]) == 100
    assert (out / "report.md").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    # The decoded archive is cached under KERAS_SOFTMAX_CACHE, not in $HOME.
    assert list(cache_dir.glob("cifar100-train-jpg.tar*.npz"))
