"""``keras-softmax train`` through Click's test runner: the run directory of GUIDE §6, complete."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import tomllib

from keras_softmax.evaluation.report import REQUIRED_KEYS
from keras_softmax.training.config import FIELDS, resolve
from keras_softmax.training.rundir import HISTORY_COLUMNS

from .helpers import assert_user_error, invoke, is_png, strict_json

PLOTS = ("loss_curve", "accuracy_curve", "confusion_matrix", "reliability")


def test_run_directory_has_every_artifact(shared_run):
    path = shared_run.path
    for name in ("config.toml", "history.csv", "checkpoints/state.json", "model.keras", "model_info.json",
                 "saved_model/saved_model.pb", "saved_model/assets.extra/model_info.json", "report.json",
                 "report.md"):
        assert (path / name).is_file(), f"{name} is missing from the run directory"
    for plot in PLOTS:
        assert is_png(path / "plots" / f"{plot}.png"), f"plots/{plot}.png is missing or not a PNG"
    # Finished: the checkpoint weights are dropped (model.keras holds them), the state stays.
    assert not list((path / "checkpoints").glob("*.weights.h5"))


def test_config_toml_writes_every_field_and_resolves_to_the_same_config(shared_run):
    written = tomllib.loads((shared_run.path / "config.toml").read_text())
    assert set(written) == set(FIELDS)
    config = resolve(shared_run.path / "config.toml")
    assert config.to_dict() == written
    # The same config as resolving the command line again, with precision "auto" resolved to the
    # policy the run used (float32 on a CPU).
    expected = resolve(None, {"head": "log_softmax", "epochs": 2, "batch_size": 32, "widths": [4, 8, 8, 8],
                              "limit": 300, "jit_compile": False})
    assert expected.precision == "auto" and written["precision"] == "float32"
    assert config == dataclasses.replace(expected, precision="float32")
    assert (config.head, config.epochs, config.widths, config.limit) == ("log_softmax", 2, [4, 8, 8, 8], 300)
    assert json.loads((shared_run.path / "report.json").read_text())["config"] == config.to_dict()


def test_history_has_one_row_per_epoch(shared_run):
    with (shared_run.path / "history.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == HISTORY_COLUMNS
    assert {"epoch_seconds", "images_per_second", "elapsed_seconds"} <= set(reader.fieldnames)
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for row in rows:
        for column in ("loss", "val_loss", "accuracy", "val_accuracy", "lr", "epoch_seconds",
                       "images_per_second", "elapsed_seconds"):
            assert math.isfinite(float(row[column])), (column, row)
        assert float(row["epoch_seconds"]) > 0 and float(row["images_per_second"]) > 0
        assert 0 <= float(row["accuracy"]) <= 1 and 0 <= float(row["val_accuracy"]) <= 1
    elapsed = [float(row["elapsed_seconds"]) for row in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] >= float(rows[0]["epoch_seconds"])
    state = json.loads((shared_run.path / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]


def test_report_json_schema_and_values(shared_run):
    report = strict_json((shared_run.path / "report.json").read_text())
    missing = [key for key in REQUIRED_KEYS if key not in report]
    assert not missing, f"report.json lacks {missing}"
    for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"):
        assert 0.0 <= report[key] <= 1.0, (key, report[key])
    assert report["top5_accuracy"] >= report["accuracy"]
    assert math.isfinite(report["loss"]) and report["loss"] > 0
    assert isinstance(report["epoch_seconds"], list) and len(report["epoch_seconds"]) == 2
    assert all(s > 0 for s in report["epoch_seconds"])
    assert report["train_seconds"] > 0 and report["images_per_second"] > 0
    assert isinstance(report["num_params"], int) and report["num_params"] > 0
    assert (report["head"], report["head_params"], report["dataset"], report["seed"], report["split"]) == (
        "log_softmax", {}, "digits", 0, "val")
    assert report["split_sizes"] == {"train": 270, "val": 30, "test": 0}
    assert report["epochs"] == 2 and report["backend"] == "tensorflow"
    assert set(report["plots"]) == set(PLOTS)
    assert len(report["confusion_matrix"]) == 10

    import keras

    model = keras.saving.load_model(str(shared_run.path / "model.keras"))
    assert report["num_params"] == model.count_params()


def test_report_md_links_the_plots(shared_run):
    text = (shared_run.path / "report.md").read_text()
    assert text.startswith("# `log_softmax` on digits")
    for plot in PLOTS:
        assert f"(plots/{plot}.png)" in text


def test_model_info(shared_run):
    info = json.loads((shared_run.path / "model_info.json").read_text())
    assert info["class_names"] == [str(i) for i in range(10)]
    assert (info["head"], info["output_kind"], info["image_shape"]) == ("log_softmax", "log_probabilities",
                                                                        [32, 32, 3])
    assert json.loads((shared_run.path / "saved_model" / "assets.extra" / "model_info.json").read_text()) == info


def test_train_prints_progress_and_report_path(shared_run):
    lines = shared_run.stdout.splitlines()
    assert any(line.startswith("training log_softmax on digits: 270 train / 30 val images") for line in lines)
    for epoch in (1, 2):
        line = next(line for line in lines if line.startswith(f"epoch {epoch}/2 "))
        assert "img/s" in line and "ETA" in line and "val_acc" in line
    last = lines[-1]
    assert last.startswith("done: val accuracy") and "report:" in last
    assert last.endswith(str(shared_run.path / "report.md"))
    printed = float(re.search(r"val accuracy ([\d.]+)%", last).group(1))
    assert abs(printed - 100 * json.loads((shared_run.path / "report.json").read_text())["accuracy"]) < 0.01


def test_finished_run_is_not_replaced_without_overwrite(shared_run):
    before = (shared_run.path / "report.json").read_bytes()
    listing = sorted(p.name for p in shared_run.path.iterdir())
    result = invoke("train", "--epochs", "1", "--out", shared_run.path)
    assert_user_error(result, "already holds a finished run", "--overwrite")
    assert (shared_run.path / "report.json").read_bytes() == before
    assert sorted(p.name for p in shared_run.path.iterdir()) == listing


def test_overwrite_replaces_a_finished_run(shared_run):
    # The shared run was trained with --overwrite over a finished run: nothing of that one is left.
    assert not (shared_run.path / "plots" / "left-over.png").exists()
    report = json.loads((shared_run.path / "report.json").read_text())
    assert report["head"] == "log_softmax" and report["epochs"] == 2
