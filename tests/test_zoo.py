"""zoo/: every preset resolves; sweep.py --parallel runs independent runs one per GPU; the recorded study
matches its run records."""

import argparse
import dataclasses
import gzip
import importlib.util
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from keras_softmax.training.config import resolve

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("zoo_sweep", ROOT / "zoo" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


@pytest.mark.parametrize("preset", sorted((ROOT / "zoo" / "presets").glob("*.toml")), ids=lambda p: p.stem)
def test_presets_resolve(preset):
    config = resolve(preset)
    assert config.dataset == "cifar100" and config.batch_size % (config.devices if config.devices != "all" else 1) == 0


def test_two_gpu_preset_scales_the_one_gpu_recipe():
    one, two = (resolve(ROOT / "zoo" / "presets" / f"cifar100-log_softmax-72{s}.toml") for s in ("", "-2gpu"))
    assert (two.devices, two.batch_size // two.devices) == (2, one.batch_size)  # same batch per device
    assert two.lr / one.lr == two.batch_size / one.batch_size  # linear scaling rule


def test_the_full_training_set_preset_is_the_strong_recipe_without_validation():
    # the refit must train exactly what was chosen on validation: every other setting the same
    strong, refit = (resolve(ROOT / "zoo" / "presets" / f"cifar100-log_softmax-strong{s}.toml") for s in ("", "-all"))
    assert strong.val_split == 5000 and refit.val_split == 0
    assert dataclasses.replace(refit, val_split=strong.val_split) == strong


def test_runs_go_one_per_gpu_two_at_a_time(monkeypatch, tmp_path):
    lock, running, peak, seen = threading.Lock(), set(), [0], []

    def fake_run(command, env, **kwargs):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert gpu not in running, "two runs on one GPU"
            running.add(gpu)
            peak[0] = max(peak[0], len(running))
            seen.append(gpu)
        time.sleep(0.05)
        with lock:
            running.discard(gpu)
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="failed on purpose")

    monkeypatch.setattr(sweep.subprocess, "run", fake_run)
    args = argparse.Namespace(runs=str(tmp_path), config="c.toml", dataset="digits")
    rows = []
    sweep.run_all(["softmax", "gumbel", "sparsemax", "softmax:mismatched"], args, parallel=2, gpus=["0", "1"],
                  on_row=rows.append)
    assert sorted(r["run"] for r in rows) == ["gumbel", "softmax", "softmax-mismatched", "sparsemax"]
    assert peak[0] == 2 and sorted(set(seen)) == ["0", "1"]
    assert all(r["gpu"] in ("0", "1") and r["exit"] == 1 for r in rows)


def test_the_recorded_study_is_its_runs(tmp_path):
    """zoo/STUDY.md and zoo/results/cifar100-study5.jsonl agree with the run records they came from
    (zoo/results/cifar100-study5-records/, one .jsonl.gz per run name: each run's report.json, history.csv,
    config.toml and test.json), and the records unpack into a study directory without overwriting anything
    there."""
    import json
    import re

    import numpy as np

    records_module = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(records_module)
    records_module.loader.exec_module(records)
    recorded = ROOT / "zoo" / "results" / "cifar100-study5-records"
    study = tmp_path / "study"
    kept = study / "runs" / "softmax-seed0" / "report.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    records.unpack(recorded, study)
    assert kept.read_text() == "{}"
    kept.unlink()
    records.unpack(recorded, study)
    # the rows agree with their records, for the 5-seed study and for the earlier 3-seed records it replaced
    earlier = tmp_path / "earlier"
    records.unpack(ROOT / "zoo" / "results" / "cifar100-study-records", earlier)
    for rows_file, directory in (("cifar100-study5.jsonl", study), ("cifar100-study.jsonl", earlier)):
        rows = [json.loads(line) for line in (ROOT / "zoo" / "results" / rows_file).read_text().splitlines()]
        assert rows
        for row in rows:
            report = json.loads((directory / row["run_dir"] / "report.json").read_text())
            assert ((row["accuracy"], row["f1_macro"], row["ece"])
                    == (report["accuracy"], report["f1_macro"], report["ece"])), (rows_file, row["run_dir"])
    text = (ROOT / "zoo" / "STUDY.md").read_text()
    for name in ("log_softmax", "taylor", "softmax-mismatched"):
        runs = [study / "runs" / f"{name}-seed{s}" for s in range(5)]
        values = [100 * json.loads((run / "report.json").read_text())["accuracy"] for run in runs]
        tested = [100 * json.loads((run / "test.json").read_text())["accuracy"] for run in runs]
        cells = re.search(rf"^\| `{re.escape(name)}` \| 5 \| ([^|]+) \| ([^|]+) \|", text, re.M).groups()
        assert [cell.strip() for cell in cells] == [f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}"
                                                    for v in (values, tested)]
    # packing what was unpacked gives the same records, file for file, byte for byte
    assert records.pack(study, tmp_path / "again") > 0
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(p.name for p in recorded.iterdir())
    assert all(p.name.endswith(".jsonl.gz") for p in recorded.iterdir())
    for file in recorded.iterdir():
        assert (tmp_path / "again" / file.name).read_bytes() == file.read_bytes(), file.name
    # a single records file (the older layout), plain or compressed, still unpacks
    text = "".join(records.read_text(file) for file in records.record_files(recorded))
    (tmp_path / "one.jsonl").write_text(text)
    (tmp_path / "one.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    expected = records.unpack(recorded, tmp_path / "from-dir")
    assert records.unpack(tmp_path / "one.jsonl", tmp_path / "from-one") == expected > 0
    assert records.unpack(tmp_path / "one.jsonl.gz", tmp_path / "from-one-gz") == expected


def test_records_are_compressed_and_rewritten_only_where_they_changed(tmp_path):
    """`pack` writes gzip-compressed records (the GPU tool carries the whole tree with every call, 64 MiB at
    most): plain `.jsonl` records (the layout before 2026-12-06) are read and replaced; the same records
    compressed by another zlib keep their bytes (no churn in git), changed records are rewritten."""
    records_module = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(records_module)
    records_module.loader.exec_module(records)
    study = tmp_path / "study"
    for run in ("softmax-seed0", "taylor-seed0"):
        (study / "runs" / run).mkdir(parents=True)
        (study / "runs" / run / "report.json").write_text('{"accuracy": 0.5}')
    (study / "study.json").write_text("{}")
    out = tmp_path / "records"
    records.pack(study, out)
    assert sorted(p.name for p in out.iterdir()) == ["_study.jsonl.gz", "softmax.jsonl.gz", "taylor.jsonl.gz"]
    plain = gzip.decompress((out / "softmax.jsonl.gz").read_bytes()).decode()
    assert json.loads(plain.splitlines()[0]) == {"path": "runs/softmax-seed0/report.json", "text": '{"accuracy":0.5}'}
    old = tmp_path / "old"  # the older layout: plain text
    old.mkdir()
    for file in out.iterdir():
        (old / file.name[:-3]).write_text(gzip.decompress(file.read_bytes()).decode())
    records.pack(study, old)
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in out.iterdir())
    assert all((old / p.name).read_bytes() == p.read_bytes() for p in out.iterdir())
    same_text = gzip.decompress((out / "taylor.jsonl.gz").read_bytes())
    (out / "taylor.jsonl.gz").write_bytes(gzip.compress(same_text, compresslevel=1, mtime=1))  # other bytes
    other = (out / "taylor.jsonl.gz").read_bytes()
    (study / "runs" / "softmax-seed0" / "report.json").write_text('{"accuracy": 0.6}')
    records.pack(study, out)
    assert (out / "taylor.jsonl.gz").read_bytes() == other
    changed = gzip.decompress((out / "softmax.jsonl.gz").read_bytes()).decode().splitlines()[0]
    assert json.loads(changed)["text"] == '{"accuracy":0.6}'


