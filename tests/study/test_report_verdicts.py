"""How the report draws and shows verdicts while a study is partial, and the test split beside
validation (the audit of 2026-12-05): Holm over the declared family, provisional verdicts, the earlier
study's own family, test intervals in the headlines, tables and forest plots, the test calibration
columns, no curves for a question whose metric they do not show, and a report-only run that has
nothing to report."""

from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pytest
from scipy import stats

from keras_softmax.io import write_json
from keras_softmax.study import plots
from keras_softmax.study.report import write_study_report
from keras_softmax.study.results import collect
from keras_softmax.study.runner import StudyError, run_study
from keras_softmax.study.spec import Planner, load_spec

from .test_report import SPEC, _cells, earlier_report, fake_run, report_without, synthetic  # noqa: F401


def _rows(text: str, a: str, b: str, split: str) -> list[str]:
    """The first verdict-table row of ``a − b`` on ``split`` ("validation" or "test")."""
    for line in text.splitlines():
        if line.startswith(f"| `{a}` − `{b}`"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[1] == split:
                return cells
    raise AssertionError(f"no {split} row of {a} − {b}")


def _score(out, planned, accuracy, **extra):
    """A test.json for every distinct planned run: ``accuracy(run)`` and ``extra``."""
    for p in {p.run_id: p for p in planned}.values():
        write_json(out / "runs" / p.run_id / "test.json", {"accuracy": accuracy(p), **extra})


def test_a_verdict_on_fewer_runs_than_planned_is_marked_provisional(synthetic):
    text = report_without(synthetic, "sparsemax-seed2")
    row = _rows(text, "sparsemax", "log_softmax", "validation")
    assert row[2] == "2 vs 3" and row[-1].startswith("*provisional* (2 of 3 vs 3 of 3 runs): **worse**")
    assert not _rows(text, "softmax", "log_softmax", "validation")[-1].startswith("*provisional*")


def test_holm_in_the_report_runs_over_the_whole_declared_family(synthetic):
    text = report_without(synthetic, "sparsemax-seed1", "sparsemax-seed2")
    softmax = [0.70 + 0.01 * s for s in range(3)]
    log_softmax = [0.69 + 0.01 * s for s in range(3)]
    raw = stats.ttest_ind(softmax, log_softmax, equal_var=False).pvalue
    row = _rows(text, "softmax", "log_softmax", "validation")
    assert row[5] == f"{min(1.0, 2 * raw):.3g}"  # m = 2 although sparsemax − log_softmax is untested
    assert _rows(text, "sparsemax", "log_softmax", "validation")[-1] == "untested (n = 1 vs 3)"
    assert "Holm over all 2 on each split (on validation 1 still untested, each counted with p = 1)" in text


def test_the_test_split_has_intervals_in_the_headlines_the_tables_and_the_forest_plot(synthetic, monkeypatch):
    spec_path, out, spec, planner, planned = synthetic
    test_top1 = {"softmax": 0.60, "log_softmax": 0.62, "sparsemax": 0.55, "softmax-coarse": 0.8}

    def accuracy(p):
        name = p.name if p.kind in ("head", "variant") else p.config.head
        return test_top1[name] + 0.004 * p.seed * (1 + (name == "softmax"))

    _score(out, planned, accuracy, nll=1.25, ece=0.05, ece_val_temperature=0.02)
    forests = {}
    monkeypatch.setattr(plots, "plot_forest", lambda items, path, **kw: forests.setdefault(path.name, items))
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    a = [test_top1["softmax"] + 0.008 * s for s in range(3)]
    b = [test_top1["log_softmax"] + 0.004 * s for s in range(3)]
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = np.mean(a) - np.mean(b)
    raw = f"{100 * d:+.2f} pp [{100 * interval.low:+.2f}, {100 * interval.high:+.2f}]"
    headline = text.split("## Headline verdicts")[1].split("\n## ")[0]
    test_row = next(line for line in headline.splitlines() if "| test |" in line and "`softmax` − `log_softmax`" in line)
    assert raw in test_row
    table_row = _rows(text, "softmax", "log_softmax", "test")
    assert table_row[3:5] == [f"{100 * d:+.2f}", f"[{100 * interval.low:+.2f}, {100 * interval.high:+.2f}]"]
    p = {"softmax": stats.ttest_ind(a, b, equal_var=False).pvalue,
         "sparsemax": stats.ttest_ind([test_top1["sparsemax"] + 0.004 * s for s in range(3)], b,
                                      equal_var=False).pvalue}
    adjusted, running = {}, 0.0
    for rank, name in enumerate(sorted(p, key=p.get)):  # Holm's step-down over the family of 2
        running = max(running, min(1.0, (2 - rank) * p[name]))
        adjusted[name] = running
    assert table_row[5] == f"{adjusted['softmax']:.3g}"
    items = forests["heads-forest.png"]
    assert [item["split"] for item in items] == ["validation", "test"] * 2
    test_item = items[1]
    assert test_item["label"] == "softmax − log_softmax (test)"
    assert (test_item["low"], test_item["high"]) == pytest.approx((100 * interval.low, 100 * interval.high))
    # the test calibration columns, with the same rules as validation's
    header = next(line for line in text.splitlines() if line.startswith("| run | n | NLL |"))
    assert "| test NLL | test ECE (%) | test ECE after the validation T (%) |" in header
    softmax_cal = next(r for r in _cells(text, "softmax") if len(r) > 9 and r[7].startswith("1.2500"))
    assert softmax_cal[7:10] == ["1.2500 ± 0.0000", "5.00 ± 0.00", "2.00 ± 0.00"]
    sparsemax_cal = next(r for r in _cells(text, "sparsemax") if "n/a¹" in r)
    assert sparsemax_cal[7] == "floor³" and sparsemax_cal[9] == "n/a¹"


def test_a_question_whose_metric_the_curves_do_not_show_gets_no_curves(tmp_path):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(textwrap.dedent(SPEC).replace(
        'reference = "softmax"\n[[sections]]', 'reference = "softmax"\nmetric = "coarse_accuracy"\n[[sections]]'))
    spec = load_spec(spec_path)
    planned = Planner(spec).plan()
    out = tmp_path / "study"
    for run in {p.run_id: p for p in planned}.values():
        fake_run(out, run)
    text = write_study_report(spec, planned, collect(planned, out), out).read_text()
    section = text.split("## A question")[1].split("\n## ")[0]
    assert "No curves: the question's metric (superclass top-1)" in section
    assert "a-question-val_accuracy.png" not in section
    assert "These rows' models have 2 and 4 classes: NLL and ECE are over each model's own classes" in section


def test_report_only_refuses_a_directory_with_no_finished_run_and_writes_nothing(synthetic, tmp_path):
    spec_path, *_ = synthetic
    report = tmp_path / "STUDY.md"
    report.write_text("the recorded report")
    with pytest.raises(StudyError, match=r"--report-only: .*typo holds no finished run of spec.toml"):
        run_study(spec_path, tmp_path / "typo", report_only=True, report_path=report, log=lambda line: None)
    assert report.read_text() == "the recorded report" and not (tmp_path / "typo").exists()


def test_report_only_reads_no_data(synthetic, tmp_path):
    """The runs name their dataset, which need not exist for a report (nor the test split)."""
    spec_path, out, *_ = synthetic
    run_study(spec_path, out, report_only=True, test_dataset=str(tmp_path / "absent.tar.gz"),
              log=lambda line: None)
    assert (out / "STUDY.md").is_file()


def test_report_only_keeps_the_studys_own_command(synthetic, tmp_path):
    """A rebuild given other arguments (another --out, no --test-dataset) neither rewrites study.json nor puts
    its own arguments in the report: the header and the claims' command are the ones the study ran."""
    spec_path, out, *_ = synthetic
    ran = ("keras-softmax study spec.toml --out runs/s --dataset data.tar.gz --test-dataset test.tar.gz")
    recorded = json.dumps({"spec": "spec.toml", "dataset": "data.tar.gz", "settings": {}, "command": ran,
                           "test_dataset": "test.tar.gz"})
    (out / "study.json").write_text(recorded)
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    assert (out / "study.json").read_text() == recorded
    text = (out / "STUDY.md").read_text()
    assert text.split("```bash\n")[1].split("\n```")[0] == ran
    (out / "study.json").write_text("{not json")
    with pytest.raises(StudyError, match=r"study.json: not valid JSON .*--report-only reads the study's invocation"):
        run_study(spec_path, out, report_only=True, log=lambda line: None)


def test_tuned_runs_not_yet_planned_are_counted_and_listed(synthetic):
    # sparsemax's grid is incomplete, so its tuned runs are not planned
    text = report_without(synthetic, "tune-sparsemax-lr0.1-seed0", "tuned-sparsemax-seed1", "tuned-sparsemax-seed2")
    assert "3 more tuned run(s) are planned once their heads' tuning grids are complete" in text
    assert "- `tuned-sparsemax`: seeds 0, 1, 2" in text.split("## Not finished")[1]


def test_the_heads_title_and_the_margin_note_come_from_the_spec(synthetic):
    spec_path, out, *_ = synthetic
    spec_path.write_text(spec_path.read_text().replace(
        'description = "synthetic study"\n', 'description = "synthetic study"\nheads_title = "Heads, strong recipe"\n')
        + '[verdicts]\nmargin = 1.0\nnote = "measured at another recipe"\n')
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    assert "## Heads, strong recipe\n" in text and "## Heads, shared recipe" not in text
    assert "**±1.00 points** (given in the spec) (measured at another recipe)" in text


def test_the_earlier_verdicts_are_that_studys_own_family(tmp_path):
    """The earlier study compared 4 heads with log_softmax; this one shares 2 of those comparisons. The
    earlier verdict must be Holm over its own 4, not over the 2 shared (p ≈ 0.02: worse over 2, not over 4)."""
    earlier = {"log_softmax": [0.700, 0.704, 0.698, 0.702, 0.706],
               "softmax": [0.6942, 0.6982, 0.6922, 0.6962, 0.7002],
               "sparsemax": [0.690, 0.72, 0.70, 0.68, 0.71],
               "taylor": [0.69, 0.72, 0.70, 0.68, 0.715], "base2": [0.69, 0.72, 0.705, 0.68, 0.71]}
    ref = earlier["log_softmax"]
    p = {h: stats.ttest_ind(earlier[h], ref, equal_var=False).pvalue for h in earlier if h != "log_softmax"}
    assert p["softmax"] < 0.025 and p["softmax"] * 4 > 0.05 and all(p[h] > 0.2 for h in p if h != "softmax")
    _, _, text = earlier_report(tmp_path, earlier)
    section = text.split("## Which 30-epoch conclusions hold")[1].split("\n## ")[0]
    softmax = _cells(section, "softmax` − `log_softmax")[0]
    d = np.mean(earlier["softmax"]) - np.mean(ref)
    va, vb = np.var(earlier["softmax"], ddof=1) / 5, np.var(ref, ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    beyond = abs(d) + stats.t.ppf(1 - 0.05 / 4, df) * np.sqrt(va + vb)  # Bonferroni over its 4
    assert softmax[3] == f"inconclusive: beyond ±{100 * beyond:.2f} pp excluded"
    assert "its heads family (4 comparisons, every head of it against `log_softmax`)" in section


def test_a_claim_with_rows_and_evidence_shows_both_and_its_test_verdict(synthetic):
    spec_path, out, spec, planner, planned = synthetic
    spec_path.write_text(spec_path.read_text() + textwrap.dedent('''
        [[claims]]
        claim = "softmax is numerically unstable"
        rows = ["softmax"]
        reference = "log_softmax"
        expect = "worse"
        evidence = "The collapse is the wiring"
        '''))
    _score(out, planned, lambda p: 0.6 + 0.001 * p.seed - (0.05 if p.config.head == "softmax" else 0.0))
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| softmax is numerically unstable |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "**not shown (inconclusive)**"  # validation: +1.00 pp on 3 seeds, p = 0.29
    assert cells[2] == "supported"  # test: softmax 5 points below on every seed
    assert "validation +1.00 pp" in cells[3] and "; test " in cells[3] and "The collapse is the wiring" in cells[3]


SPEED_CLAIM = """
[timing]
names = ["softmax", "log_softmax"]
seeds = [0, 1, 2]
epochs = 4
[[claims]]
claim = "softmax is faster"
rows = ["softmax"]
reference = "log_softmax"
expect = "lower"
metric = "steady_epoch_seconds"
"""


def _timed(spec_path, out, timing):
    """The synthetic spec with 3 timing runs of softmax and log_softmax and a claim on their epoch time;
    ``timing(run)`` gives each timing run's ``(steady_epoch_seconds, device)``."""
    spec_path.write_text(spec_path.read_text() + SPEED_CLAIM)
    for run in Planner(load_spec(spec_path)).plan_timing():
        report = fake_run(out, run)
        seconds, device = timing(run)
        report.update(steady_epoch_seconds=seconds, device=device, accuracy=0.01)
        write_json(out / "runs" / run.run_id / "report.json", report)


def test_a_speed_claim_names_the_timing_runs_not_a_split(synthetic):
    """A claim on epoch time is judged on the timing runs alone (Welch's interval on their epoch times,
    recomputed with scipy); the report says so instead of calling them "validation", calls a lower epoch time
    faster (not "worse"), and gives no test verdict. Fails on the report of 2026-12-06, which printed the timing
    runs' difference as "validation ..., worse"."""
    spec_path, out, spec, planner, planned = synthetic
    seconds = {"softmax": [0.50, 0.52, 0.51], "log_softmax": [0.60, 0.61, 0.63]}
    _timed(spec_path, out, lambda run: (seconds[run.name][run.seed], None))
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| softmax is faster |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    interval = stats.ttest_ind(seconds["softmax"], seconds["log_softmax"], equal_var=False).confidence_interval(0.95)
    d = np.mean(seconds["softmax"]) - np.mean(seconds["log_softmax"])
    assert cells[3].startswith(f"`softmax` − `log_softmax`: timing runs (3 vs 3) {d:+.3f} s "
                               f"[{interval.low:+.3f}, {interval.high:+.3f}], faster")
    assert "validation" not in cells[3] and "test" not in cells[3]
    assert cells[1] == "**supported**" and cells[2] == "– (a speed claim)"
    assert "A speed claim is judged on the timing runs' epoch times" in text


def test_speed_figures_come_from_one_gpu_kind_where_the_timing_runs_span_two(synthetic):
    """Epoch times of two GPU kinds are never averaged or compared: with timing runs on an H100 (4) and an
    H200 (2), only the H100's count, in the table, the claim and the figure, and the report says how many
    were left out. Fails on the report of 2026-12-06, which pooled the kinds (an H100 is ~10 % slower an
    epoch than an H200, more than any head differs from another)."""
    spec_path, out, spec, planner, planned = synthetic
    h100, h200 = "gpu: NVIDIA H100 80GB HBM3", "gpu: NVIDIA H200"
    runs = {("softmax", 0): (0.70, h100), ("softmax", 1): (0.71, h100), ("softmax", 2): (0.60, h200),
            ("log_softmax", 0): (0.72, h100), ("log_softmax", 1): (0.73, h100), ("log_softmax", 2): (0.62, h200)}
    _timed(spec_path, out, lambda run: runs[(run.name, run.seed)])
    figures = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "plot_epoch_times", lambda times, path, **kw: figures.update(times=times, **kw))
        run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    calibration = [row for row in _cells(text, "softmax") if len(row) > 10][0]
    assert calibration[-2] == f"{np.mean([0.70, 0.71]):.3f} ± {np.std([0.70, 0.71], ddof=1):.3f}"
    assert calibration[-1].endswith("(n=2)²")
    assert ("Every speed figure is from one GPU kind, H100 (the kind with the most speed runs)" in text
            and "so 2 speed run(s) on other kinds count for accuracy only" in text)
    assert figures["kind"] == "H100" and figures["times"]["softmax"] == [0.70, 0.71]
    row = next(line for line in text.splitlines() if line.startswith("| softmax is faster |"))
    assert "timing runs (2 vs 2) -0.020 s" in row


@pytest.mark.parametrize("beyond", [-0.05, +0.05])
def test_a_claim_whose_stated_size_its_holm_level_interval_excludes_is_contradicted(synthetic, beyond):
    """A claim of "far below" that the data put near zero is contradicted in size, even where the
    direction is inconclusive; a size the interval still reaches is not. The interval is Welch's at the
    Holm level the report prints, recomputed with scipy."""
    spec_path, out, spec, planner, planned = synthetic
    softmax, log_softmax = [0.70, 0.71, 0.72], [0.69, 0.70, 0.71]  # the fixture's validation values
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    row = _rows((out / "STUDY.md").read_text(), "softmax", "log_softmax", "validation")
    level = float(re.search(r"\(([\d.]+) %\)", row[6]).group(1)) / 100
    va, vb = np.var(softmax, ddof=1) / 3, np.var(log_softmax, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    low = 100 * (np.mean(softmax) - np.mean(log_softmax) - stats.t.ppf(0.5 + level / 2, df) * np.sqrt(va + vb))
    size = round(low + beyond, 2)  # just below the interval's low end (excluded), or just inside it
    spec_path.write_text(spec_path.read_text() + textwrap.dedent(f'''
        [[claims]]
        claim = "softmax is far below"
        rows = ["softmax"]
        reference = "log_softmax"
        expect = "worse"
        size = {size}
        '''))
    _score(out, planned, lambda p: 0.6 + 0.001 * p.seed - (0.05 if p.config.head == "softmax" else 0.0))
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    text = (out / "STUDY.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| softmax is far below |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    excluded = beyond < 0  # size below the low end: the interval lies wholly above it
    assert cells[1] == ("**contradicted (its size is excluded)**" if excluded else "**not shown (inconclusive)**")
    # test: 5.00 points below on every seed, beyond the stated size either way
    assert cells[2] == "supported"
    assert f"The claim's size: {size:+.2f} pp or beyond" in cells[3]
