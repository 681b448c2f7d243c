"""zoo/studies/device_slice.sh and the GPU kinds: on a kind other than the records' it measures the offset
between the kinds (bench/gpu_kinds.py) instead of training a slice while the offset file holds too few pairs
(MEASURE=1 or KINDS_RUNS: anyway), and trains the slice once it holds enough or with MIX=1. Run with
stand-ins for ``nvidia-smi`` and ``python3`` that record how they were called."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "zoo" / "studies" / "device_slice.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None,
                                reason="needs bash and tar")


def _slice(tmp_path, gpu: str, **env) -> list[str]:
    """Run the script with a GPU named ``gpu``; the python3 calls it made, one line each."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '{gpu}'\n")
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    calls.write_text("")
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
               "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"), "RUNS": str(tmp_path / "runs"),
               **env}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in calls.read_text().splitlines() if not line.startswith("-m pip")]


def test_on_the_records_kind_a_slice_trains_the_study(tmp_path):
    calls = _slice(tmp_path, "NVIDIA H200")
    assert any(c.startswith("-m keras_softmax_cli study zoo/studies/cifar100-questions.toml") for c in calls)
    assert not any("gpu_kinds.py" in c for c in calls)
    assert (tmp_path / "out" / "rec.tgz").is_file()


def _offset_file(tmp_path, runs: list[str]) -> str:
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps({"pairs": [{"run": r} for r in runs]}, indent=1))
    return str(path)


FIRST_PAIRS = [f"{h}-seed{s}" for h in ("log_softmax", "softmax") for s in range(4)]  # measured first
NEXT_PAIRS = [f"{h}-seed{s}" for h in ("gumbel", "log_gumbel") for s in range(5)]


def test_on_another_kind_it_measures_the_offset_while_it_has_too_few_pairs(tmp_path):
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", KINDS_FILE=_offset_file(tmp_path, FIRST_PAIRS))
    # The 8 pairs measured so far are kept; these runs add to them.
    again = " ".join(NEXT_PAIRS)
    assert calls[0].startswith(f"bench/gpu_kinds.py run zoo/results/cifar100-study5-records {again} --dataset ")
    assert "--test-dataset .data/cifar100-test-jpg.tar.gz" in calls[0] and "--parallel 4" in calls[0]
    assert calls[1].startswith("bench/gpu_kinds.py compare zoo/results/cifar100-study5-records runs/kinds")
    assert f"--with {tmp_path / 'kinds.json'} --json " in calls[1]
    assert not any("keras_softmax_cli study" in c for c in calls)
    assert (tmp_path / "out" / "gpu_kinds.tgz").is_file() and not (tmp_path / "out" / "rec.tgz").exists()


@pytest.mark.parametrize("pairs, env, measures", [
    (FIRST_PAIRS + NEXT_PAIRS, {}, False),          # 18 pairs: enough, the slice trains
    (FIRST_PAIRS + NEXT_PAIRS, {"MIN_PAIRS": "19"}, True),
    (FIRST_PAIRS + NEXT_PAIRS, {"MEASURE": "1"}, True),
    (FIRST_PAIRS, {"MIX": "1"}, False),
])
def test_how_many_pairs_decide_between_measuring_and_a_slice(tmp_path, pairs, env, measures):
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", KINDS_FILE=_offset_file(tmp_path, pairs), **env)
    assert any("gpu_kinds.py run" in c for c in calls) == measures
    assert any(c.startswith("-m keras_softmax_cli study") for c in calls) == (not measures)
    assert (tmp_path / "out" / ("gpu_kinds.tgz" if measures else "rec.tgz")).is_file()


def test_the_recorded_offset_has_enough_pairs_to_slice_on_an_h100(tmp_path):
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3")
    assert any(c.startswith("-m keras_softmax_cli study") for c in calls)
    assert not any("gpu_kinds.py" in c for c in calls)


def test_runs_already_paired_are_not_trained_again(tmp_path):
    # once gumbel and log_gumbel are paired too, the next runs come from the heads after them in the list
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", KINDS_FILE=_offset_file(tmp_path, NEXT_PAIRS + FIRST_PAIRS),
                   MEASURE="1")
    again = " ".join([f"sparsemax-seed{s}" for s in range(5)] + [f"taylor-seed{s}" for s in range(5)])
    assert calls[0].startswith(f"bench/gpu_kinds.py run zoo/results/cifar100-study5-records {again} --dataset ")


def test_the_runs_to_train_again_can_be_named(tmp_path):
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", KINDS_RUNS="taylor-seed0 taylor-seed1")
    assert calls[0].startswith(
        "bench/gpu_kinds.py run zoo/results/cifar100-study5-records taylor-seed0 taylor-seed1 --")


def test_mix_trains_the_slice_on_another_kind(tmp_path):
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", MIX="1")
    assert any("keras_softmax_cli study" in c for c in calls) and not any("gpu_kinds.py" in c for c in calls)


def test_pairs_can_be_measured_on_another_studys_records(tmp_path):
    # the strong recipe: its own records and offset file, one run at a time
    calls = _slice(tmp_path, "NVIDIA H100 80GB HBM3", KINDS_RECORDS="zoo/results/cifar100-strong-records",
                   KINDS_FILE=str(tmp_path / "strong-kinds.json"), KINDS_RUNS="log_softmax-seed0",
                   KINDS_PARALLEL="1")
    assert calls[0].startswith("bench/gpu_kinds.py run zoo/results/cifar100-strong-records log_softmax-seed0 --")
    assert calls[0].endswith("--parallel 1")
    assert calls[1].startswith("bench/gpu_kinds.py compare zoo/results/cifar100-strong-records runs/kinds")
    assert "--with" not in calls[1]  # no pairs measured yet at that recipe