def test_packing_scored_only_leaves_out_every_run_that_could_never_be_scored(tmp_path):
    """Between GPU slices the weights are lost: `pack --scored-only` keeps scored runs, finished timing runs
    and diverged runs (the study's outcome for their settings, with nothing to score), and leaves out
    finished-but-unscored and unfinished runs (a run that failed otherwise too), so the next slice retrains
    them."""
    records_module = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(records_module)
    records_module.loader.exec_module(records)
    study = tmp_path / "study"
    layout = {"softmax-seed0": ("config.toml", "history.csv", "report.json", "test.json"),  # scored
              "softmax-seed1": ("config.toml", "history.csv", "report.json"),  # finished, not scored
              "softmax-seed2": ("config.toml", "history.csv"),  # unfinished
              "timing-softmax-seed0": ("config.toml", "history.csv", "report.json"),  # finished timing run
              "timing-softmax-seed1": ("config.toml",),  # unfinished timing run
              "tune-softmax-lr9-seed0": ("config.toml", "history.csv", "failed.json"),  # diverged
              "tune-softmax-lr9-seed1": ("config.toml", "failed.json")}  # failed otherwise: retrained
    failed = {"tune-softmax-lr9-seed0": {"reason": "non-finite loss", "epoch": 2},
              "tune-softmax-lr9-seed1": {"reason": "killed"}}
    for run, files in layout.items():
        (study / "runs" / run).mkdir(parents=True)
        for name in files:
            text = json.dumps(failed[run]) if name == "failed.json" else "{}"
            (study / "runs" / run / name).write_text(text if name.endswith(".json") else f"{run}/{name}")
    (study / "study.json").write_text("{}")
    records.main(["pack", "--scored-only", str(study), str(tmp_path / "kept")])
    back = tmp_path / "back"
    records.unpack(tmp_path / "kept", back)
    assert sorted(p.name for p in (back / "runs").iterdir()) == [
        "softmax-seed0", "timing-softmax-seed0", "tune-softmax-lr9-seed0"]
    assert sorted(p.name for p in (back / "runs" / "softmax-seed0").iterdir()) == [
        "config.toml", "history.csv", "report.json", "test.json"]
    from keras_softmax.study.runner import run_state  # the study reads the unpacked run as settled

    assert run_state(back / "runs" / "tune-softmax-lr9-seed0") == "diverged"
    assert (back / "study.json").is_file()
    # without the option every run travels, as before
    records.pack(study, tmp_path / "all")
    records.unpack(tmp_path / "all", tmp_path / "all-back")
    assert sorted(p.name for p in (tmp_path / "all-back" / "runs").iterdir()) == sorted(layout)


