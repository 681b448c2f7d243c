"""bench/device_batchnorm.sh (issue 24 on the lent GPU machine): the choose phase trains the strong preset
per seed and runs every BatchNorm pass on each run's weights, then keeps a setting by the validation rows;
the refit phase trains the refit preset with that setting. Run with stand-ins for ``nvidia-smi`` and
``python3`` that record how they were called and write what the real commands leave."""

from __future__ import annotations

from device_scripts import needs_bash, run_script

pytestmark = needs_bash

# python3: a `train` leaves a run with its model; a pass appends a row for its run; --choose keeps the plain pass
CASES = """  *" train "*) while [ "$1" != "--out" ]; do shift; done; mkdir -p "$2"
    echo '{"accuracy": 0.76}' > "$2/report.json"; echo epoch > "$2/history.csv"; echo w > "$2/model.keras";;
  *"--choose"*) echo recompute_plain; echo "mean validation top-1: ...";;
  *batchnorm_pass.py*) echo "{\\"run\\": \\"$2\\", \\"split\\": \\"val\\"}" >> "$6"; echo "a row";;"""


def _device(tmp_path, **env):
    return run_script("device_batchnorm.sh", tmp_path, CASES, "NVIDIA H100 80GB HBM3, 580.0", **env)


def test_the_choose_phase_trains_each_seed_runs_the_passes_and_keeps_a_setting(tmp_path):
    done, calls, out = _device(tmp_path, PHASE="choose")
    assert done.returncode == 0, done.stderr
    bn, data = tmp_path / "tmp" / "bn", tmp_path / "tmp" / "c"
    trains = [c for c in calls if " train " in c]
    assert trains == [f"-m keras_softmax.cli train --config zoo/presets/cifar100-log_softmax-strong.toml "
                      f"--dataset {data} --seed {s} --out {bn / f'strong-s{s}'}" for s in (0, 1)]
    assert sorted(c for c in calls if c.startswith("bench/batchnorm_pass.py " + str(bn))) == [
        f"bench/batchnorm_pass.py {bn / f'strong-s{s}'} --dataset {data} --json {bn / 'passes.jsonl'}" for s in (0, 1)]
    assert calls[-1] == f"bench/batchnorm_pass.py --choose {bn / 'passes.jsonl'}"
    assert (out / "choice.txt").read_text().splitlines()[0] == "recompute_plain"
    log = (out / "strong-s0.log").read_text()
    assert log.splitlines()[1] == "NVIDIA H100 80GB HBM3, 580.0" and "rc=0" in log and "WALL " in log
    assert "a row" in log and "passes rc=0" in log
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["choice.txt", "passes.jsonl", *(f"strong-s{s}{f}" for s in (0, 1)
                                         for f in (".log", "-report.json", "-history.csv"))])  # 8: what comes back

    # Called again on the same machine: nothing is trained or passed twice; the refit reads the choice.
    done, calls, _ = _device(tmp_path, PHASE="choose")
    assert done.returncode == 0 and [c for c in calls if " train " in c or "--json" in c] == []
    done, calls, out = _device(tmp_path, PHASE="refit", SEEDS="0")
    assert done.returncode == 0, done.stderr
    assert calls[0] == (f"-m keras_softmax.cli train --config zoo/presets/cifar100-log_softmax-strong-all.toml "
                        f"--dataset {data} --seed 0 --set swa_batchnorm=recompute_plain "
                        f"--out {bn / 'all-recompute_plain-s0'}")
    assert calls[1].startswith(f"bench/batchnorm_pass.py {bn / 'all-recompute_plain-s0'} ")  # after the run
    assert sorted(p.name for p in out.iterdir()) == ["all-recompute_plain-s0-history.csv",
                                                     "all-recompute_plain-s0-report.json",
                                                     "all-recompute_plain-s0.log", "choice.txt", "passes.jsonl"]


def test_three_seeds_send_the_rows_logs_and_reports_first_and_no_more_than_eight_files(tmp_path):
    """Three refit seeds leave nine files or more; the device sends back 8 (on 2026-12-07 the rows and a log
    were among those left behind). The rows, the choice, the logs and the reports go first."""
    done, _, out = _device(tmp_path, PHASE="refit", SEEDS="0 1 2", SETTING="recompute")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["passes.jsonl", *(f"all-recompute-s{s}{f}" for s in (0, 1, 2) for f in (".log", "-report.json")),
         "all-recompute-s0-history.csv"])


def test_the_refit_phase_needs_a_setting_and_a_short_budget_starts_no_run(tmp_path):
    done, calls, _ = _device(tmp_path, PHASE="refit")
    assert done.returncode == 2 and "no SETTING and no choice.txt on this machine" in done.stdout and calls == []
    done, calls, _ = _device(tmp_path, PHASE="choose", BUDGET="100")
    assert done.returncode == 0 and "strong-s0: " in done.stdout and "under LIMIT=290: not started" in done.stdout
    assert [c for c in calls if " train " in c] == []
    done, _, _ = _device(tmp_path, PHASE="other")
    assert done.returncode == 2 and "PHASE must be choose or refit" in done.stdout
