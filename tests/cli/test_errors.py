"""Every error a user can cause: a non-zero exit and one clear ``Error:`` line, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from keras_softmax.heads import list_heads

from .helpers import TINY, assert_ok, assert_user_error, invoke


def _nothing_written(path):
    assert not path.exists() or not any(path.iterdir()), f"{path} was written to"


def test_unknown_head_lists_the_valid_names(tmp_path):
    line = assert_user_error(invoke("train", "--head", "softmaxx", *TINY, "--out", tmp_path / "run"),
                             "unknown head 'softmaxx'")
    for name in list_heads():
        assert name in line
    _nothing_written(tmp_path / "run")


def test_invalid_head_parameter_value_names_it(tmp_path):
    assert_user_error(invoke("train", "--head", "softmax", "--head-param", "temperature=-1", *TINY,
                             "--out", tmp_path / "run"), "temperature", "-1")
    _nothing_written(tmp_path / "run")


def test_unknown_head_parameter_lists_the_parameters(tmp_path):
    assert_user_error(invoke("train", "--head", "softmax", "--head-param", "temprature=2", *TINY,
                             "--out", tmp_path / "run"), "no parameter 'temprature'", "temperature")
    _nothing_written(tmp_path / "run")


@pytest.mark.parametrize("value", ["temperature", "=2", ""])
def test_bad_head_param_syntax(tmp_path, value):
    assert_user_error(invoke("train", "--head-param", value, "--out", tmp_path / "run"), "KEY=VALUE")


def test_missing_dataset_path(tmp_path):
    missing = tmp_path / "no-such-data.tar.gz"
    assert_user_error(invoke("train", "--dataset", missing, *TINY, "--out", tmp_path / "run"),
                      "dataset path not found", str(missing))
    _nothing_written(tmp_path / "run")


def test_epochs_zero(tmp_path):
    result = invoke("train", "--epochs", "0", "--out", tmp_path / "run")
    assert_user_error(result, "--epochs", "0")
    # And through --set, which reaches the config's own validation.
    assert_user_error(invoke("train", "--set", "epochs=0", "--out", tmp_path / "run"), "epochs must be a positive")
    _nothing_written(tmp_path / "run")


def test_set_values_are_not_dropped(tmp_path):
    # --set of a setting that also has its own flag applies when the flag is not given.
    assert_user_error(invoke("train", "--set", "head=softmaxx", "--out", tmp_path / "run"), "unknown head")
    assert_user_error(invoke("train", "--set", "batch_size=0", "--out", tmp_path / "run"), "batch_size")


def test_unknown_setting(tmp_path):
    assert_user_error(invoke("train", "--set", "epochz=3", "--out", tmp_path / "run"), "unknown setting 'epochz'")


def test_unknown_key_in_config_file(tmp_path):
    preset = tmp_path / "preset.toml"
    preset.write_text('head = "softmax"\nepochz = 3\n')
    assert_user_error(invoke("train", "--config", preset, "--out", tmp_path / "run"),
                      "unknown setting 'epochz'", str(preset))
    _nothing_written(tmp_path / "run")


def test_malformed_and_missing_config_file(tmp_path):
    preset = tmp_path / "preset.toml"
    preset.write_text("epochs = \n")
    assert_user_error(invoke("train", "--config", preset, "--out", tmp_path / "run"), "not valid TOML")
    assert_user_error(invoke("train", "--config", tmp_path / "absent.toml", "--out", tmp_path / "run"),
                      "config file not found")


def test_predict_missing_model(tmp_path, digit_pngs):
    paths, _, _ = digit_pngs
    assert_user_error(invoke("predict", tmp_path / "absent", paths[0]), "model not found")
    assert_user_error(invoke("predict", tmp_path, paths[0]), "neither a SavedModel directory nor a run directory")


def test_predict_unreadable_and_missing_image(tmp_path, shared_run):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("this is text, not a PNG")
    assert_user_error(invoke("predict", shared_run.path, bad), "cannot read image", str(bad))
    assert_user_error(invoke("predict", shared_run.path, tmp_path / "absent.png"), "image not found")


def test_predict_corrupt_keras_file(tmp_path, digit_pngs):
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"not a zip file")
    assert_user_error(invoke("predict", corrupt, digit_pngs[0][0]), "cannot load")


def test_evaluate_non_run_directory(tmp_path):
    assert_user_error(invoke("evaluate", tmp_path), "not a run directory")


def test_evaluate_test_split_of_digits(shared_run):
    assert_user_error(invoke("evaluate", shared_run.path, "--split", "test"), "no test split", "--split val")
    assert not (shared_run.path / "evaluations" / "digits-test").exists()


def test_compare_unfinished_run(tmp_path, shared_run):
    assert_user_error(invoke("compare", shared_run.path, tmp_path), "no report.json")


def test_export_without_a_model(tmp_path):
    assert_user_error(invoke("export", tmp_path), "model.keras is missing")


def test_export_onnx(tmp_path, shared_run):
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    result = invoke("export", run, "--format", "onnx")
    if all(importlib.util.find_spec(name) for name in ("onnx", "tf2onnx")):
        assert_ok(result)
        assert (run / "model.onnx").is_file()
    else:
        assert_user_error(result, "ONNX export needs extra packages")
        assert not (run / "model.onnx").exists()
        assert not list(run.glob(".model.onnx*")), "a temporary file was left behind"


def test_unknown_export_format(shared_run):
    assert_user_error(invoke("export", shared_run.path, "--format", "tflite"), "--format")


def test_failed_train_leaves_a_finished_run_alone(shared_run):
    # A failed command leaves the finished run's report as it was.
    before = json.loads((shared_run.path / "report.json").read_text())
    invoke("train", "--head", "softmaxx", "--out", shared_run.path)
    assert json.loads((shared_run.path / "report.json").read_text()) == before


def test_fractional_validation_count_is_refused(tmp_path):
    from click.testing import CliRunner

    from keras_softmax.cli import main

    result = CliRunner().invoke(main, ["train", "--val-split", "1.5", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "neither a fraction below 1 nor a whole image count" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    """``train --out . --overwrite`` in a project folder: one line, nothing touched, nothing trained."""
    (tmp_path / "precious.txt").write_text("years of work")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print()")
    monkeypatch.chdir(tmp_path)
    for args in (["--overwrite"], [], ["--resume"]):
        assert_user_error(invoke("train", *TINY, "--out", ".", *args), "not a keras-softmax run")
    assert (tmp_path / "precious.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["main.py", "precious.txt", "src"]


def test_a_file_as_run_directory(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    assert_user_error(invoke("train", *TINY, "--out", afile, "--overwrite"), "is a file")  # Click
    assert_user_error(invoke("train", *TINY, "--out", afile / "run"), "not a directory")
    assert afile.read_text() == "keep"


def test_a_diverging_run_stops_at_the_first_nan_with_one_line(tmp_path):
    """``--lr 1e30``: it used to train on with ``loss nan`` for every epoch and end in "probs contains
    NaN or Inf". Now: one line naming the epoch, step and learning rate, a non-zero exit, no report
    (nothing with NaNs in it), and a run directory that says it failed."""
    out = tmp_path / "run"
    # no warmup and lr 1e30: the first update overflows float32, so the loss is NaN within epoch 1 (at
    # lr 1e6 the weights can survive an epoch, and which one blows up first varied between machines)
    result = invoke("train", "--head", "softmax", "--epochs", "2", "--lr", "1e30", "--set", "warmup_epochs=0",
                    *TINY, "--out", out)
    line = assert_user_error(result, "training diverged", "at epoch 1, step", "learning rate", "lower --lr")
    assert "nan" in line
    assert not any(row.startswith("epoch ") for row in result.output.splitlines()), result.output
    assert "probs contains NaN" not in result.output
    assert not (out / "report.json").exists() and not (out / "model.keras").exists()
    failed = json.loads((out / "failed.json").read_text())
    assert failed["epoch"] == 1 and failed["reason"] == "non-finite loss" and failed["message"] == line[7:]
    assert not (out / "history.csv").exists() or "nan" not in (out / "history.csv").read_text()
    assert_user_error(invoke("train", *TINY, "--out", out), "holds a run that failed at epoch 1", "--resume")


_INTERRUPTED_WHILE_COMPILING = """
import sys, time
import keras_softmax.job
from keras_softmax.training.ahead import Compiling