def test_merging_a_slice_only_adds_to_the_records(tmp_path):
    """`merge` adds what a GPU slice sent back (its rec.tgz) to the committed records: new runs and the
    union of the placements, the result what `pack` makes of the union; a slice that began from older
    records drops nothing; a file that differs (or a run placed differently) stops it, naming the file,
    with the records untouched."""
    import json
    import tarfile

    records_module = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(records_module)
    records_module.loader.exec_module(records)

    def study(path, runs, placements):
        for run in runs:
            (path / "runs" / run).mkdir(parents=True)
            for name in ("config.toml", "report.json", "test.json"):
                (path / "runs" / run / name).write_text(f'{{"run": "{run}", "file": "{name}"}}')
        (path / "study.json").write_text('{"spec": "s.toml"}')
        (path / "placements.json").write_text(json.dumps(placements))
        return path

    committed = tmp_path / "records"
    # an earlier slice trained softmax-seed1 but could not score it: its placement is recorded, not the run
    records.pack(study(tmp_path / "a", ["softmax-seed0", "taylor-seed0"],
                       {"softmax-seed0": 1, "taylor-seed0": 1, "softmax-seed1": 4}), committed)
    # the slice started from older records (no taylor) and trained two more runs, softmax-seed1 again
    sliced = study(tmp_path / "b", ["softmax-seed0", "softmax-seed1", "gumbel-seed0"],
                   {"softmax-seed0": 1, "softmax-seed1": 0, "gumbel-seed0": 0})
    records.pack(sliced, tmp_path / "rec")
    with tarfile.open(tmp_path / "rec.tgz", "w:gz") as archive:
        for file in (tmp_path / "rec").iterdir():
            archive.add(file, arcname=f"./{file.name}")
    assert records.merge(tmp_path / "rec.tgz", committed) == (8, 14)
    expected = study(tmp_path / "c", ["softmax-seed0", "softmax-seed1", "taylor-seed0", "gumbel-seed0"],
                     {"softmax-seed0": 1, "taylor-seed0": 1, "softmax-seed1": 0, "gumbel-seed0": 0})
    records.pack(expected, tmp_path / "expected")
    assert sorted(p.name for p in committed.iterdir()) == ["_study.jsonl.gz", "gumbel.jsonl.gz", "softmax.jsonl.gz",
                                                           "taylor.jsonl.gz"]
    for file in (tmp_path / "expected").iterdir():
        assert (committed / file.name).read_bytes() == file.read_bytes(), file.name
    assert records.merge(tmp_path / "rec", committed) == (14, 14)  # a directory; merging again adds nothing

    before = {p.name: p.read_bytes() for p in committed.iterdir()}
    (sliced / "runs" / "softmax-seed0" / "report.json").write_text('{"run": "trained again"}')
    records.pack(sliced, tmp_path / "changed")
    with pytest.raises(SystemExit, match=r"runs/softmax-seed0/report.json differs between .*changed and"):
        records.merge(tmp_path / "changed", committed)
    (sliced / "runs" / "softmax-seed0" / "report.json").write_text('{"run": "softmax-seed0", "file": "report.json"}')
    (sliced / "placements.json").write_text(json.dumps({"softmax-seed0": 1, "gumbel-seed0": 3}))
    records.pack(sliced, tmp_path / "moved")
    with pytest.raises(SystemExit, match="places gumbel-seed0 differently"):
        records.merge(tmp_path / "moved", committed)
    assert {p.name: p.read_bytes() for p in committed.iterdir()} == before
    with pytest.raises(SystemExit, match=r"not found: .*rec2.tgz; nothing was written"):
        records.main(["merge", str(tmp_path / "rec2.tgz"), str(committed)])


