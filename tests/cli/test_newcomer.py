"""What a newcomer met in the CLI audit of 2026-12-05: user files overwritten, flags ignored without a
word, a user's mistake called an internal error, messages that do not name the file. Each test fails
on the code before its fix."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from .helpers import TINY, assert_ok, assert_user_error, cli_command, invoke, run_cli


def test_compare_never_overwrites_a_file_that_is_not_its_own_plot(shared_run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert_user_error(invoke("compare", shared_run.path, "--plot", notes),
                      f"refusing to replace {notes}: it exists and is not a PNG keras-softmax wrote")
    assert notes.read_text() == "my notes"
    report = shared_run.path / "report.json"
    before = report.read_bytes()
    assert_user_error(invoke("compare", shared_run.path, "--plot", report), "refusing to replace")
    assert report.read_bytes() == before
    plot = tmp_path / "compare.png"
    for _ in range(2):  # its own plot it replaces
        assert_ok(invoke("compare", shared_run.path, "--plot", plot))
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_study_never_writes_into_a_directory_of_other_files_nor_over_a_foreign_report(tmp_path):
    from keras_softmax.study.runner import run_study
    from keras_softmax.study.spec import StudyError

    spec = tmp_path / "spec.toml"
    spec.write_text('heads = ["softmax", "log_softmax"]\nseeds = [0]\nepochs = 1\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "STUDY.md").write_text("my study notes")
    (project / "results.jsonl").write_text("my results")
    with pytest.raises(StudyError, match=f"refusing to use {project}: it is not empty and holds no study"):
        run_study(spec, project, budget=0, log=lambda line: None)
    assert (project / "STUDY.md").read_text() == "my study notes" and sorted(p.name for p in project.iterdir()) == [
        "STUDY.md", "results.jsonl"]
    mine = tmp_path / "mine.md"
    mine.write_text("# My own notes\n")
    with pytest.raises(ValueError, match=f"refusing to replace {mine}: it exists and is not a study report"):
        run_study(spec, tmp_path / "study", budget=0, report_path=mine, log=lambda line: None)
    assert mine.read_text() == "# My own notes\n" and not (tmp_path / "study").exists()


def test_resume_says_which_flags_it_ignores_and_a_failed_run_without_checkpoints_is_not_sent_to_resume(
        tmp_path, monkeypatch):
    from keras_softmax.training.rundir import RunDirectory, RunDirError

    run = RunDirectory(tmp_path / "run")
    run.prepare(resume=False, overwrite=False)
    run.config.write_text('head = "log_softmax"\n')
    import keras_softmax.job

    monkeypatch.setattr(keras_softmax.job, "run_job", lambda *a, **k: None)
    result = assert_ok(invoke("train", "--resume", "--out", run.path, "--lr", "0.01", "--batch-size", "8",
                              "--seed", "3", "--val-split", "0.2"))
    assert f"note: --resume continues with {run.path}/config.toml; ignoring --batch-size, --lr, --seed, --val-split" \
        in result.output
    (run.path / "failed.json").write_text(json.dumps({"epoch": 1, "reason": "non-finite loss",
                                                      "last_checkpoint_epoch": None}))
    with pytest.raises(RunDirError, match="it made no checkpoint, so --resume would only repeat it: pass --overwrite"):
        run.check(resume=False, overwrite=False)


def test_a_corrupt_model_and_a_malformed_info_file_are_named(shared_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    assert zipfile.is_zipfile(run / "model.keras")
    (run / "model.keras").write_text("garbage")
    assert_user_error(invoke("evaluate", run), f"{run / 'model.keras'} is not a valid .keras file")
    assert_user_error(invoke("export", run), "is not a valid .keras file (truncated or corrupt)")
    shutil.copy(shared_run.path / "model.keras", run / "model.keras")
    (run / "model_info.json").write_text("garbage{")
    assert_user_error(invoke("evaluate", run), f"{run / 'model_info.json'}: not valid JSON")
    bad = tmp_path / "binary.toml"
    bad.write_bytes(b"\xff\xfe bad utf")
    assert_user_error(invoke("train", "--config", bad, "--out", tmp_path / "x"), f"{bad}: not valid TOML")
    assert not (tmp_path / "x").exists()


def test_a_relative_dataset_path_is_explained_from_another_directory(shared_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(config.replace('dataset = "digits"', 'dataset = "ds3"'))
    monkeypatch.chdir(tmp_path)
    assert_user_error(invoke("evaluate", run), "dataset path not found: ds3 (the run recorded it relative to the "
                                               "directory it was trained in")


def test_set_reads_a_python_style_decimal_and_a_whole_float_split_is_a_count():
    from keras_softmax.training.config import parse_head_param, resolve

    assert parse_head_param("lr=.1", "--set") == ("lr", 0.1)
    assert parse_head_param("lr=2.", "--set") == ("lr", 2.0)
    assert parse_head_param("name=abc", "--set") == ("name", "abc")
    config = resolve(None, {"val_split": 50.0})
    assert config.val_split == 50 and isinstance(config.val_split, int)


def test_a_bare_command_prints_its_help_and_succeeds(tmp_path, cache_dir):
    for args in ((), ("bench",)):
        result = run_cli(*args, cwd=tmp_path, cache_dir=cache_dir, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Usage: keras-softmax" in result.stdout and "Error" not in result.stderr


def test_an_unknown_keras_backend_is_one_line_and_claims_no_directory(tmp_path, cache_dir):
    import subprocess

    from .helpers import subprocess_env

    env = {**subprocess_env(cache_dir), "KERAS_BACKEND": "pytorch"}
    result = subprocess.run(cli_command("train", "--out", tmp_path / "run"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "internal error" not in result.stderr
    assert "Error: KERAS_BACKEND=pytorch is not a Keras backend; use one of jax, tensorflow, torch" in result.stderr
    env["KERAS_BACKEND"] = "numpy"
    result = subprocess.run(cli_command("train", *TINY, "--out", tmp_path / "run"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Error: Keras's numpy backend cannot train; set KERAS_BACKEND to jax, tensorflow, torch" in result.stderr
    assert not (tmp_path / "run").exists()


def test_interrupting_before_anything_was_written_says_so(tmp_path, monkeypatch):
    import keras_softmax.job

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_softmax.job, "run_job", interrupted)
    result = invoke("train", *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 130
    assert "nothing was written; run the same command again" in result.output and "--resume" not in result.output


def test_a_head_and_loss_that_cannot_train_together_claim_no_directory(tmp_path):
    # Regression: the CompositionError came at the first training step, after the directory was claimed,
    # so the same --out then held "an unfinished run" that --resume could only fail again.
    out = tmp_path / "run"
    assert_user_error(invoke("train", "--head", "sparsemax", "--head-param", "fenchel_young_gradient=false", *TINY,
                             "--out", out), "SparsemaxLoss() after Sparsemax")
    assert not out.exists()


@pytest.mark.parametrize(("backend", "default"), [("torch", False), ("jax", True)])
def test_jit_compile_defaults_as_keras_auto_does_off_on_torch(backend, default, tmp_path):
    """torch.compile made a tiny digits epoch take 92 s against 5-10 s: off unless asked for, as
    Keras's own jit_compile="auto" decides; an explicit setting always wins."""
    import os
    import subprocess
    import sys

    script = ("from keras_softmax.training.config import resolve\n"
              "print(resolve(None, {}).jit_compile, resolve(None, {'jit_compile': True}).jit_compile,"
              " resolve(None, {'jit_compile': False}).jit_compile)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": backend}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(default), "True", "False"]


