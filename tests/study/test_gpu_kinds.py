"""bench/gpu_kinds.py: a recorded run trained again from its config.toml and set beside its record, and the
paired interval behind the offset between two GPU kinds (against scipy)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from keras_softmax.study.stats import paired_interval

from .images import write_class_images

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    spec = importlib.util.spec_from_file_location("gpu_kinds", ROOT / "bench" / "gpu_kinds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_interval_is_scipys_paired_t_test():
    a = [0.671, 0.668, 0.662, 0.675, 0.669]
    b = [0.665, 0.667, 0.660, 0.671, 0.664]
    d = paired_interval(a, b)
    expected = stats.ttest_rel(a, b)
    low, high = expected.confidence_interval(0.95)
    assert d.difference == pytest.approx(np.mean(np.subtract(a, b)), abs=1e-15)
    assert (d.low, d.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert d.p_value == pytest.approx(expected.pvalue, rel=1e-10) and d.df == 4 and d.n_a == d.n_b == 5
    # A pair with a missing side is left out; fewer than two pairs give no interval.
    assert paired_interval([*a, None], [*b, 0.5]).difference == pytest.approx(d.difference)
    assert paired_interval([0.5], [0.4]) is None
    same = paired_interval([0.5, 0.6], [0.4, 0.5])  # no spread: the difference itself
    assert (same.low, same.high) == (pytest.approx(0.1), pytest.approx(0.1))


def test_a_recorded_run_is_trained_again_from_its_config_and_set_beside_its_record(tmp_path, cache_dir):
    from cli.helpers import run_cli, subprocess_env

    data = test = write_class_images(tmp_path / "data")  # train/ and test/: the dataset and the test split's source
    recorded = tmp_path / "recorded"
    trained = run_cli("train", "--head", "softmax", "--dataset", data, "--epochs", "1", "--set", "widths=[4, 8, 8, 8]",
                      "--batch-size", "16", "--val-split", "12", "--set", "jit_compile=false", "--out", recorded,
                      cwd=tmp_path, cache_dir=cache_dir)
    assert trained.returncode == 0, trained.stderr[-3000:]
    from keras_softmax.study.testsplit import score_run

    score_run(recorded, test)
    records = tmp_path / "records"
    records.mkdir()
    with open(records / "softmax.jsonl", "w") as out:  # as zoo/study_records.py packs a run
        for name in ("config.toml", "report.json", "test.json"):
            out.write(json.dumps({"path": f"runs/softmax-seed0/{name}", "text": (recorded / name).read_text()}) + "\n")

    tool = [sys.executable, str(ROOT / "bench" / "gpu_kinds.py")]
    kinds = tmp_path / "kinds"
    command = [*tool, "run", records, "softmax-seed0", "--dataset", data, "--test-dataset", test, "--out", kinds]
    result = subprocess.run([str(c) for c in command], env=subprocess_env(cache_dir), capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "softmax-seed0: finished in" in result.stdout
    repeat = kinds / "softmax-seed0"
    before, after = json.loads((recorded / "report.json").read_text()), json.loads((repeat / "report.json").read_text())
    # the recorded configuration, trained again: the same seed on the same CPU gives the same figures
    assert after["config"]["seed"] == 0 and after["config"]["widths"] == [4, 8, 8, 8]
    assert after["accuracy"] == before["accuracy"]
    assert json.loads((repeat / "test.json").read_text())["accuracy"] == json.loads(
        (recorded / "test.json").read_text())["accuracy"]
    again = subprocess.run([str(c) for c in command], env=subprocess_env(cache_dir), capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "done before, kept" in again.stdout and "finished in" not in again.stdout

    # A second pair (a record and its repeat with other figures, as from another GPU kind) for the offset.
    other = json.loads((recorded / "report.json").read_text())
    shutil.copytree(repeat, kinds / "softmax-seed1")
    report = dict(other, accuracy=0.5, device="gpu: NVIDIA H100 80GB HBM3")
    (kinds / "softmax-seed1" / "report.json").write_text(json.dumps(report))
    (kinds / "softmax-seed1" / "test.json").write_text(json.dumps({"accuracy": 0.4}))
    with open(records / "softmax.jsonl", "a") as out:
        for name, text in (("config.toml", (recorded / "config.toml").read_text()),
                           ("report.json", json.dumps(dict(other, accuracy=0.45, device="gpu: NVIDIA H200"))),
                           ("test.json", json.dumps({"accuracy": 0.42}))):
            out.write(json.dumps({"path": f"runs/softmax-seed1/{name}", "text": text}) + "\n")
    summary = _load_tool().compare(records, kinds)
    assert [p["run"] for p in summary["pairs"]] == ["softmax-seed0", "softmax-seed1"]
    assert summary["pairs"][1]["kinds"] == ["NVIDIA H200", "NVIDIA H100 80GB HBM3"]
    val = [p["accuracy"] for p in summary["pairs"]]
    expected = stats.ttest_rel([v[1] for v in val], [v[0] for v in val])
    offset = summary["accuracy_offset"]
    assert offset["points"] == pytest.approx(100 * np.mean([v[1] - v[0] for v in val]))
    assert offset["ci95"] == pytest.approx([100 * x for x in expected.confidence_interval(0.95)])
    assert summary["test_accuracy_offset"]["points"] == pytest.approx(100 * (0 + (0.4 - 0.42)) / 2)


def test_a_run_the_records_do_not_hold_and_an_empty_comparison_are_named(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "x.jsonl").write_text("")
    with pytest.raises(SystemExit, match="no run 'softmax-seed9' with a config.toml in"):
        _load_tool().recorded_files(tmp_path / "records", "softmax-seed9")
    (tmp_path / "kinds").mkdir()
    with pytest.raises(SystemExit, match="no finished repeat in .*kinds"):
        _load_tool().compare(tmp_path / "records", tmp_path / "kinds")


def _pair(records, kinds, name, before, after, kind_before="NVIDIA H200", kind_after="NVIDIA H100 80GB HBM3"):
    """A record of run ``name`` (validation/test top-1 ``before``, and superclass top-1 where it has four
    values) and its repeat (``after``) on another kind."""
    def figures(values, split):
        found = {"accuracy": values[split]}
        return {**found, "coarse_accuracy": values[2 + split]} if len(values) == 4 else found

    with open(records / "r.jsonl", "a") as out:
        for file, text in (("config.toml", "seed = 0\n"),
                           ("report.json", json.dumps({**figures(before, 0), "device": f"gpu: {kind_before}"})),
                           ("test.json", json.dumps(figures(before, 1)))):
            out.write(json.dumps({"path": f"runs/{name}/{file}", "text": text}) + "\n")
    (kinds / name).mkdir(parents=True)
    (kinds / name / "report.json").write_text(json.dumps({**figures(after, 0), "device": f"gpu: {kind_after}"}))
    (kinds / name / "test.json").write_text(json.dumps(figures(after, 1)))


def test_the_superclass_offset_comes_from_the_pairs_that_record_superclass_top1(tmp_path):
    tool, records, kinds = _load_tool(), tmp_path / "records", tmp_path / "kinds"
    records.mkdir()
    _pair(records, kinds, "a-seed0", (0.60, 0.61), (0.62, 0.615))  # an earlier pair without superclass figures
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(tool.compare(records, kinds)))
    later = tmp_path / "later"
    coarse = np.array([[0.70, 0.71, 0.712, 0.705], [0.72, 0.70, 0.716, 0.709], [0.69, 0.72, 0.70, 0.721]])
    for i, (val_before, val_after, test_before, test_after) in enumerate(coarse):
        _pair(records, later, f"b-seed{i}", (0.6, 0.6, val_before, test_before), (0.6, 0.6, val_after, test_after))
    summary = tool.compare(records, later, earlier=earlier)
    assert summary["accuracy_offset"]["pairs"] == 4 and "coarse_accuracy" not in summary["pairs"][0]
    for key, (before, after) in (("coarse_accuracy", (0, 1)), ("test_coarse_accuracy", (2, 3))):
        expected = stats.ttest_rel(coarse[:, after], coarse[:, before])
        assert summary[f"{key}_offset"]["pairs"] == 3
        assert summary[f"{key}_offset"]["points"] == pytest.approx(100 * np.mean(coarse[:, after] - coarse[:, before]))
        assert summary[f"{key}_offset"]["ci95"] == pytest.approx([100 * x for x in expected.confidence_interval(0.95)])
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps(summary))
    from keras_softmax.study.verdicts import kind_offset

    found = kind_offset(path)  # the report reads it per metric
    assert found.on("test", "coarse_accuracy") == pytest.approx(
        tuple(x / 100 for x in (summary["test_coarse_accuracy_offset"]["points"],
                                *summary["test_coarse_accuracy_offset"]["ci95"])))
    assert found.counts == {"accuracy": 4, "test_accuracy": 4, "coarse_accuracy": 3, "test_coarse_accuracy": 3}


def test_new_pairs_add_to_an_earlier_measurement_of_the_same_kinds(tmp_path):
    tool, records, kinds = _load_tool(), tmp_path / "records", tmp_path / "kinds"
    records.mkdir()
    _pair(records, kinds, "a-seed0", (0.60, 0.61), (0.62, 0.615))
    _pair(records, kinds, "a-seed1", (0.64, 0.62), (0.63, 0.626))
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(tool.compare(records, kinds)))
    later = tmp_path / "later"
    _pair(records, later, "b-seed0", (0.50, 0.52), (0.515, 0.523))
    _pair(records, later, "a-seed1", (0.64, 0.62), (0.655, 0.63))  # trained again: the new pair replaces it
    summary = tool.compare(records, later, earlier=earlier)
    assert [p["run"] for p in summary["pairs"]] == ["a-seed0", "a-seed1", "b-seed0"]
    val = np.array([[0.60, 0.62], [0.64, 0.655], [0.50, 0.515]])
    expected = stats.ttest_rel(val[:, 1], val[:, 0])
    assert summary["accuracy_offset"]["points"] == pytest.approx(100 * np.mean(val[:, 1] - val[:, 0]))
    assert summary["accuracy_offset"]["ci95"] == pytest.approx([100 * x for x in expected.confidence_interval(0.95)])
    assert summary["accuracy_offset"]["pairs"] == 3

    other = tmp_path / "other"
    _pair(records, other, "c-seed0", (0.5, 0.5), (0.5, 0.5), kind_after="NVIDIA A100")
    with pytest.raises(SystemExit, match="pair different kinds"):
        tool.compare(records, other, earlier=earlier)
