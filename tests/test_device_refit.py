"""bench/device_refit.sh (issue 24 item 1 on the lent GPU machine): the refit preset once per seed, each
bounded and timed, its files copied back under $OUT. Run with stand-ins for ``nvidia-smi`` and ``python3``
that record how they were called, and a stand-in run that writes the files a real one leaves."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "device_refit.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and timeout")


def _refit(tmp_path, **env):
    bin_dir, calls, out = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "out"
    for folder in (bin_dir, out, tmp_path / "tmp" / "c" / "train"):  # the archives already unpacked
        folder.mkdir(parents=True, exist_ok=True)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H200, 580.0'\n")
    # python3: record the call; a `train` writes what a real run leaves for the script to copy back
    (bin_dir / "python3").write_text(f'''#!/bin/sh
echo "$*" >> "{calls}"
case "$*" in *" train "*)
  while [ "$1" != "--out" ]; do shift; done; mkdir -p "$2" && echo '{{"accuracy": 0.76}}' > "$2/report.json"
  echo epoch > "$2/history.csv"; echo 'head = "log_softmax"' > "$2/config.toml";;
esac
''')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
               "TMPDIR": str(tmp_path / "tmp"), **env}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [c for c in calls.read_text().splitlines() if not c.startswith("-m pip")], out


def test_each_seed_trains_the_refit_preset_alone_and_its_report_comes_back(tmp_path):
    calls, out = _refit(tmp_path, SEEDS="0 1")
    assert calls == [f"-m keras_softmax.cli train --config zoo/presets/cifar100-log_softmax-strong-all.toml "
                     f"--dataset {tmp_path / 'tmp' / 'c'} --seed {s} --out {tmp_path / 'tmp' / 'runs' / f'all-s{s}'}"
                     for s in (0, 1)]
    for s in (0, 1):
        log = (out / f"all-s{s}.log").read_text()
        assert "rc=0" in log and "WALL " in log  # the wall time of the bounded run
        assert (out / f"all-s{s}-report.json").read_text().strip() == '{"accuracy": 0.76}'
        assert log.splitlines()[1] == "NVIDIA H200, 580.0"  # the card, in the log that comes back
    # the device returns at most 8 files a call: two seeds' logs and files must fit, the card among them
    # (fails on the script of 2026-12-06, whose gpu.txt was a ninth file)
    assert len(list(out.iterdir())) <= 8
    assert (ROOT / "zoo" / "presets" / "cifar100-log_softmax-strong-all.toml").is_file()


def test_fresh_first_times_the_fast_preset_as_the_machines_first_run(tmp_path):
    calls, _ = _refit(tmp_path, FRESH="1")
    assert calls[0] == "-m compileall -q keras_softmax keras_softmax_cli"
    assert calls[1].startswith("bench/cold_start.py --label fresh ")
    assert "--config zoo/presets/cifar100-log_softmax-fast.toml" in calls[1]
    assert calls[2].startswith("-m keras_softmax.cli train --config zoo/presets/cifar100-log_softmax-strong-all.toml")
