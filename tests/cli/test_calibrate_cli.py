"""``evaluate --calibrate`` on a finished run, and the original study's negative Gumbel temperature."""

from __future__ import annotations

import json

from .helpers import TINY, assert_ok, assert_user_error, invoke


def test_the_run_report_holds_calibration(shared_run):
    report = json.loads((shared_run.path / "report.json").read_text())
    calibration = report["calibration"]
    assert calibration["applicable"] is True
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert report["labels"] == "fine" and report["loss_pairing"] == "matched"
    assert "temperature T (fit on this split by NLL)" in (shared_run.path / "report.md").read_text()


def test_evaluate_calibrate_prints_before_and_after(shared_run):
    result = assert_ok(invoke("evaluate", shared_run.path, "--calibrate"))
    line = next(line for line in result.stdout.splitlines() if line.startswith("temperature "))
    assert "NLL" in line and "ECE (15 bins)" in line and "cross-fitted" in line
    evaluated = json.loads((shared_run.path / "evaluations" / "digits-val" / "report.json").read_text())
    calibration = evaluated["calibration"]
    assert calibration["temperature"] > 0
    # ECE is printed in percent, as report.md and `compare` show it (it used to be a bare fraction here).
    assert f"{100 * calibration['ece_before']:.2f}% -> {100 * calibration['ece_after']:.2f}%" in line
    summary = next(line for line in result.stdout.splitlines() if line.startswith("val accuracy "))
    assert f"ECE {100 * evaluated['ece']:.2f}%" in summary


def test_negative_gumbel_temperature_is_a_clear_error(tmp_path):
    # The original study used lambda = -1.5; a temperature must be > 0.
    assert_user_error(invoke("train", "--head", "gumbel", "--head-param", "temperature=-1.5", *TINY,
                             "--epochs", "1", "--out", tmp_path / "run"),
                      "temperature must be a finite number > 0", "-1.5")
    assert not (tmp_path / "run").exists()
