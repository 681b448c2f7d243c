"""The README quick start: ``keras-softmax train --head log_gumbel`` with every default (digits).

It runs as its own process, as a user runs it: the wall time it prints includes starting Python,
TensorFlow and the XLA compilation.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .helpers import run_cli


@pytest.mark.slow
def test_readme_quick_start(tmp_path, cache_dir, capsys, record_property):
    started = time.perf_counter()
    process = run_cli("train", "--head", "log_gumbel", cwd=tmp_path, cache_dir=cache_dir, timeout=600)
    wall = time.perf_counter() - started
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]

    runs = list((tmp_path / "runs").iterdir())  # the default run directory: runs/<head>-<dataset>-<time>
    assert len(runs) == 1 and runs[0].name.startswith("log_gumbel-digits-")
    report = json.loads((runs[0] / "report.json").read_text())
    lines = process.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 12
    last = lines[-1]
    assert "report:" in last and last.endswith(f"report: runs/{runs[0].name}/report.md")
    printed = float(re.search(r"val accuracy ([\d.]+)%", last).group(1))
    assert printed == pytest.approx(100 * report["accuracy"], abs=0.01)
    assert report["accuracy"] >= 0.90, f"quick start reached only {report['accuracy']:.2%}"
    assert (report["head"], report["dataset"], report["epochs"]) == ("log_gumbel", "digits", 12)
    assert report["split_sizes"] == {"train": 1617, "val": 180, "test": 0}
    assert "Traceback" not in process.stderr
    # Quiet: TensorFlow's start-up lines (cuInit, cudart_stub, absl) go to the log file (issue 22).
    assert process.stderr.strip() == "", process.stderr[-3000:]

    record_property("quickstart_wall_seconds", round(wall, 1))
    record_property("quickstart_val_accuracy", report["accuracy"])
    with capsys.disabled():
        print(f"\nREADME quick start: val accuracy {report['accuracy']:.2%} in {wall:.1f} s wall "
              f"(train {report['train_seconds']:.1f} s, in-run {report['wall_seconds']:.1f} s)")