def interrupted(config, out, log=print, **options):
    from keras_softmax.training.rundir import RunDirectory

    run = RunDirectory(out)  # the run is claimed (with its config): Ctrl-C now leaves a run to resume
    run.prepare(resume=False, overwrite=False)
    run.config.write_text('head = "log_softmax"')
    compiling = Compiling()  # as training/ahead.py's warm-up: a program XLA will not stop compiling
    compiling.add("slow program", lambda: time.sleep(40))
    time.sleep(0.5)
    raise KeyboardInterrupt  # Ctrl-C while the main thread waits for the data

keras_softmax.job.run_job = interrupted
from keras_softmax_cli import main
sys.argv = ["keras-softmax", "train", "--dataset", "digits", "--epochs", "1", "--out", sys.argv[1]]
main()
"""


def test_ctrl_c_while_a_program_compiles_ahead_exits_at_once(tmp_path):
    """Ctrl-C in a GPU run's first ~30 s, while the convolutions autotune in the compile thread: exit
    130 with the resume hint within seconds, not after the compilation (the interpreter waits for an
    executor's threads at exit; before 2026-12-04 it sat out the whole compile)."""
    import subprocess
    import sys
    import time

    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_COMPILING, str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert process.returncode == 130, process.stderr[-2000:]
    assert f"interrupted; continue with: keras-softmax train --resume --out {tmp_path / 'run'}" in process.stderr
    assert "Traceback" not in process.stderr
    assert seconds < 30, f"the interrupted process took {seconds:.0f}s to exit"


_INTERRUPTED_LISTING = """
import sys
import keras_softmax.heads

def interrupted():
    raise KeyboardInterrupt  # Ctrl-C while `heads` builds its table

keras_softmax.heads.describe_heads = interrupted
from keras_softmax_cli import main
sys.argv = ["keras-softmax", "heads"]
main()
"""


def test_ctrl_c_in_a_command_without_work_to_resume_says_interrupted(tmp_path):
    """Click turns Ctrl-C into its ``Abort`` ("Aborted!", status 1) in commands without their own
    handler, such as ``heads``; every command now answers Ctrl-C the same way: "interrupted", 130."""
    import subprocess
    import sys

    process = subprocess.run([sys.executable, "-c", _INTERRUPTED_LISTING], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert process.returncode == 130, process.stderr[-2000:]
    assert "interrupted" in process.stderr
    assert "Aborted!" not in process.stderr and "Traceback" not in process.stderr
