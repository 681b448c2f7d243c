"""Running the lent GPU machine's bench scripts (bench/device_*.sh) here, with stand-ins for ``nvidia-smi`` and
``python3`` that record how they were called and do what ``cases`` says (shell ``case`` branches on ``$*``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and timeout")


def run_script(script: str, tmp_path: Path, cases: str, card: str, **env):
    """Run ``bench/<script>`` in the repository root with $OUT emptied and $TMPDIR under ``tmp_path`` (the
    archives already unpacked there); returns the process, the calls of ``python3`` (pip's left out; the
    record is emptied for the next run) and $OUT."""
    bin_dir, calls, out = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "out"
    for folder in (bin_dir, tmp_path / "tmp" / "c" / "train"):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '{card}'\n")
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\ncase "$*" in\n{cases}\nesac\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
               "TMPDIR": str(tmp_path / "tmp"), **env}
    done = subprocess.run(["bash", str(ROOT / "bench" / script)], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=60)
    made = [c for c in calls.read_text().splitlines() if not c.startswith("-m pip")] if calls.exists() else []
    calls.unlink(missing_ok=True)
    return done, made, out
