"""The test split: which runs are scored, what test.json holds, how the rows and the report carry it,
and the spec rules that keep every choice on validation (tuned seeds the grid never saw)."""

from __future__ import annotations

import json
import shutil
import re

import numpy as np
import pytest
from PIL import Image

from keras_softmax.evaluation.metrics import expected_calibration_error
from keras_softmax.io import write_json
from keras_softmax.study import runner
from keras_softmax.study.results import read_results
from keras_softmax.study.runner import _to_score, run_study
from keras_softmax.study.spec import Planner, StudyError, load_spec
from keras_softmax.study.testsplit import read_test_images, score_figures

from .images import write_class_images
from .test_report import _cells, fake_run, synthetic  # noqa: F401  (synthetic: the fixture)


def _tree(root, classes, per_class=2):
    for c, name in enumerate(classes):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(np.full((32, 32, 3), 10 * c + k, np.uint8)).save(folder / f"{k}.png")


def test_test_images_are_labelled_by_the_runs_own_classes(tmp_path):
    _tree(tmp_path, ["cat", "apple"])
    images, labels = read_test_images(tmp_path, ["apple", "bee", "cat"])
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 2, 2]  # apple is class 0 of the run, cat class 2
    assert images[0, 0, 0, 0] == 10 and images[2, 0, 0, 0] == 0
    with pytest.raises(ValueError, match="not among the run's classes in .*: cat"):
        read_test_images(tmp_path, ["apple", "bee"])


