"""``train --resume`` after a real SIGKILL: no epoch lost or repeated, the schedule continues."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time

import pytest

from keras_softmax.training.config import resolve
from keras_softmax.training.optim import learning_rate_schedule

from .helpers import assert_ok, assert_user_error, cli_command, invoke, subprocess_env

EPOCHS = 4
# Every digits training image (1,617) on the tiny model: about a second per epoch after the first,
# so that there is time to kill the process between the first checkpoint and the end of the run.
ARGS = ["--head", "log_softmax", "--epochs", str(EPOCHS), "--set", "widths=[4, 8, 8, 8]", "--batch-size", "32",
        "--set", "jit_compile=false", "--set", "checkpoint_every=1"]


def _checkpointed_epoch(state_file) -> int:
    try:
        return json.loads(state_file.read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not written yet
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_resume_after_sigkill(tmp_path, cache_dir):
    out = tmp_path / "run"
    state_file = out / "checkpoints" / "state.json"
    log_path = tmp_path / "first-attempt.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(cli_command("train", *ARGS, "--out", out), cwd=tmp_path,
                                   env=subprocess_env(cache_dir), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while _checkpointed_epoch(state_file) < 1:
            if process.poll() is not None:
                pytest.fail(f"training exited ({process.returncode}) before its first checkpoint:\n"
                            f"{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint after 240 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "report.json").exists(), "the run finished before it was killed: make epochs slower"
    killed_after = _checkpointed_epoch(state_file)
    print(f"killed after epoch {killed_after}; first attempt printed:\n" + "\n".join(
        line for line in log_path.read_text().splitlines() if line.startswith(("training", "epoch"))))
    assert 1 <= killed_after < EPOCHS

    # An unfinished run is neither replaced nor continued without being asked.
    assert_user_error(invoke("train", "--out", out), "unfinished run", "pass --resume")
    assert_user_error(invoke("train", *ARGS, "--out", out), "unfinished run", "pass --resume")
    assert_user_error(invoke("train", "--resume", "--overwrite", "--out", out), "exclude each other")
    assert not (out / "report.json").exists()

    result = assert_ok(invoke("train", "--resume", "--out", out))
    assert f"resuming {out} after epoch {killed_after}/{EPOCHS}" in result.stdout
    assert "report:" in result.stdout.splitlines()[-1]
    printed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert printed == [f"{e}/{EPOCHS}" for e in range(killed_after + 1, EPOCHS + 1)]

    with (out / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    elapsed = [float(row["elapsed_seconds"]) for row in rows]
    assert elapsed == sorted(elapsed)

    # The optimizer state came back: the learning rate after each epoch follows the one schedule.
    config = resolve(out / "config.toml")
    steps = (1617 // 32)
    schedule = learning_rate_schedule(config, steps)
    expected = [float(schedule(epoch * steps)) for epoch in range(1, EPOCHS + 1)]
    assert [float(row["lr"]) for row in rows] == pytest.approx(expected, rel=1e-4, abs=1e-7)

    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] == EPOCHS and len(report["epoch_seconds"]) == EPOCHS
    assert report["split_sizes"]["train"] == 1617
    assert json.loads(state_file.read_text())["epoch"] == EPOCHS
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    assert not list((out / "checkpoints").glob("*.weights.h5"))


def test_resume_needs_out():
    assert_user_error(invoke("train", "--resume"), "--resume needs --out")


def test_resume_of_an_empty_directory(tmp_path):
    assert_user_error(invoke("train", "--resume", "--out", tmp_path / "nothing"), "nothing to resume")
    # With nothing to resume, that is the one line (the note that --epochs would be ignored in
    # favour of the saved config.toml comes only where there is a run to continue).
    result = invoke("train", "--resume", "--epochs", "9", "--out", tmp_path / "nothing")
    assert_user_error(result, "nothing to resume")
    assert result.stderr.strip().splitlines() == [line for line in result.stderr.strip().splitlines()
                                                  if line.startswith("Error:")]


def test_resume_of_a_finished_run(shared_run):
    before = (shared_run.path / "report.json").read_bytes()
    assert_user_error(invoke("train", "--resume", "--out", shared_run.path), "already holds a finished run")
    assert (shared_run.path / "report.json").read_bytes() == before