def test_merging_takes_the_slices_plan_for_runs_not_yet_recorded(tmp_path):
    """A study writes ``configs/`` for every planned run, and a tuned run's settings are its grid's best, so a
    slice that trained more grid points may plan a tuned run anew (2026-12-06: tuned softmax at lr 1.6, not
    0.8): `merge` keeps the slice's config of a run the records do not hold, and still refuses a changed
    config of a recorded run."""
    records_module = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(records_module)
    records_module.loader.exec_module(records)

    def study(path, tuned_lr, grid_lr=0.8):
        (path / "runs" / "softmax-seed0").mkdir(parents=True)
        (path / "configs").mkdir()
        for name in ("config.toml", "report.json", "test.json"):
            (path / "runs" / "softmax-seed0" / name).write_text(f"lr = {grid_lr}" if name == "config.toml" else "{}")
        (path / "configs" / "softmax-seed0.toml").write_text(f"lr = {grid_lr}")
        (path / "configs" / "tuned-softmax-seed5.toml").write_text(f"lr = {tuned_lr}")
        (path / "study.json").write_text("{}")
        return path

    committed = tmp_path / "records"
    records.pack(study(tmp_path / "a", tuned_lr=0.8), committed)
    records.pack(study(tmp_path / "b", tuned_lr=1.6), tmp_path / "slice")
    records.merge(tmp_path / "slice", committed)
    records.unpack(committed, tmp_path / "back")
    assert (tmp_path / "back" / "configs" / "tuned-softmax-seed5.toml").read_text() == "lr = 1.6"
    before = {p.name: p.read_bytes() for p in committed.iterdir()}
    records.pack(study(tmp_path / "c", tuned_lr=1.6, grid_lr=0.4), tmp_path / "changed")
    with pytest.raises(SystemExit, match="configs/softmax-seed0.toml differs"):
        records.merge(tmp_path / "changed", committed)
    assert {p.name: p.read_bytes() for p in committed.iterdir()} == before


def test_the_zoo_readme_quotes_the_recorded_study_as_it_stands():
    """zoo/README.md's "What the study says" restates zoo/STUDY.md by hand: every signed two-decimal figure
    in it is one STUDY.md prints, and the runs it counts are STUDY.md's (the strong section's count in the
    top README's results table too), so a STUDY.md regenerated after a GPU slice fails here until the
    READMEs say what the study now says."""
    import re

    readme = (ROOT / "zoo" / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## What the study says"):]
    study = (ROOT / "zoo" / "STUDY.md").read_text(encoding="utf-8")
    figures = re.findall(r"[+−-]\d+\.\d\d\b", section)
    assert len(figures) > 20
    assert [f for f in figures if f.replace("−", "-") not in study] == []
    finished, planned = re.search(r"^- runs: (\d+) of (\d+) planned", study, re.M).groups()
    assert f"from {finished} of the study's {planned} runs" in section
    assert f"**{finished} of the {planned} planned runs" in readme
    strong = re.search(r"^Study `cifar100-strong.toml` .*: (\d+) of (\d+) planned runs", study, re.M).groups()
    assert "{} of its {} runs".format(*strong) in section
    top = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "six heads × 3 seeds at the strong recipe ({} of {} runs,".format(*strong) in top
