"""bench/device_refit.sh (issue 24 item 1 on the lent GPU machine): the refit preset once per seed, each
bounded and timed, its files copied back under $OUT. Run with stand-ins for ``nvidia-smi`` and ``python3``
that record how they were called, and a stand-in run that writes the files a real one leaves."""

from __future__ import annotations

from pathlib import Path

from device_scripts import ROOT, needs_bash, run_script

pytestmark = needs_bash

# python3: a `train` writes what a real run leaves for the script to copy back
TRAIN = """  *" train "*) while [ "$1" != "--out" ]; do shift; done; mkdir -p "$2"
    echo '{"accuracy": 0.76}' > "$2/report.json"; echo epoch > "$2/history.csv"
    echo 'head = "log_softmax"' > "$2/config.toml";;"""


def _refit(tmp_path, **env):
    done, calls, out = run_script("device_refit.sh", tmp_path, TRAIN, "NVIDIA H200, 580.0", **env)
    assert done.returncode == 0, done.stderr
    return calls, out


def test_each_seed_trains_the_refit_preset_alone_and_its_report_comes_back(tmp_path):
    calls, out = _refit(tmp_path, SEEDS="0 1")
    runs = tmp_path / "tmp" / "runs"
    assert [call.rsplit(" ", 1)[0] for call in calls] == [
        f"-m keras_softmax.cli train --config zoo/presets/cifar100-log_softmax-strong-all.toml "
        f"--dataset {tmp_path / 'tmp' / 'c'} --seed {s} --out" for s in (0, 1)]
    outs = [Path(call.rsplit(" ", 1)[1]) for call in calls]  # this call's own directory under $TMPDIR/runs
    assert [o.name for o in outs] == ["all-s0", "all-s1"] and outs[0].parent == outs[1].parent
    assert outs[0].parent.parent == runs
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


def test_a_seed_given_again_on_the_same_machine_trains_again(tmp_path):
    """Each call trains into a directory of its own, so a second call with the same seed neither meets the
    first one's run (2026-12-07: a repeat of seed 0 for its warm time stopped at "already holds a finished
    run") nor touches it."""
    first, _ = _refit(tmp_path, SEEDS="0")
    second, out = _refit(tmp_path, SEEDS="0")
    first_out, second_out = (Path(calls[0].rsplit(" ", 1)[1]) for calls in (first, second))
    assert first_out != second_out and first_out.name == second_out.name == "all-s0"
    assert (first_out / "report.json").is_file()  # the first call's run is left as it was
    assert (out / "all-s0-report.json").read_text().strip() == '{"accuracy": 0.76}'
