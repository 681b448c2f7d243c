"""``keras-softmax study`` end to end on digits: 2 heads × 2 seeds, killed mid-run and continued.

One scenario, in order (each step needs the one before): the study is started in its own process with
two worker slots and SIGKILLed once a run is finished and another has started; its training process
dies with it; the same command then completes the study, training only what was not finished; a
third invocation trains nothing and leaves every run untouched; STUDY.md's figures equal a
recomputation from the runs' report.json files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cli.helpers import assert_ok, cli_command, invoke, subprocess_env

SPEC = """
description = "acceptance study on digits"
heads = ["softmax", "log_softmax"]
seeds = [0, 1]
reference = "log_softmax"
epochs = 1
widths = [4, 8, 8, 8]
limit = 300
batch_size = 32
jit_compile = false
"""
# Four runs keep the suite inside its time: the single-seed variant that made a fifth until 2026-12-04 now
# runs end to end only in test_a_failed_run_is_reported_and_the_others_go_on (its report's Welch cell,
# "n/a (n=1 vs 2)", is tests/study/test_stats.py's).
VARIANT = """
[[variants]]
name = "gumbel-t3"
head = "gumbel"
head_params = { temperature = 3.0 }
seeds = [0]
"""
RUNS = ["softmax-seed0", "softmax-seed1", "log_softmax-seed0", "log_softmax-seed1"]
FIGURES = ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "loss", "ece",
           "steady_epoch_seconds", "images_per_second", "wall_seconds")


def _states(runs: Path):
    finished = {p.name for p in runs.glob("*") if (p / "report.json").is_file()}
    started = {p.name for p in runs.glob("*") if (p / "config.toml").is_file()} - finished
    return finished, started


def _live_study_children(parent_pid: int) -> list[int]:
    """Processes (not zombies) started by the study with ``parent_pid`` (Linux /proc)."""
    marker = f"KERAS_SOFTMAX_STUDY_PARENT={parent_pid}".encode()
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.append(int(entry.name))
    return live


def _attempts(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith("==== "))


def _table_row(markdown: str, name: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| `{name}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL and /proc (Linux)")
def test_study_killed_and_continued_then_reported(tmp_path, cache_dir):
    spec = tmp_path / "digits-study.toml"
    spec.write_text(textwrap.dedent(SPEC))
    out = tmp_path / "study"
    runs = out / "runs"
    env = subprocess_env(cache_dir)

    # 1. Start the study, kill it outright once one run is finished and a later one has started.
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        process = subprocess.Popen(cli_command("study", spec, "--out", out, "--devices", "2"), cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            finished, started = _states(runs)
            # A run of the second pair started after one of the first finished: it is seconds from its end.
            # (Not "one finished, its sibling started": the two slots' first runs end within moments of
            # each other, and the sibling could finish between this check and the kill.)
            if finished and started - set(RUNS[:2]):
                break
            if process.poll() is not None:
                pytest.fail(f"the study ended ({process.returncode}) before it could be killed:\n"
                            f"{first_log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no finished run after 240 s:\n{first_log.read_text()[-3000:]}")
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # the study process only: its training processes must follow it
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _live_study_children(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _live_study_children(process.pid), "a training process outlived the killed study"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finished_before, unfinished = _states(runs)
    assert finished_before and unfinished and len(finished_before) < len(RUNS)
    # Every run the killed study had started (its log has an attempt): those with a config.toml resume,
    # one killed before its process wrote it trains anew; either way it is attempted twice in all.
    interrupted = {run for run in RUNS if (out / "logs" / f"{run}.log").is_file()
                   and _attempts(out / "logs" / f"{run}.log")} - finished_before
    assert unfinished <= interrupted
    report_times = {run: (runs / run / "report.json").stat().st_mtime_ns for run in finished_before}

    # 2. The same command completes the study: finished runs are skipped, the interrupted one resumed.
    result = subprocess.run(cli_command("study", spec, "--out", out, "--devices", "2"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    waiting = len(RUNS) - len(finished_before) - len(unfinished)
    assert (f"{len(finished_before)} finished, {len(unfinished)} to resume, {waiting} to train" in output), output
    assert re.search(r"\[1/\d\] (training|resuming) \S+ on CPU( slot 1)? \.\.\. ETA", output), output
    assert {p.name for p in runs.iterdir()} == set(RUNS)
    for run in RUNS:
        history = (runs / run / "history.csv").read_text().strip().splitlines()
        assert len(history) == 2, f"{run} has {len(history) - 1} epochs, not 1"  # trained once, 1 epoch
        assert (runs / run / "report.json").is_file()
        attempts = _attempts(out / "logs" / f"{run}.log")
        assert attempts == (2 if run in interrupted else 1), (run, attempts)
    for run, mtime in report_times.items():
        assert (runs / run / "report.json").stat().st_mtime_ns == mtime, f"{run} was rewritten"

    # 3. A third invocation trains nothing and touches no run.
    before = {run: (runs / run / "report.json").stat().st_mtime_ns for run in RUNS}
    third = assert_ok(invoke("study", spec, "--out", out))
    assert f"{len(RUNS)} runs: {len(RUNS)} finished, 0 to resume, 0 to train" in third.output
    assert "] training" not in third.output and "] resuming" not in third.output
    assert {run: (runs / run / "report.json").stat().st_mtime_ns for run in RUNS} == before
    assert all(_attempts(out / "logs" / f"{run}.log") == (2 if run in interrupted else 1) for run in RUNS)

    # results.jsonl: one row per run, its figures copied from the run's report.json.
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["seed"]) for r in rows] == [("softmax", 0), ("softmax", 1), ("log_softmax", 0),
                                                      ("log_softmax", 1)]
    reports = {}
    for row in rows:
        report = json.loads((out / row["run_dir"] / "report.json").read_text())
        reports.setdefault(row["name"], []).append(report)
        assert row["head"] == report["head"] and row["seed"] == report["seed"]
        for key in FIGURES:
            assert row[key] == report[key], key
        assert row["calibration_applicable"] is True and row["temperature"] > 0

    # STUDY.md: mean ± std over seeds equal a recomputation from the report.json files.
    text = (out / "STUDY.md").read_text()
    for name in ("softmax", "log_softmax"):
        cells = _table_row(text, name)
        assert cells[1] == str(len(reports[name]))
        assert cells[3] == "—"  # test top-1: not scored (no --test-dataset)
        for column, key in zip([cells[2], *cells[4:8]], ("accuracy", "top5_accuracy", "precision_macro",
                                                         "recall_macro", "f1_macro")):
            values = np.array([r[key] for r in reports[name]]) * 100
            expected = (f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1
                        else f"{values.mean():.2f}")
            assert column == expected, (name, key, column, expected)
    assert "Welch" in text and "reference" in _table_row(text, "log_softmax")[-1]
    for link in re.findall(r"\]\((plots/[^)]+\.png)\)", text):
        assert (out / link).read_bytes()[:4] == b"\x89PNG", link
    assert {"plots/heads-val_accuracy.png", "plots/heads-epoch_time.png", "plots/heads-forest.png",
            "plots/heads-confused_pairs.png", "plots/heads-reliability.png"} <= set(
        re.findall(r"\]\((plots/[^)]+\.png)\)", text))

    # --report-only rebuilds the same report from what exists.
    study_md = text
    (out / "STUDY.md").unlink()
    assert_ok(invoke("study", spec, "--out", out, "--report-only"))
    assert (out / "STUDY.md").read_text() == study_md


def test_study_errors_are_one_line(tmp_path):
    from cli.helpers import assert_user_error

    spec = tmp_path / "bad.toml"
    spec.write_text('heads = ["softmax"]\nseeds = [0]\n[[variants]]\nname = "g"\nhead = "gumbel"\n'
                    'head_params = { temperature = -1.5 }\n')
    assert_user_error(invoke("study", spec, "--out", tmp_path / "s"), "temperature must be a finite number > 0")
    assert_user_error(invoke("study", tmp_path / "none.toml", "--out", tmp_path / "s"), "study spec not found")
    spec.write_text('heads = ["softmax"]\nseeds = [0]\n')
    assert_user_error(invoke("study", spec, "--out", tmp_path / "s", "--set", "lr"), "--set expects KEY=VALUE")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path):
    from cli.helpers import assert_user_error

    spec = tmp_path / "fails.toml"
    # digits has no superclasses, so the variant's training process fails (after the plan was accepted);
    # at lr 1e30 without warm-up the loss is NaN within epoch 1 (tests/cli/test_errors.py): that run
    # diverges, which is its outcome, not a failure
    blowup = '\n[[variants]]\nname = "softmax-blowup"\nhead = "softmax"\nlr = 1e30\nwarmup_epochs = 0\nseeds = [0]\n'
    text = textwrap.dedent(SPEC + VARIANT + blowup).replace('heads = ["softmax", "log_softmax"]', 'heads = ["softmax"]')
    text = text.replace('reference = "log_softmax"', 'reference = "softmax"')
    text = text.replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace('head = "gumbel"', 'head = "gumbel"\nlabels = "coarse"')
    spec.write_text(text.replace("limit = 300", "limit = 100"))
    out = tmp_path / "study"
    result = invoke("study", spec, "--out", out, "--devices", "2")  # side by side: the failure is quick
    assert_user_error(result, "1 of 3 runs failed (gumbel-t3-seed0)", "logs/")
    assert "FAILED gumbel-t3-seed0 (exit 1): Error: labels = \"coarse\" needs a fine->coarse map" in result.output
    assert "DIVERGED softmax-blowup-seed0 (epoch 1, lr 1e+30): the loss became NaN" in result.output
    assert (out / "runs" / "softmax-seed0" / "report.json").is_file()
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    report = (out / "STUDY.md").read_text()
    assert "- `gumbel-t3`: seed 0" in report and "- `softmax-blowup`: seed" not in report
    assert "- `softmax-blowup` seed 0 (`runs/softmax-blowup-seed0`): epoch 1, lr 1e+30\n" in report
