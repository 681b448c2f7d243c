"""zoo/STUDY.md is rebuilt byte for byte from the committed run records of the 5-seed study (every run
scored on the test split) by `--report-only`, and docs/study/ holds exactly the figures it links (no stale
PNGs)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_report_only_rebuilds_the_recorded_study_md_from_the_records(tmp_path, monkeypatch):
    from keras_softmax.study.runner import run_study

    loader = importlib.util.spec_from_file_location("study_records", ROOT / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(records)
    records.unpack(ROOT / "zoo" / "results" / "cifar100-study5-records", tmp_path / "runs" / "study5")
    shutil.copytree(ROOT / "zoo" / "studies", tmp_path / "zoo" / "studies")
    shutil.copytree(ROOT / "zoo" / "presets", tmp_path / "zoo" / "presets")
    (tmp_path / "zoo" / "results").mkdir()
    for name in ("cifar100-study-repeats.json", "cifar100-gpu-kinds.json", "cifar100-strong.jsonl",
                 "cifar100-study5.jsonl"):
        shutil.copy(ROOT / "zoo" / "results" / name, tmp_path / "zoo" / "results")
    # The runs name the dataset as the study was given it; the report reads none, so it need not be here.
    monkeypatch.chdir(tmp_path)
    run_study("zoo/studies/cifar100-questions.toml", "runs/study5", dataset=".data/cifar100-train-jpg.tar.gz",
              test_dataset=".data/cifar100-test-jpg.tar.gz", report_only=True, report_path="zoo/STUDY.md",
              plots_dir="docs/study", log=lambda line: None)
    rebuilt = (tmp_path / "zoo" / "STUDY.md").read_text(encoding="utf-8")
    recorded = (ROOT / "zoo" / "STUDY.md").read_text(encoding="utf-8")
    assert rebuilt == recorded
    linked = set(re.findall(r"\]\(\.\./docs/study/([^)]+\.png)\)", recorded))
    assert linked == {p.name for p in (tmp_path / "docs" / "study").glob("*.png")}
    assert linked == {p.name for p in (ROOT / "docs" / "study").glob("*.png")}
