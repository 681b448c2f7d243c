"""Rows from two GPU kinds: without a measured offset the report names the comparisons across kinds;
with one (``[provenance] gpu_offset``, the JSON ``bench/gpu_kinds.py compare --json`` writes) it recomputes
each such comparison with the offset taken off the runs of the repeat kind, at both ends of the offset's
interval, and marks a verdict that changes (checked against scipy's Welch test and Holm by hand)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from scipy import stats

from keras_softmax.io import write_json
from keras_softmax.study.runner import StudyError, run_study
from keras_softmax.study.spec import Planner, load_spec
from keras_softmax.study.verdicts import kind_offset

from .test_report import SPEC, accuracy, fake_run

H100, H200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"


def _offset_file(path, val=(0.11, -0.5, 6.0), test=None, kinds=((H200, H100),), coarse=None):
    """An offset file as bench/gpu_kinds.py writes it (points), its pairs going from record to repeat;
    ``coarse``: a superclass top-1 offset on validation too."""
    pairs = [{"run": f"r{i}", "kinds": list(k), "accuracy": [0.6, 0.6], "test_accuracy": [0.6, 0.6]}
             for i, k in enumerate(kinds * 4)]
    data = {"pairs": pairs, "kinds": sorted({k for pair in kinds for k in pair})}
    for key, found in (("accuracy_offset", val), ("test_accuracy_offset", test), ("coarse_accuracy_offset", coarse)):
        data[key] = None if found is None else {"points": found[0], "ci95": list(found[1:]), "pairs": len(pairs)}
    write_json(path, data)
    return path


def _softmax_on_h100(run_id: str) -> bool:
    return run_id.startswith("softmax-seed")


def _study(tmp_path, provenance: str = "", on_h100=_softmax_on_h100, scored: bool = False, sections: str = ""):
    """The synthetic study's report with a margin of 1 point; softmax's runs (its directories softmax-seed*,
    which its tuning grid point shares) on an H100, every other run on an H200; ``scored``: each run's
    test top-1 is its validation top-1; ``sections``: more ``[[sections]]`` for the spec."""
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(textwrap.dedent(SPEC) + textwrap.dedent(sections) + "[verdicts]\nmargin = 1.0\n" + provenance)
    out = tmp_path / "study"
    planner = Planner(load_spec(spec_path))
    planned = planner.plan() + planner.plan_tuned({"softmax": {"lr": 0.05}, "sparsemax": {"lr": 0.1}})
    for run in {p.run_id: p for p in planned}.values():
        fake_run(out, run)
        path = out / "runs" / run.run_id / "report.json"
        report = json.loads(path.read_text())
        write_json(path, {**report, "device": f"gpu: {H100 if on_h100(run.run_id) else H200}"})
        if scored:
            write_json(out / "runs" / run.run_id / "test.json", {"accuracy": accuracy(run)})
    run_study(spec_path, out, report_only=True, log=lambda line: None)
    return (out / "STUDY.md").read_text()


def _row(text: str, label: str, split: str, after: str) -> list[str]:
    part = text.split(after, 1)[1]
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith(f"| {label} |") and cells[1] == split:
            return cells
    raise AssertionError(f"no {split} row of {label} after {after!r}")


def test_without_an_offset_the_comparisons_across_kinds_are_named(tmp_path):
    text = _study(tmp_path)
    assert "**The offset between them is not yet measured**" in text
    named = text.split("not yet measured**", 1)[1].split("\n")[0]
    assert "`softmax` − `log_softmax`" in named and "`softmax-coarse` − `softmax`" in named
    assert "`sparsemax` − `log_softmax`" not in named  # both on the H200
    assert "turns on the GPU-kind offset" not in text


def test_a_verdict_is_recomputed_at_both_ends_of_the_offset_and_marked_when_it_changes(tmp_path):
    offset = _offset_file(tmp_path / "kinds.json")
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n')
    assert ("**The offset between them is measured**: 4 recorded H200 runs trained again on an H100 "
            "from the same `config.toml` and seed (`bench/gpu_kinds.py`, `kinds.json`), H100 − H200 = "
            "+0.11 pp [-0.50, +6.00] on validation (top-1, paired 95 % intervals). Its interval lies **not** "
            "within the equivalence margin (±1.00 pp).") in text

    softmax = np.array([0.70, 0.71, 0.72])  # the synthetic study's values, seeds 0-2
    log_softmax = np.array([0.69, 0.70, 0.71])
    sparsemax = np.array([0.60, 0.61, 0.62])
    assert [accuracy(p) for p in Planner(load_spec(tmp_path / "spec.toml")).plan()
            if p.name == "softmax"] == pytest.approx(softmax)

    def holm_p(shift):  # the heads family: softmax and sparsemax against log_softmax, Holm by hand
        p = [stats.ttest_ind(softmax - shift, log_softmax, equal_var=False).pvalue,
             stats.ttest_ind(sparsemax, log_softmax, equal_var=False).pvalue]
        order = np.argsort(p)
        adjusted = np.maximum.accumulate([min(1.0, (2 - i) * p[k]) for i, k in enumerate(order)])
        return adjusted[list(order).index(0)]

    assert holm_p(-0.005) > 0.05 and holm_p(0.06) < 0.05  # low end: +1.50 pp, undecided; high: −5.00 pp, worse
    row = _row(text, "`softmax` − `log_softmax`", "validation", "offset at its low end")
    assert row[2:] == ["3 of 3 vs 0 of 3", "inconclusive", "+1.50 pp: inconclusive", "-5.00 pp: worse", "**changes**"]
    # Both sparsemax and log_softmax ran on the H200: the offset does not set them apart.
    assert "| `sparsemax` − `log_softmax` | validation |" not in text.split("offset at its low end")[1]
    # The verdict where it stands (the heads' table) carries the mark.
    heads = _row(text, "`softmax` − `log_softmax` (primary)", "validation", "comparison (first − second)")
    assert heads[-1].endswith("— *turns on the GPU-kind offset* (Provenance)")
    assert "hold at both ends; these change: `softmax` − `log_softmax` (validation)" in text


SUPERCLASS_SECTION = """
    [[sections]]
    title = "Superclasses"
    text = "Superclass top-1 of two fine models."
    rows = ["softmax", "log_softmax"]
    reference = "log_softmax"
    metric = "coarse_accuracy"
    """


def test_a_comparison_on_a_metric_without_an_offset_is_listed_but_not_counted_as_holding(tmp_path):
    # The offset is measured on top-1; a superclass-top-1 comparison across the kinds cannot be checked
    # against it, so the summary must not count it among those that hold.
    offset = _offset_file(tmp_path / "kinds.json")
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n', sections=SUPERCLASS_SECTION)
    row = _row(text, "`softmax` − `log_softmax` (coarse_accuracy)", "validation", "offset at its low end")
    assert row[2:] == ["3 of 3 vs 0 of 3", "inconclusive", "–", "–", "no offset measured for it"]
    assert ("1 of 3 hold at both ends; these change: `softmax` − `log_softmax` (validation), `tuned-softmax` − "
            "`log_softmax` (validation). Not checked (1; no offset is measured on their metric): `softmax` − "
            "`log_softmax` (coarse_accuracy) (validation).") in text


def test_a_superclass_comparison_is_checked_against_the_superclass_offset(tmp_path):
    offset = _offset_file(tmp_path / "kinds.json", val=(0.0, -0.2, 0.2), coarse=(0.11, -0.5, 6.0))
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n', sections=SUPERCLASS_SECTION)
    assert "Superclass top-1 (4 of the pairs hold it): +0.11 pp [-0.50, +6.00] on validation." in text
    softmax, log_softmax = np.array([0.80, 0.81, 0.82]), np.array([0.79, 0.80, 0.81])  # superclass top-1
    low, high = (stats.ttest_ind(softmax - shift, log_softmax, equal_var=False) for shift in (-0.005, 0.06))
    assert low.pvalue > 0.05 and high.pvalue < 0.05 and high.statistic < 0  # a family of one: no Holm step
    row = _row(text, "`softmax` − `log_softmax` (coarse_accuracy)", "validation", "offset at its low end")
    assert row[2:] == ["3 of 3 vs 0 of 3", "inconclusive", "+1.50 pp: inconclusive", "-5.00 pp: worse", "**changes**"]
    assert "Not checked" not in text


def test_a_verdict_that_holds_over_the_whole_interval_is_not_marked(tmp_path):
    offset = _offset_file(tmp_path / "kinds.json", val=(0.0, -0.2, 0.2))
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n')
    row = _row(text, "`softmax` − `log_softmax`", "validation", "offset at its low end")
    assert row[-3:] == ["+1.20 pp: inconclusive", "+0.80 pp: inconclusive", "holds"]
    assert "Its interval lies within the equivalence margin (±1.00 pp)" in text
    assert "turns on the GPU-kind offset" not in text


def test_the_offset_file_is_read_as_bench_gpu_kinds_writes_it(tmp_path):
    found = kind_offset(_offset_file(tmp_path / "k.json", val=(0.11, -0.47, 0.69), test=(0.27, -0.03, 0.56)))
    assert (found.record, found.repeat, found.pairs) == (H200, H100, 4)
    assert found.on("val") == pytest.approx((0.0011, -0.0047, 0.0069))
    assert found.on("test") == pytest.approx((0.0027, -0.0003, 0.0056))


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_text("{"), "not an offset file of bench/gpu_kinds.py"),
    (lambda p: write_json(p, {"pairs": []}), "it holds no pairs"),
    (lambda p: write_json(p, {"pairs": [{"run": "r0"}]}), "not an offset file"),
    (lambda p: write_json(p, {"pairs": [{"kinds": [H200]}]}), "one record kind to one repeat kind"),
    (lambda p: _offset_file(p, kinds=((H200, H100), (H100, H200))), "one record kind to one repeat kind"),
    (lambda p: _offset_file(p, val=None), "it holds no offset"),
])
def test_a_broken_offset_file_is_one_clear_spec_error(tmp_path, write, message):
    write(tmp_path / "kinds.json")
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC) + '[provenance]\ngpu_offset = "kinds.json"\n')
    with pytest.raises(StudyError, match=message):
        load_spec(tmp_path / "spec.toml")


def test_a_missing_offset_file_is_one_clear_spec_error(tmp_path):
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC) + '[provenance]\ngpu_offset = "nowhere.json"\n')
    with pytest.raises(StudyError, match="gpu_offset must name a file bench/gpu_kinds.py wrote"):
        load_spec(tmp_path / "spec.toml")


def test_rows_on_both_kinds_in_different_shares_are_recomputed_too(tmp_path):
    # softmax: seeds 0-1 on the H100, seed 2 on the H200; log_softmax: seed 0 on the H100, seeds 1-2 on the H200.
    offset = _offset_file(tmp_path / "kinds.json")
    on_h100 = {"softmax-seed0", "softmax-seed1", "log_softmax-seed0"}.__contains__
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n', on_h100=on_h100)
    softmax, log_softmax = np.array([0.70, 0.71, 0.72]), np.array([0.69, 0.70, 0.71])
    cells = []
    for delta in (-0.005, 0.06):
        d = np.mean(softmax - delta * np.array([1, 1, 0])) - np.mean(log_softmax - delta * np.array([1, 0, 0]))
        cells.append(f"{100 * d:+.2f} pp")
    row = _row(text, "`softmax` − `log_softmax`", "validation", "offset at its low end")
    assert row[2] == "2 of 3 vs 1 of 3"
    assert [c.split(":")[0] for c in row[4:6]] == cells == ["+1.17 pp", "-1.00 pp"]


def test_an_earlier_studys_verdict_is_not_checked_against_this_studys_kinds(tmp_path):
    # The [earlier] table sets another study's verdict (its own rows, no GPU kinds known here) beside this
    # study's: only this study's verdict can turn on the offset.
    earlier = {"softmax": [0.80, 0.81, 0.82], "log_softmax": [0.60, 0.61, 0.62], "sparsemax": [0.5, 0.51, 0.52]}
    (tmp_path / "earlier.jsonl").write_text("".join(
        json.dumps({"name": n, "kind": "head", "seed": s, "test_accuracy": v}) + "\n"
        for n, values in earlier.items() for s, v in enumerate(values)))
    offset = _offset_file(tmp_path / "kinds.json", test=(0.11, -0.5, 6.0))
    text = _study(tmp_path, f'[provenance]\ngpu_offset = "{offset.name}"\n'
                  '[earlier]\nresults = "earlier.jsonl"\nlabel = "earlier"\ntitle = "Then and now"\n', scored=True)
    section = text.split("## Then and now")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| `softmax` − `log_softmax` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "**better**"  # the earlier study's own verdict, unmarked
    assert cells[6].startswith("inconclusive") and cells[6].endswith("— *turns on the GPU-kind offset* (Provenance)")


def test_a_study_set_in_from_other_kinds_is_checked_against_its_own_offset(tmp_path):
    """[[studies]]: a set-in study whose rows come from both kinds gets its own "GPU kinds" subsection,
    checked against the offset its spec names, and its verdicts' marks point there (headlines too)."""
    from keras_softmax.study.report import write_study_report
    from keras_softmax.study.results import collect

    from .test_report import EARLIER_SPEC, NOW, set_in_study

    offset = _offset_file(tmp_path / "kinds.json", val=(0.0, -0.1, 0.1), test=(0.0, -0.2, 2.0))
    spec = set_in_study(tmp_path, textwrap.dedent(EARLIER_SPEC).replace(
        "[verdicts]", 'primary = "softmax"\n[verdicts]').replace(
        "[earlier]", f'[provenance]\ngpu_offset = "{offset.name}"\n[earlier]'),
        lambda name: H100 if name == "softmax" else H200, title="Near convergence")
    main = Planner(spec).plan()
    for run in main:
        fake_run(tmp_path / "study", run)  # all on one kind (no device): no check of its own
    text = write_study_report(spec, main, collect(main, tmp_path / "study"), tmp_path / "study").read_text()
    section = text.split("## Near convergence\n")[1].split("\n## ")[0]
    assert "### GPU kinds" in section and "**The offset between them is measured**" in section
    # On the test split softmax is level with log_softmax (Δ +0.03 pp); with up to 2 points taken off its
    # H100 runs it is worse: Welch's test on the shifted values, by scipy.
    softmax, log_softmax = np.array(NOW["softmax"]), np.array(NOW["log_softmax"])
    shifted = stats.ttest_ind(softmax - 0.02, log_softmax, equal_var=False)
    assert shifted.pvalue < 0.05 / 2 and shifted.statistic < 0  # below Holm's first step of two
    check = _row(section, "`softmax` − `log_softmax`", "test", "offset at its low end")
    assert check[2:4] == ["4 of 4 vs 0 of 4", "equivalent"] and check[-1] == "**changes**"
    assert check[-2].endswith("pp: worse")
    assert "| `sparsemax` − `log_softmax` | test |" not in section.split("offset at its low end")[1]
    mark = "— *turns on the GPU-kind offset* (Near convergence, GPU kinds)"
    headline = text.split("## Headline verdicts")[1].split("\n## ")[0]
    assert any(line.startswith("|  | `softmax` − `log_softmax` | test |") and line.endswith(f"{mark} |")
               for line in headline.splitlines())
    assert "(Provenance)" not in section