def test_compare_says_when_the_runs_are_scored_on_different_data(shared_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(shared_run.path, other)
    report = json.loads((other / "report.json").read_text())
    (other / "report.json").write_text(json.dumps({**report, "dataset": "ds3", "split": "test"}))
    result = assert_ok(invoke("compare", shared_run.path, other))
    assert "note: these runs are scored on different data: digits (val), ds3 (test)" in result.output
    assert "note:" not in assert_ok(invoke("compare", shared_run.path, shared_run.path)).output


def test_a_validation_split_of_a_few_images_gets_a_note(tmp_path, monkeypatch):
    import keras_softmax.job

    monkeypatch.setattr(keras_softmax.job, "run_job", lambda *a, **k: None)
    result = assert_ok(invoke("train", *TINY, "--val-split", "1", "--out", tmp_path / "one"))
    assert "note: val_split = 1 holds out 1 image(s) (a count, not a fraction)" in result.output
    assert "note: val_split" not in assert_ok(invoke("train", *TINY, "--out", tmp_path / "default")).output


@pytest.mark.parametrize("args, message", [
    (("--head", "sparsemx"), "unknown head 'sparsemx' (did you mean 'sparsemax'?); choose one of:"),
    (("--head", "gumbel", "--head-param", "temprature=2"),
     "head 'gumbel' has no parameter 'temprature' (did you mean 'temperature'?); its parameters are:"),
    (("--set", "weight_decy=1e-4"), "unknown setting 'weight_decy' (did you mean 'weight_decay'?); valid settings:"),
    (("--head", "resnet"), "unknown head 'resnet'; choose one of:"),  # nothing close: no guess
], ids=["head", "head-param", "setting", "nothing-close"])
def test_a_mistyped_name_gets_the_closest_valid_one(tmp_path, args, message):
    assert_user_error(invoke("train", *args, *TINY, "--epochs", "1", "--out", tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()


def test_a_study_spec_with_a_mistyped_name_gets_the_closest_valid_one(tmp_path):
    from keras_softmax.study.spec import StudyError, load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text('heads = ["softmax", "log_sofmax"]\nseeds = [0]\n')
    with pytest.raises(StudyError, match=r"unknown head 'log_sofmax' \(did you mean 'log_softmax'\?\)"):
        load_spec(spec)
    spec.write_text('heads = ["softmax"]\nseeds = [0]\nlabel_smothing = 0.1\n')
    with pytest.raises(StudyError, match=r"unknown key 'label_smothing' \(did you mean 'label_smoothing'\?\)"):
        load_spec(spec)