def test_test_figures_by_hand():
    labels = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    figures = score_figures(labels, p, temperature=2.0)
    assert figures["accuracy"] == pytest.approx(0.75)  # argmax of a tie is the first class
    assert figures["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.5])))
    assert figures["num_examples"] == 4 and "ece_val_temperature" in figures
    # the validation T is applied as it was fit: softmax(log max(p, 1e-12) / T) (regression: 1e-45 here)
    sharp = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    scaled = np.exp(np.log(np.maximum(sharp, 1e-12)) / 6.0)
    scaled /= scaled.sum(axis=1, keepdims=True)
    assert score_figures(labels, sharp, temperature=6.0)["ece_val_temperature"] == pytest.approx(
        expected_calibration_error(labels, scaled))
    coarse = score_figures(np.array([0, 1, 2, 3]), np.eye(4), fine_to_coarse=[0, 0, 1, 1])
    assert coarse["coarse_accuracy"] == 1.0


def test_only_finished_runs_with_a_model_and_no_test_figures_are_scored(synthetic, tmp_path):
    spec_path, out, _, _, planned = synthetic
    for run in ("softmax-seed0", "softmax-seed1", "log_softmax-seed0"):
        (out / "runs" / run / "model.keras").write_bytes(b"model")
    write_json(out / "runs" / "softmax-seed1" / "test.json", {"accuracy": 0.7})
    jobs = _to_score(planned, out)
    assert [(p.run_id, state) for p, state in jobs] == [("softmax-seed0", "score"), ("log_softmax-seed0", "score")]
    slot = runner.Slot(0, None)
    command = runner._Runner(out, [slot], print, test_dataset=str(tmp_path)).command(jobs[0][0], "score")
    assert command[1:4] == ["-m", "keras_softmax_cli.child", "score"] and command[-1] == str(tmp_path.resolve())
    with pytest.raises(StudyError, match="--test-dataset not found"):
        run_study(spec_path, out, budget=0, test_dataset=str(tmp_path / "none"), log=lambda line: None)
    # a report reads no data: the test split need not be here
    run_study(spec_path, out, report_only=True, test_dataset=str(tmp_path / "none"), log=lambda line: None)


def test_a_run_is_scored_as_soon_as_it_trains_even_after_the_time_budget_is_spent(tmp_path):
    # Regression (2026-12-04, one H200): with --budget, scoring waited for the end of the invocation
    # and then met the spent start deadline, so no run was ever scored and the slice's 13 runs were lost.
    import time

    class Planned:
        kind = "head"

        def __init__(self, run_id):
            self.run_id = run_id

    calls = []

    def train(planned, state, slot):
        calls.append((planned.run_id, state))
        time.sleep(0.3 if state == "train" else 0.0)  # the budget runs out while the first run trains
        return 0, ""

    slots = runner.make_slots(1)
    limited = runner._Runner(tmp_path, slots, lambda line: None, start_until=time.monotonic() + 0.1,
                             test_dataset=str(tmp_path))
    limited.train = train
    limited.record_placement = lambda run_id, slot: None
    limited.execute([(Planned("run-a"), "train"), (Planned("run-b"), "train")])
    assert calls == [("run-a", "train"), ("run-a", "score")]
    assert limited.trained == 1 and limited.scored == 1 and limited.deferred == 1

    timing = Planned("timing-run-a-seed0")
    timing.kind = "timing"
    assert not runner._Runner(tmp_path, slots, lambda line: None, test_dataset=str(tmp_path)).scores(timing)
    assert not runner._Runner(tmp_path, slots, lambda line: None).scores(Planned("run-a"))


@pytest.mark.parametrize("in_process", [True, False])
def test_a_run_its_training_process_scored_is_not_scored_again(tmp_path, in_process):
    """The study trains with ``train-and-score``: when that process scored the run (its ``done: scored``
    line, and test.json), no scoring process follows; when its scoring failed, one does."""
    class Planned:
        kind, run_id = "head", "run-a"

    calls, lines = [], []
    study = runner._Runner(tmp_path, runner.make_slots(1), lines.append, test_dataset=str(tmp_path))

    def train(planned, state, slot):
        calls.append(state)
        if state == "train" and in_process:
            (tmp_path / "runs" / "run-a").mkdir(parents=True)
            write_json(tmp_path / "runs" / "run-a" / "test.json", {"accuracy": 0.5})
            study.scoring_seconds["run-a"] = 4.0  # as train() reads it from the child's output
        return 0, ""

    study.train = train
    study.record_placement = lambda run_id, slot: None
    study.execute([(Planned(), "train")])
    assert calls == (["train"] if in_process else ["train", "score"]) and study.scored == 1
    if in_process:
        assert "[1/1] scored run-a on the test split in 4s (in its training process)" in lines


def test_the_child_reads_as_the_study_expects_and_a_failed_scoring_is_a_note(tmp_path, capsys):
    from keras_softmax_cli import child

    assert runner._SCORED.match(child.SCORED.format(seconds=12.34)).group(1) == "12.3"
    child.score_after_training(str(tmp_path / "no-run"), str(tmp_path / "no-test"))  # returns: training succeeded
    out = capsys.readouterr().out
    assert out.startswith("note: scoring on the test split in the training process failed (") and "no-run" in out
    assert "the study scores the run in a process of its own" in out


def test_finished_unscored_runs_are_scored_whatever_the_budget(synthetic, tmp_path, monkeypatch):
    # Runs trained earlier without --test-dataset still have their weights: a spent budget must not skip them.
    spec_path, out, _, _, planned = synthetic
    for run in ("softmax-seed0", "log_softmax-seed0"):
        (out / "runs" / run / "model.keras").write_bytes(b"model")
    scored = []

    def train(self, planned, state, slot):
        assert state == "score", (planned.run_id, state)  # every run is finished: nothing trains
        scored.append(planned.run_id)
        write_json(out / "runs" / planned.run_id / "test.json", {"accuracy": 0.5})
        return 0, ""

    monkeypatch.setattr(runner._Runner, "train", train)
    lines = []
    outcome = run_study(spec_path, out, budget=0, test_dataset=str(tmp_path), log=lines.append)
    assert sorted(scored) == ["log_softmax-seed0", "softmax-seed0"] and outcome.failed == []
    assert any("test split: scoring 2 finished run(s) once" in line for line in lines)


def test_the_report_carries_test_figures_beside_validation_and_says_where_there_are_none(synthetic):
    spec_path, out, _, _, planned = synthetic
    for p in planned:
        if p.name == "softmax":
            write_json(out / "runs" / p.run_id / "test.json", {"accuracy": 0.60 + 0.01 * p.seed, "nll": 1.1})
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    rows = read_results(out / "results.jsonl")
    softmax = [r for r in rows if r["name"] == "softmax"]
    assert [r["test_accuracy"] for r in softmax] == [0.60, 0.61, 0.62]
    assert "test_accuracy" not in next(r for r in rows if r["name"] == "log_softmax")
    text = (out / "STUDY.md").read_text()
    assert "test split: 3 of 16 finished runs scored" in text
    assert _cells(text, "softmax")[0][3] == "61.00 ± 1.00"
    assert _cells(text, "log_softmax")[0][3] == "—"
    verdict = next(line for line in text.splitlines()
                   if line.startswith("| `softmax` − `log_softmax`") and "| test |" in line)
    assert "| 3 vs 0 |" in verdict and "untested (scored: n = 3 vs 0)" in verdict
    assert "Validation chooses, test reports" in text


def test_tuned_seeds_must_be_seeds_the_grid_never_saw(tmp_path):
    spec_path = tmp_path / "spec.toml"
    base = 'heads = ["softmax"]\nseeds = [0, 1]\n[tuning]\nlr = [0.1, 0.2]\nseeds = [0, 1]\n'
    spec_path.write_text(base + "tuned_seeds = [1, 2]\n")
    with pytest.raises(StudyError, match="seed 1 is also a grid seed"):
        load_spec(spec_path)
    spec_path.write_text(base + "tuned_seeds = [5, 6, 7]\n")
    spec = load_spec(spec_path)
    tuned = Planner(spec).plan_tuned({"softmax": {"lr": 0.2}})
    assert [(p.run_id, p.seed) for p in tuned] == [("tuned-softmax-seed5", 5), ("tuned-softmax-seed6", 6),
                                                   ("tuned-softmax-seed7", 7)]


def test_verdict_keys_of_a_spec_are_checked(tmp_path):
    spec_path = tmp_path / "spec.toml"
    head = 'heads = ["softmax", "log_softmax"]\nseeds = [0]\n'
    cases = [
        ('[[sections]]\ntitle = "q"\nrows = ["softmax"]\nreference = "log_softmax"\nprimary = ["log_softmax", "x"]\n',
         "'x' is not a head or variant"),
        ('[[sections]]\ntitle = "q"\nrows = ["softmax"]\nmetric = "loss"\n', "metric must be one of"),
        ('[[claims]]\nclaim = "c"\nrows = ["softmax"]\nreference = "log_softmax"\nexpect = "maybe"\n',
         "expect must be"),
        ('[[claims]]\nclaim = "c"\n', "give rows"),
        ('[[claims]]\nclaim = "c"\nrows = ["softmax"]\nreference = "log_softmax"\nexpect = "better"\nsize = -2\n',
         r"size must be > 0 for expect = 'better'"),
        ('[[claims]]\nclaim = "c"\nrows = ["softmax"]\nreference = "log_softmax"\nexpect = "worse"\nsize = "big"\n',
         "size must be a finite non-zero number"),
        ('[[claims]]\nclaim = "c"\nrows = ["softmax"]\nreference = "log_softmax"\nexpect = "equivalent"\nsize = 1\n',
         "size needs rows and expect = better"),
        ('[[claims]]\nclaim = "c"\nrows = ["softmax"]\nreference = "log_softmax"\nexpect = "worse"\nsize = 0\n',
         "size must be a finite non-zero number"),
        ('[verdicts]\nmargin = -1\n', "margin must be"),
        ('[verdicts]\nrepeats = "none.json"\n', "repeats file not found"),
        ('primary = "nope"\n', "primary must be"),
    ]
    for extra, message in cases:
        spec_path.write_text(head + extra)
        with pytest.raises(StudyError, match=message):
            load_spec(spec_path)


def test_the_recorded_specs_rest_every_verdict_on_five_seeds():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = load_spec(root / "zoo" / "studies" / "cifar100-questions.toml")
    assert len(spec.seeds) >= 5 and all(v.seeds is None for v in spec.variants)
    assert len(spec.tuning.seeds) >= 2 and not set(spec.tuning.tuned_seeds) & set(spec.tuning.seeds)
    assert len(spec.tuning.tuned_seeds) >= 5
    assert spec.verdicts.repeats is not None and spec.primary == "softmax"
    for section in spec.sections:  # a question of several comparisons declares its answer
        pairs = section.comparisons or [r for r in section.rows if r != section.reference]
        assert section.primary or len(pairs) <= 1, section.title
    assert json.loads(spec.verdicts.repeats.read_text())["pairs"]


@pytest.mark.slow
def test_a_study_scores_each_finished_run_once_on_the_test_split(tmp_path, cache_dir, monkeypatch):
    """End to end on a tiny class-folder dataset: train, score on its test tree, report; a second
    invocation neither trains nor scores again."""
    from cli.helpers import run_cli

    write_class_images(tmp_path / "data")
    test_tree = tmp_path / "test-only"
    (test_tree / "test").mkdir(parents=True)
    for name in ("apple", "bee", "cat"):
        (test_tree / "test" / name).symlink_to(tmp_path / "data" / "test" / name)
    spec = tmp_path / "tiny.toml"
    spec.write_text('heads = ["softmax"]\nseeds = [0]\nepochs = 1\nwidths = [4, 8, 8, 8]\nbatch_size = 16\n'
                    'val_split = 12\njit_compile = false\n')
    out = tmp_path / "study"
    args = ("study", spec, "--out", out, "--dataset", tmp_path / "data", "--test-dataset", test_tree)
    result = run_cli(*args, cwd=tmp_path, cache_dir=cache_dir, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # as soon as it trained, by its training process
    assert re.search(r"\[1/1\] scored softmax-seed0 on the test split in \d+s \(in its training process\)",
                     result.stdout), result.stdout
    assert "test split: scoring" not in result.stdout  # so nothing is left for the sweep at the end
    test = json.loads((out / "runs" / "softmax-seed0" / "test.json").read_text())
    assert test["num_examples"] == 18 and test["split"] == "test" and 0 <= test["accuracy"] <= 1
    row = read_results(out / "results.jsonl")[0]
    assert row["test_accuracy"] == test["accuracy"] and row["test_nll"] == test["nll"]
    text = (out / "STUDY.md").read_text()
    assert "test split: 1 of 1 finished runs scored" in text
    assert _cells(text, "softmax")[0][3] == f"{100 * test['accuracy']:.2f}"
    again = run_cli(*args, cwd=tmp_path, cache_dir=cache_dir, timeout=600)
    assert again.returncode == 0 and "scoring" not in again.stdout and "training" not in again.stdout

    # Scoring predicts with a batch that divides the test images (18 at batch 16 would end in a batch
    # of 2, a second compiled program: seconds on a GPU), and gives the same figures.
    from keras_softmax.evaluation import evaluate
    from keras_softmax.study.testsplit import score_run

    copy = tmp_path / "copy"
    shutil.copytree(out / "runs" / "softmax-seed0", copy)
    (copy / "test.json").unlink()
    sizes = []
    original = evaluate.predict_probabilities
    monkeypatch.setattr(evaluate, "predict_probabilities",
                        lambda *args, **kwargs: sizes.append(kwargs["batch_size"]) or original(*args, **kwargs))
    assert score_run(copy, test_tree)["accuracy"] == test["accuracy"] and sizes == [9]
