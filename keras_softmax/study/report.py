"""STUDY.md: the comparison for people, built only from results.jsonl and the run directories.

Every number is computed here from the rows (:mod:`.results`, copied from each run's
``report.json`` and ``test.json``) and every figure from the runs' ``history.csv`` and ``report.json``:
nothing is typed by hand, so re-running ``keras-softmax study ... --report-only`` reproduces the file.

Verdicts come from :mod:`.verdicts`: each question (the heads table, each section, the tuning) is a
family of comparisons with a declared primary one; raw 95 % intervals stand beside Holm-adjusted ones,
and "no difference" is an equivalence test at a margin from the measured repeat noise. Where rows come
from two GPU kinds and the spec gives their measured offset (``[provenance] gpu_offset``), each comparison
whose sides ran on the kinds in different shares is recomputed with the offset δ taken off every run of the
repeat kind, at both ends of δ's 95 % interval; a verdict that changes there is marked where it stands.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from keras_softmax.cifar100 import COARSE_NAMES, FINE_TO_COARSE
from keras_softmax.evaluation.calibration import temperature_applicable
from keras_softmax.io import write_text
from keras_softmax.study import plots
from keras_softmax.study.results import diverged_runs, read_results
from keras_softmax.study.stats import summarize, welch_interval
from keras_softmax.study.verdicts import compare_family, margin_from_repeats

__all__ = ["calibration_status", "format_difference", "format_summary", "write_study_report"]

PLOTS_DIR = "plots"
#: −log of the probability floor of the NLL (p floored at 1e-12).
FLOOR_NLL = 27.631021115928547
#: The bounds of the temperature search (keras_softmax.evaluation.calibration.TEMPERATURE_BOUNDS).
TEMPERATURE_BOUNDS = (0.02, 50.0)
#: Heads whose output has exact zeros: a temperature cannot move probability onto a zero, and the NLL of
#: a true class at zero is the floor's. (Whether a temperature applies is decided by
#: keras_softmax.evaluation.calibration.temperature_applicable, the rule of the runs' own reports.)
EXACT_ZEROS = {
    "sparsemax": "sparsemax (exact zeros outside its support)",
    "entmax15": "1.5-entmax (exact zeros outside its support)",
    "entmax_alpha": "α-entmax, α = 1.5 here (exact zeros outside its support)",
}
# (row key, column title, scale, digits)
ACCURACY_COLUMNS = (
    ("accuracy", "top-1 (%)", 100, 2),
    ("test_accuracy", "test top-1 (%)", 100, 2),
    ("top5_accuracy", "top-5 (%)", 100, 2),
    ("precision_macro", "precision (%)", 100, 2),
    ("recall_macro", "recall (%)", 100, 2),
    ("f1_macro", "F1 (%)", 100, 2),
)
CALIBRATION_COLUMNS = (
    ("nll", "NLL", 1, 4),
    ("ece", "ECE (%)", 100, 2),
    ("ece_after", "ECE after T (%)", 100, 2),
    ("ece_after_crossfit", "ECE after T, cross-fitted (%)", 100, 2),
    ("temperature", "T", 1, 3),
    ("test_nll", "test NLL", 1, 4),
    ("test_ece", "test ECE (%)", 100, 2),
    ("test_ece_val_temperature", "test ECE after the validation T (%)", 100, 2),
)
#: The columns that exist only where a temperature applies.
TEMPERATURE_KEYS = ("ece_after", "ece_after_crossfit", "temperature", "test_ece_val_temperature")
SPEED_COLUMNS = (
    ("steady_epoch_seconds", "epoch (s)", 1, 3),
    ("images_per_second", "images/s", 1, 0),
)
METRIC_TITLES = {"accuracy": "top-1", "top5_accuracy": "top-5", "f1_macro": "macro F1",
                 "coarse_accuracy": "superclass top-1", "steady_epoch_seconds": "epoch seconds"}
NOT_SCORED = "—"


def format_summary(values, scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std"`` of ``values`` × ``scale`` (just the mean for one value, ``–`` for none)."""
    s = summarize(values)
    if s.n == 0:
        return "–"

    def number(x):
        return f"{x * scale:,.{digits}f}"

    return number(s.mean) if s.std is None else f"{number(s.mean)} ± {number(s.std)}"


def format_difference(a, b, scale: float = 100.0, digits: int = 2) -> str:
    """``"+Δ [low, high]"`` (Welch 95 % CI) of ``mean(a) − mean(b)`` × ``scale``; ``n/a`` below 2 runs each."""
    d = welch_interval(a, b)
    if d is None:
        n_a, n_b = summarize(a).n, summarize(b).n
        return f"n/a (n={n_a} vs {n_b})"
    return f"{d.difference * scale:+.{digits}f} [{d.low * scale:+.{digits}f}, {d.high * scale:+.{digits}f}]"


def calibration_status(row: dict) -> tuple[bool, str | None]:
    """``(applicable, reason)`` of temperature scaling for a results row: not for a head or variant with
    exact zeros (sparsemax, entmax15, entmax_alpha, any ``drop_lowest`` > 0), nor where the run's own
    report said not (bounded scores)."""
    head, params = row.get("head"), row.get("head_params") or {}
    applicable, reason = temperature_applicable(head, params.get("drop_lowest") or 0)
    if head in EXACT_ZEROS:
        return False, (f"{head}: {EXACT_ZEROS[head]}: softmax(log p / T) keeps every zero at zero, so a "
                       "temperature cannot move probability onto a class the head ruled out; it is not a "
                       "calibration map of this head, and its NLL is decided by the 1e-12 floor")
    if float(params.get("drop_lowest") or 0) > 0:
        return False, (f"drop_lowest = {params['drop_lowest']}: the lowest logits of every row are masked to "
                       "exact zeros, so a temperature cannot move probability onto them (ECE after T gets "
                       "worse, not better), and its NLL is decided by the 1e-12 floor")
    if not applicable:
        return False, f"{head}: {reason}"
    if row.get("calibration_applicable") is False:
        return False, row.get("calibration_reason") or "not applicable"
    return True, None


def _floor_decides_nll(row: dict) -> str | None:
    """Why the NLL of ``row`` is decided by the probability floor, or None."""
    applicable, _ = calibration_status(row)
    head, params = row.get("head"), row.get("head_params") or {}
    if head in EXACT_ZEROS or float(params.get("drop_lowest") or 0) > 0:
        return "exact zeros: a true class at p = 0 costs the floor's −log 1e-12 = 27.6"
    if row.get("loss_pairing") == "mismatched":
        return ("mismatched wiring: the loss sees softmax(p), so training drives the head's own output p towards "
                "one-hot, and an error then puts p at the floor on the true class: the NLL approaches "
                "error rate × 27.6")
    return None


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows, align=None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _pp(x, scale=100.0, digits=2, sign=True) -> str:
    return f"{x * scale:+.{digits}f}" if sign else f"{x * scale:.{digits}f}"


_SPLIT_NAMES = {"val": "validation", "test": "test"}


def _runs_of(n: int, planned: int | None) -> str:
    return f"{n} of {planned}" if planned is not None else str(n)


def _planned_counts(planned) -> tuple[dict, dict]:
    """``({name: runs planned}, {name: timing runs planned})``: distinct seeds per name."""
    runs: dict[str, set] = {}
    timing: dict[str, set] = {}
    for p in planned:
        (timing if p.kind == "timing" else runs).setdefault(p.name, set()).add(p.seed)
    return {n: len(s) for n, s in runs.items()}, {n: len(s) for n, s in timing.items()}


def _gpu(device) -> str:
    text = str(device or "–")
    match = re.search(r"(H100|H200|A100|L4|T4|V100)", text)
    return match.group(1) if match else text.replace("gpu: ", "")


def _alone(rows) -> list:
    """The rows of runs that had their device to themselves (``--runs-per-device 1``)."""
    return [row for row in rows if row.get("runs_sharing_device", 1) == 1]


def _speed_kind(timing_by_name: dict, by_name: dict) -> tuple[str | None, int]:
    """The GPU kind every speed figure comes from, and how many speed runs on other kinds that leaves out.

    A head's epoch time differs between GPU kinds by far more than between heads (an H100 0.687 s, an H200
    0.61-0.64 s an epoch at the strong recipe; the 12 heads' timing runs of 2026-12-02 spanned 0.596-0.614 s
    on one H200), so epoch times of two kinds are never set side by side: where the speed runs (the timing
    runs, or where there are none the runs alone on their device) span several kinds, only those of the kind
    with the most of them count (ties: the first in alphabetical order). ``(None, 0)`` when they span one
    kind or none."""
    timing = [row for rows in timing_by_name.values() for row in rows]
    pool = timing or [row for rows in by_name.values() for row in _alone(rows)]
    kinds = [_gpu(row.get("device")) for row in pool if row.get("steady_epoch_seconds") is not None]
    if len(set(kinds)) < 2:
        return None, 0
    kind = min(set(kinds), key=lambda k: (-kinds.count(k), k))
    return kind, sum(k != kind for k in kinds)


class _Study:
    """The rows grouped by name, and what the tables and plots need of the run directories."""

    def __init__(self, spec, planned, rows, out: Path, report_path: Path, plots_dir: Path, diverged=()):
        self.spec, self.out = spec, out
        self.diverged = list(diverged)  # results.diverged_runs: runs whose loss became NaN or infinite
        self.diverged_ids = {r["run_dir"].split("/", 1)[1] for r in self.diverged}
        self.report_path, self.plots_dir = report_path, plots_dir
        self.rows = [row for row in rows if row.get("kind") != "timing"]
        self.by_name: dict[str, list[dict]] = {}
        self.timing_by_name: dict[str, list[dict]] = {}  # timing runs: speed figures only
        for row in rows:
            group = self.timing_by_name if row.get("kind") == "timing" else self.by_name
            group.setdefault(row["name"], []).append(row)
        self.names = list(dict.fromkeys(p.name for p in planned))
        self.planned = planned
        self.planned_runs, self.planned_timing = _planned_counts(planned)
        for name, _ in {(r["name"], r["seed"]) for r in self.diverged if r["kind"] != "timing"}:
            if name in self.planned_runs:  # settled, never to finish: a verdict does not wait for it
                self.planned_runs[name] -= 1
        self.compare_to = {p.name: p.compare_to for p in planned if p.compare_to}
        self._reports: dict[str, dict] = {}
        self.notes: dict[str, str] = {}
        self.floor_notes: dict[str, str] = {}
        self.bound_note = False
        self.shared_timing = False
        self.speed_kind, self.speed_left_out = _speed_kind(self.timing_by_name, self.by_name)
        self.alpha = spec.verdicts.alpha
        self.margin, self.repeat_sd, self.repeat_pairs = spec.verdicts.margin, None, 0
        if spec.verdicts.repeats is not None:
            self.margin, self.repeat_sd, self.repeat_pairs = margin_from_repeats(spec.verdicts.repeats)
        self.verdicts: dict[tuple, object] = {}  # (a, b, metric, split) -> Verdict, as the families found them
        # id(verdict) -> (verdict, the pairs of the family that found it): every verdict this study found,
        # kept so that the ids stay its own (a verdict from elsewhere, e.g. an earlier study's, is not here)
        self.families: dict[int, tuple] = {}
        self._kind_checks: dict[tuple, list | None] = {}  # (id(verdict), metric, split) -> kind_check's answer
        self.offset = (spec.provenance or {}).get("gpu_offset")  # a measured GPU-kind offset (KindOffset) or None
        # (question, val verdict, test verdict, metric, the study whose families found them)
        self.headlines: list[tuple[str, object, object, str, _Study]] = []
        self.offset_section = "Provenance"  # where its comparisons across GPU kinds are checked
        self.figures_written: list[Path] = []

    def figure(self, filename: str) -> tuple[Path, str]:
        """Where a plot is written, and its link relative to the report."""
        path = self.plots_dir / filename
        self.figures_written.append(path)
        return path, Path(os.path.relpath(path, self.report_path.parent)).as_posix()

    def values(self, name: str, key: str) -> list:
        if key == "steady_epoch_seconds":
            return self.timings(name, key)
        return [row.get(key) for row in self.by_name.get(name, [])]

    def n(self, name: str) -> int:
        return len(self.by_name.get(name, []))

    def n_test(self, name: str, metric: str = "accuracy") -> int:
        return summarize(self.values(name, f"test_{metric}")).n

    def timings(self, name: str, key: str) -> list:
        """``key`` of the timing runs of ``name`` if it has any, else of its runs that had their device
        to themselves (see ``runs_per_device``); of those, only the runs on :attr:`speed_kind` where the
        study's speed runs span several GPU kinds."""
        def on_kind(rows):
            return [row for row in rows if self.speed_kind is None or _gpu(row.get("device")) == self.speed_kind]

        rows = on_kind(self.timing_by_name.get(name, [])) or on_kind(_alone(self.by_name.get(name, [])))
        return [row.get(key) for row in rows]

    def report(self, run_dir: str) -> dict:
        if run_dir not in self._reports:
            self._reports[run_dir] = json.loads((self.out / run_dir / "report.json").read_text(encoding="utf-8"))
        return self._reports[run_dir]

    def history(self, run_dir: str, key: str) -> list:
        path = self.out / run_dir / "history.csv"
        if not path.is_file():
            return []
        with path.open(newline="", encoding="utf-8") as handle:
            return [float(r[key]) if r.get(key) not in ("", None) else None for r in csv.DictReader(handle)]

    # ------------------------------------------------------------------------------------------ verdicts

    def family(self, pairs, metric: str = "accuracy", split: str = "val") -> list:
        """The verdicts of ``pairs`` as one family on ``metric`` of ``split`` ("val" or "test")."""
        key = metric if split == "val" else f"test_{metric}"
        names = {n for pair in pairs for n in pair}
        values = {n: self.values(n, key) for n in names}
        margin = self.margin if metric != "steady_epoch_seconds" else None
        planned = self.planned_timing if metric == "steady_epoch_seconds" else self.planned_runs
        found = compare_family(values, pairs, alpha=self.alpha, margin=margin,
                               planned={n: planned[n] for n in names if n in planned})
        for verdict in found:
            self.verdicts.setdefault((verdict.a, verdict.b, metric, split), verdict)
            self.families[id(verdict)] = (verdict, tuple(pairs))
        return found

    def repeat_kind_runs(self, name: str, key: str) -> tuple[int, int]:
        """``(runs on the offset's repeat kind, runs)`` among ``name``'s runs with a ``key`` value."""
        kinds = [_gpu(row.get("device")) for row in self.by_name.get(name, []) if row.get(key) is not None]
        return (kinds.count(_gpu(self.offset.repeat)) if self.offset else 0), len(kinds)

    def kind_check(self, verdict, metric: str, split: str) -> list | None:
        """A top-1 comparison whose sides ran on the two kinds of the measured offset in different shares,
        recomputed in its family with the offset taken off every run of the repeat kind, at the low and the
        high end of the offset's interval: the two verdicts. None when the kinds do not set the sides apart,
        no offset is measured on this split, or this study's families did not find the verdict. Computed once
        per verdict: a verdict stands in several places (its table, the headlines, the claims, Provenance)."""
        cached = (id(verdict), metric, split)
        if cached not in self._kind_checks:
            self._kind_checks[cached] = self._kind_check(verdict, metric, split)
        return self._kind_checks[cached]

    def _kind_check(self, verdict, metric: str, split: str) -> list | None:
        key = metric if split == "val" else f"test_{metric}"
        found = self.offset.on(split, metric) if self.offset else None
        shares = {k / n if n else None for k, n in (self.repeat_kind_runs(n, key) for n in (verdict.a, verdict.b))}
        if (found is None or verdict.difference is None or None in shares or len(shares) == 1
                or id(verdict) not in self.families):
            return None
        pairs, repeat = self.families[id(verdict)][1], _gpu(self.offset.repeat)
        ends = []
        for offset in (found[1], found[2]):
            values = {n: [row.get(key) - offset if row.get(key) is not None and _gpu(row.get("device")) == repeat
                          else row.get(key) for row in self.by_name.get(n, [])] for pair in pairs for n in pair}
            ends += [v for v in compare_family(values, pairs, alpha=self.alpha, margin=self.margin)
                     if (v.a, v.b) == (verdict.a, verdict.b)]
        return ends

    def verdict_cell(self, verdict, metric: str = "accuracy", split: str = "val") -> str:
        """The verdict in words; a test comparison without two scored runs a side says how many it has."""
        word = verdict.word
        if word == "untested":
            if split == "test":
                return ("not yet scored" if verdict.n_a == verdict.n_b == 0
                        else f"untested (scored: n = {verdict.n_a} vs {verdict.n_b})")
            return f"untested (n = {verdict.n_a} vs {verdict.n_b})"
        scale, unit = (1, " s") if metric == "steady_epoch_seconds" else (100, " pp")
        if word == "equivalent":
            text = f"**equivalent**: beyond ±{verdict.margin * scale:.2f}{unit} excluded"
        elif word == "inconclusive":
            text = f"inconclusive: beyond ±{verdict.beyond * scale:.2f}{unit} excluded"
        else:
            text = f"**{word}**"
        if verdict.provisional:
            text = (f"*provisional* ({_runs_of(verdict.n_a, verdict.planned_a)} vs "
                    f"{_runs_of(verdict.n_b, verdict.planned_b)} runs): {text}")
        if self.turns_on_offset(verdict, metric, split):
            text += self.offset_mark
        return text

    @property
    def offset_mark(self) -> str:
        """What a verdict that turns on the GPU-kind offset carries, and where that is shown."""
        return f" — *turns on the GPU-kind offset* ({self.offset_section})"

    def turns_on_offset(self, verdict, metric: str, split: str) -> bool:
        """True when the verdict changes within the GPU-kind offset's interval (:meth:`kind_check`)."""
        ends = self.kind_check(verdict, metric, split)
        return bool(ends) and any(v.word != verdict.word for v in ends)

    def verdict_table(self, pairs, metric: str = "accuracy", primary=None) -> tuple[list[str], list, list]:
        """The family's table, each comparison on validation and below it on test, and both splits' verdicts."""
        val = self.family(pairs, metric, "val")
        test = self.family(pairs, metric, "test")
        scale, unit = (1, "s") if metric == "steady_epoch_seconds" else (100, "pp")
        digits = 3 if metric == "steady_epoch_seconds" else 2
        header = ["comparison (first − second)", "split", "n", f"Δ ({unit})", "raw 95 % CI", "Holm p",
                  "Holm-level CI", "verdict"]
        rows = []
        for v, t in zip(val, test):
            label = f"`{_md(v.a)}` − `{_md(v.b)}`" + (" (primary)" if primary == (v.a, v.b) else "")
            for verdict, split in ((v, "val"), (t, "test")):
                cells = [label, "validation" if split == "val" else "test", f"{verdict.n_a} vs {verdict.n_b}"]
                d = verdict.difference
                if d is None:
                    cells += ["–", "–", "–", "–"]
                else:
                    cells += [_pp(d.difference, scale, digits),
                              f"[{_pp(d.low, scale, digits)}, {_pp(d.high, scale, digits)}]", f"{verdict.p_holm:.3g}",
                              f"[{_pp(verdict.holm_low, scale, digits)}, {_pp(verdict.holm_high, scale, digits)}] "
                              f"({100 * verdict.holm_level:.2f} %)"]
                rows.append(cells + [self.verdict_cell(verdict, metric, split)])
        return _table(header, rows, ["l", "l", "r", "r", "r", "r", "r", "l"]), val, test

    def verdict_block(self, question: str, stem: str, pairs, metric: str = "accuracy", primary=None) -> list[str]:
        """A question's verdicts: its primary comparison, the family's table and its forest plot."""
        pairs = list(pairs)
        if not pairs:
            return []
        primary = tuple(primary) if primary else pairs[0]
        table, val, test = self.verdict_table(pairs, metric, primary)
        index = pairs.index(primary)
        self.headlines.append((question, val[index], test[index], metric, self))
        untested = len([v for v in val if v.difference is None])
        lines = [f"**Verdicts** on {METRIC_TITLES.get(metric, metric)} — primary comparison `{_md(primary[0])}` − "
                 f"`{_md(primary[1])}`: {self.verdict_cell(val[index], metric)} on validation; test: "
                 f"{self.verdict_cell(test[index], metric, 'test')}. "
                 f"Family: the {len(pairs)} comparison(s) below, Holm over all {len(pairs)} on each split"
                 + (f" (on validation {untested} still untested, each counted with p = 1)" if untested else "")
                 + ".", "", *table]
        lines += self.forest(val, stem, question, metric, test)
        return lines

    def forest(self, verdicts, stem: str, question: str, metric: str = "accuracy", test=()) -> list[str]:
        """The family's forest plot: each comparison's validation interval and, below it, its test one."""
        scale = 1 if metric == "steady_epoch_seconds" else 100
        by_pair = {(t.a, t.b): t for t in test}
        items = []
        for v in verdicts:
            for verdict, split in ((v, "validation"), (by_pair.get((v.a, v.b)), "test")):
                if verdict is None or verdict.difference is None:
                    continue
                d = verdict.difference
                items.append({"label": f"{verdict.a} − {verdict.b} ({split})", "difference": scale * d.difference,
                              "low": scale * d.low, "high": scale * d.high, "holm_low": scale * verdict.holm_low,
                              "holm_high": scale * verdict.holm_high, "split": split,
                              "verdict": verdict.marked_word})
        if not items:
            return []
        path, rel = self.figure(f"{stem}-forest.png")
        margin = None if metric == "steady_epoch_seconds" or not self.margin else scale * self.margin
        splits = " and test" if any(item["split"] == "test" for item in items) else ""
        plots.plot_forest(items, path, margin=margin, unit="s" if scale == 1 else "pp",
                          title=f"{question}: Δ {METRIC_TITLES.get(metric, metric)}, validation{splits}; raw 95 % "
                                "and Holm-level intervals")
        return [f"![{_md(question)}: forest plot]({rel})", ""]

    # ------------------------------------------------------------------------------------------ tables

    def accuracy_table(self, names, reference: str | None) -> list[str]:
        header = ["run", "n", *(title for _, title, _, _ in ACCURACY_COLUMNS)]
        if reference:
            header.append(f"Δ top-1 vs `{reference}` (pp, raw 95 % CI)")
        rows = []
        for name in names:
            cells = [f"`{_md(name)}`", str(self.n(name))]
            for key, _, scale, digits in ACCURACY_COLUMNS:
                cells.append(self.test_summary(name, key, scale, digits) if key.startswith("test_")
                             else format_summary(self.values(name, key), scale, digits))
            if reference:
                if name == reference:
                    cells.append("reference")
                else:
                    cells.append(format_difference(self.values(name, "accuracy"), self.values(reference, "accuracy")))
            rows.append(cells)
        return _table(header, rows)

    def test_summary(self, name: str, key: str, scale: float, digits: int) -> str:
        """A test column's cell: the summary, "(n=k)" where fewer runs are scored than finished, or "—"."""
        values = self.values(name, key)
        count = summarize(values).n
        if count == 0:
            return NOT_SCORED
        text = format_summary(values, scale, digits)
        return text if count == self.n(name) else f"{text} (n={count})"

    def metric_table(self, names, metric: str) -> list[str]:
        title = METRIC_TITLES.get(metric, metric)
        header = ["run", "labels", "classes", "n", f"{title}, validation (%)", f"{title}, test (%)"]
        rows = []
        for name in names:
            first = self.by_name[name][0]
            test = self.values(name, f"test_{metric}")
            rows.append([f"`{_md(name)}`", str(first.get("labels")), str(first.get("num_classes")), str(self.n(name)),
                         format_summary(self.values(name, metric), 100, 2),
                         format_summary(test, 100, 2) if summarize(test).n else NOT_SCORED])
        return _table(header, rows)

    def calibration_table(self, names) -> list[str]:
        header = ["run", "n", *(t for _, t, _, _ in CALIBRATION_COLUMNS), *(t for _, t, _, _ in SPEED_COLUMNS)]
        rows = []
        for name in names:
            runs = self.by_name.get(name, [])
            cells = [f"`{_md(name)}`", str(self.n(name))]
            status = [calibration_status(r) for r in runs]
            applicable = all(ok for ok, _ in status) if status else True
            floor = next((why for why in (_floor_decides_nll(r) for r in runs) if why), None)
            for key, _, scale, digits in CALIBRATION_COLUMNS:
                if key in ("nll", "test_nll") and floor:
                    cells.append("floor³")
                    self.floor_notes[floor] = floor
                elif key in TEMPERATURE_KEYS and not applicable:
                    cells.append("n/a¹")
                    reason = next(why for ok, why in status if not ok)
                    self.notes[reason.split(":")[0]] = reason
                elif key == "temperature":
                    text = format_summary(self.values(name, key), scale, digits)
                    temps = [t for t in self.values(name, key) if t is not None]
                    at_bound = sum(1 for t in temps if min(abs(np.log(t / b)) for b in TEMPERATURE_BOUNDS) < 5e-3)
                    if at_bound:
                        text += f" ({at_bound} of {len(temps)} at the bound {max(TEMPERATURE_BOUNDS):g})⁴"
                        self.bound_note = True
                    cells.append(text)
                elif key.startswith("test_"):
                    cells.append(self.test_summary(name, key, scale, digits))
                else:
                    cells.append(format_summary(self.values(name, key), scale, digits))
            timed = self.timings(name, "steady_epoch_seconds")
            cells += [format_summary(self.timings(name, key), scale, digits) for key, _, scale, digits in SPEED_COLUMNS]
            if len(timed) != self.n(name) or self.speed_kind:
                cells[-1] += f" (n={len(timed)})²"
                self.shared_timing = True
            rows.append(cells)
        return _table(header, rows)

    def footnotes(self) -> list[str]:
        lines = []
        if self.shared_timing:
            lines += ["² Epoch time and images/s come only from runs that had their GPU to themselves: the "
                      "study's timing runs (`[timing]`: a few epochs of the same recipe, alone on a GPU) where the "
                      "row has them, else its runs made with `--runs-per-device 1`; runs that shared a GPU count "
                      "for accuracy, not for speed. n is the number of runs behind the speed figures; with n = 1 "
                      "there is no spread."
                      + (f" Every speed figure is from one GPU kind, {self.speed_kind} (the kind with the most "
                         "speed runs): a head's epoch time differs between GPU kinds far more than between heads, "
                         f"so {self.speed_left_out} speed run(s) on other kinds count for accuracy only."
                         if self.speed_kind else ""), ""]
            self.shared_timing = False
        if self.notes:
            lines += ["¹ Temperature scaling does not apply to these rows:", ""]
            lines += [f"- {_md(reason)}" for reason in self.notes.values()]
            lines += [""]
            self.notes = {}
        if self.floor_notes:
            lines += ["³ NLL not shown: the 1e-12 probability floor decides it, not the model:", ""]
            lines += [f"- {_md(reason)}" for reason in self.floor_notes.values()]
            lines += [""]
            self.floor_notes = {}
        if self.bound_note:
            lines += [f"⁴ The fitted T sits at the search's bound ({max(TEMPERATURE_BOUNDS):g}, within 0.5 %) "
                      "in these runs: "
                      "the NLL still fell towards a flat distribution there, so T and the ECE after it describe the "
                      "bound, not an optimum.", ""]
            self.bound_note = False
        return lines

    # ------------------------------------------------------------------------------------------ plots

    def curves(self, names, stem: str, title: str, reference: str | None = None) -> list[str]:
        lines = []
        nll_runs = [r for n in names for r in self.by_name.get(n, []) if any(
            v is not None for v in self.history(r["run_dir"], "val_nll"))]
        if not nll_runs and names:
            lines += ["Validation NLL per epoch is not in these runs' histories (`val_nll`, unsmoothed, the "
                      "same quantity for every head); `val_loss` is each head's own training objective "
                      "(label-smoothed, Fenchel–Young, sampled), which cannot be compared across heads, so it "
                      "is not plotted.", ""]
        # As in the tables, no NLL where the probability floor decides it (exact zeros, mismatched wiring):
        # such a curve would show the floor's −log 1e-12 times an error rate, not the model's NLL.
        floored = [n for n in names if any(_floor_decides_nll(r) for r in self.by_name.get(n, []))]
        for key, label, percent in (("val_nll", "validation NLL (unsmoothed)", False),
                                    ("val_accuracy", "validation top-1", True)):
            shown = [n for n in names if n not in floored] if key == "val_nll" else list(names)
            series = {name: [self.history(r["run_dir"], key) for r in self.by_name.get(name, [])] for name in shown}
            if not any(any(v is not None for v in run) for runs in series.values() for run in runs):
                continue
            path, rel = self.figure(f"{stem}-{key}.png")
            plots.plot_curve_panels(series, path, ylabel=label, percent=percent,
                                    reference=reference if reference in shown else None,
                                    title=f"{title}: {label}, mean over seeds (band: min to max)")
            lines += [f"![{_md(title)}: {label}]({rel})", ""]
            if key == "val_nll" and floored:
                lines += ["Not in the NLL figure, as in the tables (the 1e-12 probability floor decides their NLL): "
                          + ", ".join(f"`{n}`" for n in floored) + ".", ""]
        return lines

    def confused(self, names, stem: str, top: int = 15) -> list[str]:
        """The most-confused class pairs of ``names``' runs pooled (a table and a bar chart)."""
        pooled, class_names, runs = None, None, 0
        for name in names:
            for row in self.by_name.get(name, []):
                report = self.report(row["run_dir"])
                if report.get("confusion_matrix") is None:
                    continue
                cm = np.asarray(report["confusion_matrix"], dtype=np.float64)
                if pooled is not None and cm.shape != pooled.shape:
                    continue
                pooled = cm if pooled is None else pooled + cm
                runs += 1
                if class_names is None:
                    class_names = [str(c.get("name")) for c in report.get("per_class") or []] or None
        if pooled is None:
            return []
        if class_names is None or len(class_names) != len(pooled):
            class_names = [str(i) for i in range(len(pooled))]
        pairs = plots.confused_pairs(pooled, class_names, top)
        if not pairs:
            return []
        path, rel = self.figure(f"{stem}-confused_pairs.png")
        plots.plot_confused_pairs(pairs, path, title=f"Most-confused class pairs, {runs} runs of "
                                                     f"{len(names)} rows pooled (validation)")
        lines = [f"Most-confused class pairs (true → predicted), validation images of {runs} runs pooled; share "
                 "of the true class's images:", ""]
        lines += _table(["true → predicted", "share (%)", "images"],
                        [[f"{_md(t)} → {_md(p)}", f"{100 * rate:.1f}", str(count)] for t, p, rate, count in pairs])
        return lines + [f"![most-confused class pairs]({rel})", ""]

    def reliability(self, names, stem: str) -> list[str]:
        bins, captions = {}, {}
        for name in names:
            lists = [self.report(r["run_dir"]).get("reliability") for r in self.by_name.get(name, [])]
            lists = [b for b in lists if b]
            if lists:
                bins[name] = plots.pool_reliability(lists)
                ok = all(calibration_status(r)[0] for r in self.by_name.get(name, []))
                after = summarize(self.values(name, "ece_after"))
                if after.n and ok:
                    captions[name] = f", after T {100 * after.mean:.1f}%"
        if not bins:
            return []
        path, rel = self.figure(f"{stem}-reliability.png")
        plots.plot_reliability_grid(bins, path, captions=captions)
        return [f"![reliability diagrams]({rel})", ""]

    def epoch_times(self, names, stem: str) -> list[str]:
        times = {name: self.timings(name, "steady_epoch_seconds") for name in names}
        times = {name: [v for v in values if v is not None] for name, values in times.items()}
        times = {name: values for name, values in times.items() if values}
        if not times:
            return []
        path, rel = self.figure(f"{stem}-epoch_time.png")
        plots.plot_epoch_times(times, path, kind=self.speed_kind)
        return [f"![epoch time]({rel})", ""]


def _intro(spec, study: _Study, command: str, planned_ids: set, finished_ids: set, pending: list) -> list[str]:
    title = spec.description or f"Study {spec.path.stem}"
    seeds = ", ".join(str(s) for s in spec.seeds)
    datasets = sorted({str(r.get("dataset")) for r in study.rows if r.get("dataset")})
    devices = sorted({str(r.get("device")) for r in study.rows if r.get("device")})
    backends = sorted({str(r.get("backend")) for r in study.rows if r.get("backend")})
    scored = len({r["run_dir"] for r in study.rows if r.get("test_accuracy") is not None})
    finished = len({r["run_dir"] for r in study.rows})
    diverged_ids = study.diverged_ids
    alpha = study.alpha
    if study.repeat_sd is not None:
        margin = (f"**±{100 * study.margin:.2f} points** = 1.96 · √2 · σ_repeat, where σ_repeat = "
                  f"{100 * study.repeat_sd:.2f} points is the standard deviation of one run measured from "
                  f"{study.repeat_pairs} same-config, same-seed GPU repeat pairs "
                  f"(`{_md(spec.verdicts.repeats.name)}`): "
                  "two runs of one configuration differ by up to this much 95 % of the time, so a smaller "
                  "difference between two heads is one the GPU's own non-determinism makes")
    elif study.margin:
        margin = f"**±{100 * study.margin:.2f} points** (given in the spec)"
    else:
        margin = "none given, so no equivalence is claimed"
    if study.margin and spec.verdicts.note:
        margin += f" ({_md(spec.verdicts.note)})"
    waiting = sum(len(seeds) for _, seeds in pending)
    unsettled = len(finished_ids | diverged_ids) < len(planned_ids)  # planned runs neither finished nor diverged
    see = (["*Diverged*"] if diverged_ids else []) + (["*Not finished*"] if unsettled else [])
    lines = [f"# {_md(title)}", "",
             "Generated by `keras-softmax study` from `results.jsonl` and the run directories; every number and "
             "figure below is recomputed from them (`--report-only` rebuilds this file).", "",
             "```bash", command, "```", "",
             f"- spec: `{spec.path}`; seeds {seeds}; reference `{spec.reference}`",
             f"- runs: {len(finished_ids)} of {len(planned_ids)} planned"
             + (" so far" if waiting or unsettled else "") + " finished"
             + (f", {len(diverged_ids)} diverged" if diverged_ids else "")
             + (f" (see {' and '.join(see)} below)" if see else "")
             + (f"; {waiting} more tuned run(s) are planned once their heads' tuning grids are complete"
                if waiting else ""),
             f"- test split: {scored} of {finished} finished runs scored"
             + ("" if scored else " — every test column reads " + NOT_SCORED + " (not yet scored)"),
             f"- data: {', '.join(datasets) or '–'}; backend {', '.join(backends) or '–'}; "
             f"device {', '.join(devices) or '–'} (per row: *Provenance*)",
             "", "## Protocol and how to read it", "",
             "- **Validation chooses, test reports.** Every choice — recipe, the tuning grid's best point, head "
             "parameters — is made on the **validation split** (held out, seeded, from the training images). "
             "Each finished run is then scored **once** on the official **test split** "
             "(`--test-dataset`, `test.json` in the run directory); no test figure is read to choose anything. "
             f"Tables show both; a test cell of {NOT_SCORED} means that run has not been scored yet.",
             "- Cells are the **mean ± sample standard deviation** (ddof = 1) over seeds; `n` is the number of runs "
             "behind the row. A seed fixes the initialisation, the data order and augmentation, **and which images "
             "form the validation split**, so the validation spread includes the split's; the test split is the "
             "same 10,000 images for every run.",
             "- **Verdicts.** Each question declares a **family** of comparisons and one **primary** comparison "
             "(its answer). Δ = mean of the first − mean of the second, in percentage points, with Welch's "
             "t-test and 95 % interval on the per-seed values (unequal variances, Welch–Satterthwaite df; the "
             f"two rows' seeds treated as independent samples). Within a family, **Holm's** step-down adjustment "
             f"keeps the chance of any false \"better\"/\"worse\" at α = {alpha:g}; the *Holm-level CI* is wider "
             "than the raw one: for a comparison Holm rejects, the interval at the level of the step that rejects "
             "it, 1 − α/(m − k) (k comparisons with smaller p before it, m in the family); for one it retains, at "
             "the level of the step where Holm stopped, 1 − α/(m − r) (r rejected), as in the intervals "
             "compatible with Holm (Strassburger and Bretz 2008). So it excludes 0 exactly when the comparison "
             "is better or worse.",
             f"- **better / worse**: Holm-adjusted p < {alpha:g}. **equivalent**: not that, and two one-sided "
             "Welch tests (TOST, Holm-adjusted within the family) exclude a difference beyond the margin "
             f"{margin}; TOST at its own Holm step α′ asks the (1 − 2α′) interval to lie inside the margin, so the Holm-level "
             "CI (the better/worse test's) may reach past the margin of a comparison that is equivalent. "
             f"**inconclusive**: neither; the cell says which differences the data still exclude for the whole family "
             f"(\"beyond ±x excluded\": the larger end of the 1 − 2α/m interval, m the family's size, so x is at "
             "least the margin). A raw 95 % interval read alone is not a verdict.",
             "- NLL is the mean −log p(true class) with p floored at 1e-12 (not the training loss); it is shown "
             "only where that floor does not decide it. ECE: 15 equal-width confidence bins.",
             "- Temperature scaling (Guo et al. 2017): one T per run fit by minimising the NLL on the validation "
             "split and **measured on the same split** (optimistic); the *cross-fitted* column fits T on one "
             "random half and measures on the other, both ways, which is the honest figure. Not applicable to "
             "heads or variants with exact zeros (sparsemax, entmax15, entmax_alpha, drop_lowest) or bounded "
             "scores (exp_sin, normal_cdf); a T at the search's bound is marked.",
             "- Epoch time: the median training-phase seconds of epochs 2..n (compilation excluded) of runs that "
             "had their GPU alone; images/s = training images per epoch / that time.", ""]
    return lines


def _section_names(spec) -> set:
    return {name for section in spec.sections for name in section.rows}


def _superclass_rows(study: _Study) -> list[str]:
    plain = {p.name for p in study.planned if p.kind in ("head", "variant")}  # not the tuning grid
    names = [n for n in study.names
             if n in plain and any(r.get("coarse_accuracy") is not None for r in study.by_name.get(n, []))]
    if not names:
        return []
    names.sort(key=lambda n: study.by_name[n][0].get("labels") != "coarse")  # stable: superclass models first
    header = ["run", "labels", "classes", "n", "superclass top-1, summed probabilities (%)",
              "superclass top-1, superclass of the argmax (%)", "test, summed (%)"]
    rows = []
    for name in names:
        first = study.by_name[name][0]
        test = study.values(name, "test_coarse_accuracy")
        rows.append([f"`{_md(name)}`", str(first.get("labels")), str(first.get("num_classes")), str(study.n(name)),
                     format_summary(study.values(name, "coarse_accuracy"), 100, 2),
                     format_summary(study.values(name, "coarse_accuracy_mapped"), 100, 2),
                     format_summary(test, 100, 2) if summarize(test).n else NOT_SCORED])
    return ["## The 20 superclasses", "",
            "Superclass accuracy on the same validation images: a model trained on the superclass labels "
            "(`labels = \"coarse\"`), and every fine-class model whose data has a fine→coarse map — its "
            "probabilities summed within each superclass (for `hierarchical`, its own p(superclass)), and the "
            "superclass of its top-1 fine class.", "", *_table(header, rows)]


def _grid_edges(tuning, best: dict) -> list[str]:
    """``"lr = 0.4 (highest tried): softmax, ..."`` for each numeric axis with chosen values at its ends.

    An end at 0 is not reported: for the settings a grid holds (label smoothing, dropout, ...) 0 is the
    "off" value, which no wider grid can go beyond."""
    edges = []
    for key, values in tuning.grid.items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) < 2 or len(numeric) != len(values):
            continue
        for end, word in ((max(numeric), "highest"), (min(numeric), "lowest")):
            heads = [h for h, point in best.items() if point.get(key) == end]
            if heads and end != 0:
                edges.append(f"{key} = {end} ({word} tried): {', '.join(f'`{h}`' for h in heads)}")
    return edges


def _diverged_at_top_lr(tuning, best: dict, study) -> str:
    """Where a head's best learning rate is the grid's highest and grid runs at that rate diverged, the
    sentence that says so: a wider axis would run into failed training. Only the learning rate: a loss that
    becomes NaN is its doing, not that of the other axes' values the same runs had."""
    from keras_softmax.study.spec import tune_name

    values = tuning.grid.get("lr", [])
    if len(values) < 2 or not all(isinstance(v, (int, float)) for v in values):
        return ""
    top = max(values)
    if not any(point.get("lr") == top for point in best.values()):
        return ""
    names = {tune_name(h, p): h for h in tuning.heads for p in tuning.points() if p.get("lr") == top}
    failed = [r for r in study.diverged if r["name"] in names]
    if not failed:
        return ""
    trained = sum(study.n(name) for name in names) + len(failed)
    heads = sorted({names[r["name"]] for r in failed}, key=tuning.heads.index)
    return (f" But at lr = {top:g}, the highest tried, {len(failed)} of the {trained} grid runs trained so far "
            f"diverged ({', '.join(f'`{h}`' for h in heads)}): beyond it, training starts to fail.")


def _point_label(point: dict) -> str:
    from keras_softmax.study.spec import _SHORT

    return ", ".join(f"{_SHORT.get(k, k)} {v:g}" if isinstance(v, float) else f"{_SHORT.get(k, k)} {v}"
                     for k, v in point.items())


def _tuning_section(spec, study: _Study) -> list[str]:
    from keras_softmax.study.results import best_points, unstable_learning_rates
    from keras_softmax.study.spec import tune_name

    tuning = spec.tuning
    points = tuning.points()
    best = best_points(tuning, study.rows, study.diverged)
    grid_seeds = ", ".join(str(s) for s in tuning.seeds)
    tuned_seeds = tuning.tuned_seeds or spec.seeds
    unseen = not (set(tuned_seeds) & set(tuning.seeds))
    lines = ["## Per-head tuning", "",
             f"Every head in the same grid of {len(points)} settings ({' × '.join(tuning.grid)}) on seed(s) "
             f"{grid_seeds}; a head's best point is the highest mean validation {tuning.metric} over those seeds, "
             f"chosen only once every point has them all. The chosen setting is then trained as `tuned-<head>` on "
             f"seeds {', '.join(str(s) for s in tuned_seeds)}"
             + (", which the choice never saw (new initialisations, data orders and validation splits), so the "
                "tuned rows carry no selection bias." if unseen else
                ", which include the grid's: those tuned figures are optimistic by the selection (the best of "
                f"{len(points)} points on the same runs)."), ""]
    header = ["head", *[_md(_point_label(p)) for p in points], "leader so far", "lead over runner-up (pp)",
              "chosen"]
    rows, heat, set_aside = [], {}, {}  # set_aside: head -> indices of its points at a diverged rate
    for head in tuning.heads:
        cells, means = [f"`{head}`"], []
        unstable = unstable_learning_rates(tuning, head, study.diverged)
        for index, point in enumerate(points):
            values = study.values(tune_name(head, point), tuning.metric)
            s = summarize(values)
            diverged = sorted(r["seed"] for r in study.diverged if r["name"] == tune_name(head, point))
            cell = format_summary(values, 100, 2) + (f" (n={s.n})" if s.n and s.n != len(tuning.seeds) else "")
            if diverged:  # counted as the worst point (best_points), drawn as "div." in the heatmap
                said = f"seed{'s' if len(diverged) > 1 else ''} {', '.join(str(d) for d in diverged)} diverged"
                cell = f"{cell}; {said}" if values else said
            elif values and point.get("lr") in unstable:
                cell += " †"
                set_aside.setdefault(head, set()).add(index)
            cells.append(cell)
            means.append(float("-inf") if diverged else s.mean)
        eligible = [i for i, p in enumerate(points) if p.get("lr") not in unstable] or range(len(points))
        ranked = sorted((means[i], i) for i in eligible if means[i] is not None and means[i] != float("-inf"))
        if ranked:
            top = ranked[-1]
            cells.append(_md(_point_label(points[top[1]])))
            cells.append(f"{100 * (top[0] - ranked[-2][0]):.2f}" if len(ranked) > 1 else "–")
        else:
            cells += ["–", "–"]
        chosen = best.get(head)
        if chosen:
            cells.append(_md(_point_label(chosen)))
        else:
            done = [{r["seed"] for r in study.by_name.get(tune_name(head, p), [])} for p in points]
            missing = [str(s) for s in tuning.seeds if any(s not in seeds for seeds in done)]
            cells.append(f"not yet: seed(s) {', '.join(missing)} missing at some points")
        rows.append(cells)
        heat[head] = means
    lines += [f"Grid, validation {tuning.metric} (%), mean over the grid seeds (n where fewer):", "",
              *_table(header, rows)]
    if study.repeat_sd is not None:
        close = [r[0] for r in rows if r[-2] not in ("–",) and float(r[-2]) < 100 * study.margin]
        lines += [f"A lead smaller than the equivalence margin (±{100 * study.margin:.2f} points, from the repeat "
                  f"noise) is within what two runs of one configuration differ by; "
                  f"{len(close)} of {len(rows)} heads' leaders lead by less"
                  + (": " + ", ".join(close) if close else "")
                  + ". On one grid seed such a leader is a coin toss among the near-equal points; the mean over "
                  "several grid seeds is what chooses.", ""]
    if set_aside:
        lines += [f"† At a learning rate where another of the head's grid runs diverged ("
                  + ", ".join(f"`{h}`" for h in set_aside)
                  + "): not chosen, and left out of the leader and its lead, while another rate is left. The tuned "
                  "runs train on seeds the grid never saw, and a rate that diverged once, at whatever other "
                  "setting, is at the edge of what the head trains through.", ""]
    axes = list(tuning.grid)
    if len(axes) == 1:  # one axis: a single column
        axes, tuning_grid = axes + ["_"], {**tuning.grid, "_": [""]}
        points_2d = [{**p, "_": ""} for p in points]
    else:
        tuning_grid, points_2d = tuning.grid, points
    if len(axes) == 2:
        first, second = (tuning_grid[a] for a in axes)
        grids, chosen_cells, marked = {}, {}, {}
        for head, means in heat.items():
            grid = [[None] * len(second) for _ in first]
            for index, (point, mean) in enumerate(zip(points_2d, means)):
                cell = (first.index(point[axes[0]]), second.index(point[axes[1]]))
                grid[cell[0]][cell[1]] = mean
                if index in set_aside.get(head, ()):
                    marked.setdefault(head, set()).add(cell)
            grids[head] = grid
            if head in best:
                chosen = {**best[head], "_": ""}
                chosen_cells[head] = (first.index(chosen[axes[0]]), second.index(chosen[axes[1]]))
        path, rel = study.figure("tuning-grid.png")
        plots.plot_grid_heatmaps(grids, path, row_label=axes[0], column_label=axes[1] if axes[1] != "_" else "",
                                 rows=first, columns=second, chosen=chosen_cells, set_aside=marked,
                                 title=f"Tuning grid: validation {tuning.metric} (%), mean over the grid seeds "
                                       f"({grid_seeds}) finished so far; each head's own colour range "
                                       "(red box: chosen" + ("; †: at a rate that diverged, not chosen)"
                                                             if marked else ")"))
        lines += [f"![tuning grid heatmaps]({rel})", ""]
    edges = _grid_edges(tuning, best)
    if edges:
        lines += ["**The best setting is at the edge of the grid** for " + "; ".join(edges)
                  + ": the optimum may lie outside it, so widen that axis before reading the tuned table as "
                  "each head's best." + _diverged_at_top_lr(tuning, best, study), ""]

    tuned = [f"tuned-{h}" for h in tuning.heads if study.n(f"tuned-{h}")]
    if not tuned:
        return lines + [f"No tuned rows yet: they are planned once a head's grid is complete on seed(s) {grid_seeds}, "
                        "and trained by the same study command.", ""]
    reference = f"tuned-{spec.reference}" if spec.reference in tuning.heads else spec.reference
    lines += ["Each head at its best setting:", ""]
    lines += study.accuracy_table(tuned, reference if study.n(reference) else None)
    # Each family is every tuned head's comparison, whether its tuned rows exist yet or not (Holm's m is the
    # declared family's, an untested comparison counting with p = 1).
    every = [f"tuned-{h}" for h in tuning.heads]
    lines += study.verdict_block("Tuned heads", "tuned", [(t, reference) for t in every if t != reference],
                                 primary=(f"tuned-{spec.primary}", reference) if spec.primary and
                                 f"tuned-{spec.primary}" in tuned and f"tuned-{spec.primary}" != reference else None)
    lines += study.calibration_table(tuned) + study.footnotes()
    heads = [h for h in tuning.heads if study.n(f"tuned-{h}")]
    lines += study.verdict_block("Tuned against shared recipe", "tuned-vs-shared",
                                 [(f"tuned-{h}", h) for h in tuning.heads])
    return lines + _tuning_changes(study, spec.reference, reference, tuning.heads, heads)


def _tuning_changes(study, shared_reference: str, tuned_reference: str, family: list, heads: list) -> list[str]:
    """Each tuned head's verdict against the reference beside its verdict at the shared recipe, on validation
    and on test (Holm within each column's family, the declared ``family`` of heads), and the rankings."""
    shared_pairs = [(h, shared_reference) for h in family if h != shared_reference]
    tuned_pairs = [(f"tuned-{h}", tuned_reference) for h in family if f"tuned-{h}" != tuned_reference]
    header = ["head", "split", "shared recipe top-1 (%)", "tuned top-1 (%)", f"vs `{shared_reference}`, shared",
              f"vs `{shared_reference}`, tuned", "conclusion"]
    keys = {"val": "accuracy", "test": "test_accuracy"}
    verdicts = {split: ({v.a: v for v in study.family(shared_pairs, split=split)},
                        {v.a[len("tuned-"):]: v for v in study.family(tuned_pairs, split=split)}) for split in keys}
    rows, changed = [], {split: [] for split in keys}
    for head in heads:
        for split, key in keys.items():
            shared_v, tuned_v = verdicts[split]
            v_shared = shared_v[head].word if head in shared_v else "reference"
            v_tuned = tuned_v[head].word if head in tuned_v else "reference"
            provisional = any(v.provisional for v in (shared_v.get(head), tuned_v.get(head)) if v is not None)
            if "untested" in (v_shared, v_tuned):
                conclusion = ("not known yet (fewer than 2 runs)" if split == "val"
                              else "not known yet (fewer than 2 runs scored)")
            elif v_shared == v_tuned:
                conclusion = "provisional: same" if provisional else "same"
            else:
                conclusion = "provisional: **changes**" if provisional else "**changes**"
                changed[split].append(f"`{head}`: {v_shared} → {v_tuned}" + (" (provisional)" if provisional else ""))
            rows.append([f"`{head}`", _SPLIT_NAMES[split], format_summary(study.values(head, key), 100, 2),
                         format_summary(study.values(f"tuned-{head}", key), 100, 2), v_shared, v_tuned, conclusion])
    lines = [f"Shared recipe against per-head tuning: each head's verdict against `{shared_reference}` on each "
             "split (Holm within each column's family and split):", "", *_table(header, rows)]
    for split, key in keys.items():
        for name, words in (("{}", "shared recipe"), ("tuned-{}", "tuned per head")):
            means = {h: summarize(study.values(name.format(h), key)).mean for h in heads}
            ranked = sorted((h for h in heads if means[h] is not None), key=lambda h: -means[h])
            lines.append(f"- Ranking by mean top-1 on {_SPLIT_NAMES[split]}, {words}: "
                         + (", ".join(f"`{h}`" for h in ranked) if ranked else "no runs scored yet"))
    for split in keys:
        lines.append(f"- Conclusions that change with tuning, on {_SPLIT_NAMES[split]}: "
                     + ("; ".join(changed[split]) if changed[split] else "none"))
    return lines + [""]


_SPEED_WORDS = {"better": "slower", "worse": "faster"}  # a verdict's word on epoch seconds (a − b)
_EXPECT = {"better": "better", "higher": "better", "worse": "worse", "lower": "worse", "equivalent": "equivalent"}


def _size_excluded(verdict, size: float | None) -> bool:
    """True when the verdict's Holm-level interval lies wholly on the near side of a claim's stated size
    (``size`` in the metric's own units, signed: the claim is a − b ≥ size > 0 or a − b ≤ size < 0)."""
    if size is None or verdict.holm_low is None:
        return False
    return verdict.holm_high < size if size > 0 else verdict.holm_low > size


def _claim_word(expect: str, verdict, split: str = "val", size: float | None = None) -> str:
    """A verdict read against a claim's direction (and its stated size, if it states one): supported,
    contradicted, contradicted in size, not shown or not yet measured."""
    expect = _EXPECT.get(expect, expect)
    word = verdict.word
    if word == "untested":
        return "not yet scored" if split == "test" and verdict.n_a == verdict.n_b == 0 else "not yet measured"
    if word in ("inconclusive", expect) and _size_excluded(verdict, size):
        text = "contradicted (its size is excluded)"
    else:
        text = ("not shown (inconclusive)" if word == "inconclusive" else "supported" if word == expect
                else "contradicted")
    return f"provisional: {text}" if verdict.provisional else text


def _claim_summary(expect: str, verdicts, split: str, size: float | None = None) -> str:
    words = [_claim_word(expect, v, split, size) for v in verdicts]
    if len(set(words)) == 1:
        return words[0]
    return "; ".join(f"{w} for {', '.join(f'`{v.a}`' for v, x in zip(verdicts, words) if x == w)}"
                     for w in dict.fromkeys(words))


def _claims_section(spec, study: _Study, command: str) -> list[str]:
    if not spec.claims:
        return []
    header = ["the original's claim", "our verdict (validation)", "our verdict (test)",
              "comparison: Δ [raw 95 % CI], verdict, per split", "command"]
    rows = []
    for claim in spec.claims:
        if not claim.rows:
            rows.append([_md(claim.claim), _md(claim.evidence), "–", "–",
                         f"`{_md(claim.command)}`" if claim.command else "–"])
            continue
        pairs = [(r, claim.reference) for r in claim.rows]
        missing = [p for p in pairs if (p[0], p[1], claim.metric, "val") not in study.verdicts]
        if missing:
            study.family(missing, claim.metric, "val")
            study.family(missing, claim.metric, "test")
        val = [study.verdicts[(a, b, claim.metric, "val")] for a, b in pairs]
        test = [study.verdicts[(a, b, claim.metric, "test")] for a, b in pairs]
        speed = claim.metric == "steady_epoch_seconds"  # measured by the timing runs, on no split
        scale, digits, unit = (1, 3, " s") if speed else (100, 2, " pp")
        detail = []
        for v, t in zip(val, test):
            parts = []
            for verdict, split in ((v, "val"),) if speed else ((v, "val"), (t, "test")):
                d = verdict.difference
                if d is not None:
                    mark = study.offset_mark if study.turns_on_offset(verdict, claim.metric, split) else ""
                    where = f"timing runs ({verdict.n_a} vs {verdict.n_b})" if speed else _SPLIT_NAMES[split]
                    word = verdict.marked_word
                    if speed:  # a - b > 0 in epoch seconds is slower, not better
                        word = word.replace(verdict.word, _SPEED_WORDS.get(verdict.word, verdict.word))
                    parts.append(f"{where} {_pp(d.difference, scale, digits)}{unit} "
                                 f"[{_pp(d.low, scale, digits)}, {_pp(d.high, scale, digits)}], {word}{mark}")
                elif split == "val":
                    parts.append(f"untested ({'timing runs: ' if speed else ''}n = {verdict.n_a} vs {verdict.n_b})")
            detail.append(f"`{_md(v.a)}` − `{_md(v.b)}`: " + "; ".join(parts))
        size = None if claim.size is None else claim.size / scale
        if size is not None:
            detail.append(f"The claim's size: {_pp(size, scale, digits)}{unit} or beyond")
        if claim.evidence:
            detail.append(_md(claim.evidence))
        test_cell = "– (a speed claim)" if speed else _claim_summary(claim.expect, test, "test", size)
        runs = ", ".join(f"`{n}`" for n in dict.fromkeys(n for p in pairs for n in p))
        cmd = f"the study command (rows {runs})" + (f"; also `{_md(claim.command)}`" if claim.command else "")
        rows.append([_md(claim.claim), f"**{_claim_summary(claim.expect, val, 'val', size)}**", test_cell,
                     "<br>".join(detail), cmd])
    return ["## The original study's claims", "",
            "Each claim of the study being repeated, our verdict from the comparison that answers it (the "
            "verdicts of the question's family above where it has one, else a family of the claim's own "
            f"comparisons) on validation and on test, and the rows and command behind it. \"supported\"/"
            "\"contradicted\": the verdict agrees with/opposes the claim's direction (an equivalence opposes a "
            "claimed difference); \"contradicted (its size is excluded)\": the claim states a size (a difference "
            "of at least so many points) and the Holm-level interval excludes it, whatever the direction's "
            "verdict; \"not shown\": inconclusive at these seeds; \"not yet measured\": a row it "
            "needs has fewer than 2 runs; \"provisional\": a row has fewer runs than the study plans (a run "
            "that diverged is not waited for). A speed claim is judged on the timing runs' epoch times, which "
            "belong to no split, in the validation column. The study "
            f"command: `{_md(command)}`.", "", *_table(header, rows, ["l", "l", "l", "l", "l"])]


def _provenance_section(spec, study: _Study, planned) -> list[str]:
    provenance = spec.provenance or {}
    lines = ["## Provenance", ""]
    recipe = provenance.get("recipe")
    settings = provenance.get("settings") or {}
    if recipe and settings:
        run = next((p for p in planned if isinstance(p.settings, dict) and p.settings.get("recipe") == recipe), None)
        resolved = run.config.to_dict() if run is not None else {}
        rows = []
        for key, source in settings.items():
            value = resolved.get(key, spec.recipes.get(recipe, {}).get(key, "–"))
            rows.append([f"`{_md(key)}`", f"`{_md(value)}`", _md(source)])
        lines += [f"The original study's recipe as `[recipes.{recipe}]` runs it: each setting, and whether the "
                  "original states it or we assumed it (and why).", "",
                  *_table(["setting", "value", "source"], rows, ["l", "l", "l"])]
    data = provenance.get("data") or {}
    if data:
        lines += ["The data:", "", *_table(["", ""], [[_md(k), _md(v)] for k, v in data.items()], ["l", "l"])]
    # Every row's GPU kind.
    kinds: dict[str, dict] = {}
    for p in planned:
        group = p.name if p.kind in ("head", "variant", "tuned") else (
            f"tuning grid of `{p.config.head}`" if p.kind == "tune" else f"timing runs")
        for row in (study.by_name.get(p.name, []) if p.kind != "timing" else study.timing_by_name.get(p.name, [])):
            if row.get("seed") == p.seed and row.get("run_dir") == f"runs/{p.run_id}":
                kinds.setdefault(group, {}).setdefault(_gpu(row.get("device")), set()).add(row["run_dir"])
    rows = [[f"`{_md(g)}`" if not g.startswith(("tuning", "timing")) else g,
             ", ".join(f"{kind} × {len(runs)}" for kind, runs in sorted(found.items()))]
            for g, found in kinds.items()]
    lines += ["Every row's GPU kind (runs per kind):", "", *_table(["row", "GPU"], rows, ["l", "l"])]
    return lines + _across_kinds(study, kinds)


def _across_kinds(study: _Study, kinds: dict[str, dict]) -> list[str]:
    """``kinds``: each row's runs per GPU kind. With rows from several kinds, the comparisons that set them
    against each other: checked against the study's measured offset (``[provenance] gpu_offset``) where it
    is of these two kinds, else named."""
    all_kinds = sorted({k for found in kinds.values() for k in found})
    if len(all_kinds) < 2:
        return []
    crossing = [(a, b, metric, split) for (a, b, metric, split) in study.verdicts
                if metric != "steady_epoch_seconds" and set(kinds.get(a, {})) and set(kinds.get(b, {}))
                and set(kinds.get(a, {})) != set(kinds.get(b, {}))]
    offset = study.offset
    if offset is None or {_gpu(offset.record), _gpu(offset.repeat)} != set(all_kinds):
        names = [f"`{a}` − `{b}`" for a, b, _, split in crossing if split == "val"]
        return [f"The rows come from {len(all_kinds)} GPU kinds ({', '.join(all_kinds)}). **The offset between "
                "them is not yet measured**: the same configuration and seed on both kinds would measure it. "
                f"{len(names)} comparison(s) above set rows of different kinds against each other"
                + (": " + ", ".join(names) if names else "")
                + "; read them with that in mind (the same-kind repeat noise is in the margin, a kind offset "
                "is not).",
                ""]
    return _kind_offset_lines(study, offset, crossing)


def _kind_offset_lines(study: _Study, offset, crossing) -> list[str]:
    """The measured offset between the two GPU kinds, and each top-1 comparison whose sides ran on the two
    kinds in different shares, recomputed with the offset taken off the runs of the repeat kind at both ends
    of its 95 % interval (:meth:`_Study.kind_check`); ``crossing``: the other comparisons across kinds, on
    metrics the offset was not measured on."""
    record, repeat = _gpu(offset.record), _gpu(offset.repeat)

    def measured(metric: str) -> list[str]:
        return [f"{_pp(est)} pp [{_pp(low)}, {_pp(high)}] on {label}" for label, split in
                (("validation", "val"), ("the test split", "test")) if (found := offset.on(split, metric))
                for est, low, high in [found]]

    lines = [f"The rows come from two GPU kinds. **The offset between them is measured**: {offset.pairs} recorded "
             f"{record} runs trained again on an {repeat} from the same `config.toml` and seed "
             f"(`bench/gpu_kinds.py`, `{_md(offset.path.name)}`), {repeat} − {record} = "
             + " and ".join(measured("accuracy")) + " (top-1, paired 95 % intervals)."]
    if study.margin:
        inside = all(-study.margin < f[1] and f[2] < study.margin for f in map(offset.on, ("val", "test")) if f)
        lines[-1] += (f" Its interval lies {'within' if inside else '**not** within'} the equivalence margin "
                      f"(±{100 * study.margin:.2f} pp).")
    if coarse := measured("coarse_accuracy"):
        pairs = sorted({offset.counts[k] for k in ("coarse_accuracy", "test_coarse_accuracy") if k in offset.counts})
        lines[-1] += (f" Superclass top-1 ({' and '.join(map(str, pairs))} of the pairs hold it): "
                      + " and ".join(coarse) + ".")
    rows, changed, unchecked = [], [], []
    for (a, b, metric, split), verdict in study.verdicts.items():
        key = metric if split == "val" else f"test_{metric}"
        share = " vs ".join("{} of {}".format(*study.repeat_kind_runs(n, key)) for n in (a, b))
        label = f"`{_md(a)}` − `{_md(b)}`" + ("" if metric == "accuracy" else f" ({_md(metric)})")
        ends = study.kind_check(verdict, metric, split)
        if ends is None:
            if metric != "accuracy" and (a, b, metric, split) in crossing and verdict.difference is not None:
                rows.append([label, _SPLIT_NAMES[split], share, verdict.word, "–", "–",
                             "no offset measured for it"])
                unchecked.append(f"{label} ({_SPLIT_NAMES[split]})")
            continue
        holds = all(v.word == verdict.word for v in ends)
        if not holds:
            changed.append(f"{label} ({_SPLIT_NAMES[split]})")
        rows.append([label, _SPLIT_NAMES[split], share, verdict.word,
                     *(f"{_pp(v.difference.difference)} pp: {v.word}" for v in ends),
                     "holds" if holds else "**changes**"])
    if rows:
        lines += ["", f"Each comparison above whose sides ran on the two kinds in different shares, recomputed in its "
                  f"family with the offset taken off every {repeat} run, at the low and the high end of the offset's "
                  f"interval (Δ and verdict); a verdict that changes is marked where it stands above:", "",
                  *_table(["comparison", "split", f"{repeat} runs (a vs b)", "verdict",
                           "offset at its low end", "offset at its high end", "the verdict"],
                          rows, ["l", "l", "l", "l", "l", "l", "l"]),
                  f"{len(rows) - len(unchecked) - len(changed)} of {len(rows) - len(unchecked)} hold at both ends"
                  + (f"; these change: {', '.join(changed)}" if changed else "")
                  + (f". Not checked ({len(unchecked)}; no offset is measured on their metric): "
                     f"{', '.join(unchecked)}" if unchecked else "") + "."]
    return lines + [""]


def _earlier_conclusion(before, after) -> str:
    """Whether an earlier verdict holds in this study."""
    if before.difference is None or after.difference is None:
        return "–"
    text = f"holds ({before.word})" if before.word == after.word else f"**changes**: {before.word} → {after.word}"
    return f"provisional: {text}" if before.provisional or after.provisional else text


def _earlier_section(spec, study: _Study, prefix: str = "", level: str = "##") -> list[str]:
    """The heads' comparisons beside the same ones recomputed from an earlier study's results, on the test
    split: per comparison, each study's Δ with its interval and verdict, and whether the verdict holds."""
    earlier = spec.earlier
    pairs = [(h, spec.reference) for h in spec.heads if h != spec.reference]
    if earlier is None or not pairs:
        return []
    rows = [row for row in read_results(earlier.results) if row.get("kind") == "head"]
    earlier_heads = list(dict.fromkeys(row["name"] for row in rows))
    values = {name: [row.get("test_accuracy") for row in rows if row["name"] == name]
              for name in {*earlier_heads, *(n for pair in pairs for n in pair)}}
    # The earlier verdicts are that study's own: its heads family (every head of it against the reference),
    # not a family of the pairs this study happens to share with it.
    family = [(h, spec.reference) for h in earlier_heads if h != spec.reference]
    found = {(v.a, v.b): v for v in compare_family(values, family, alpha=study.alpha, margin=study.margin)}
    before = [found.get(pair) or compare_family(values, [pair], alpha=study.alpha, margin=study.margin)[0]
              for pair in pairs]
    after = study.family(pairs, "accuracy", "test")
    label = _md(earlier.label)
    lines = [f"{level} {_md(earlier.title)}", ""]
    if earlier.text:
        lines += [earlier.text.strip(), ""]
    lines += [f"Each head − `{_md(spec.reference)}` on test top-1, here and in the {label} study "
              f"(`{_md(earlier.results.name)}`, its `head` rows). The {label} verdicts are that study's own: Holm "
              f"within its heads family ({len(family)} comparisons, every head of it against "
              f"`{_md(spec.reference)}`); this study's, within the family of the {len(pairs)} below; the same "
              "equivalence margin; raw 95 % intervals.", ""]
    header = ["comparison (first − second)", f"n ({label})", f"Δ test, {label} (pp) [95 % CI]",
              f"verdict ({label})", "n (this study)", "Δ test, this study (pp) [95 % CI]", "verdict (this study)",
              f"the {label} verdict"]
    table, items = [], []
    for b, a in zip(before, after):
        cells = [f"`{_md(b.a)}` − `{_md(b.b)}`"]
        for verdict, where in ((b, earlier.label), (a, "this study")):
            d = verdict.difference
            cells += [f"{verdict.n_a} vs {verdict.n_b}",
                      f"{_pp(d.difference)} [{_pp(d.low)}, {_pp(d.high)}]" if d else NOT_SCORED,
                      study.verdict_cell(verdict, split="test")]
            if d:
                items.append({"label": f"{verdict.a} − {verdict.b} ({where})", "difference": 100 * d.difference,
                              "low": 100 * d.low, "high": 100 * d.high, "holm_low": 100 * verdict.holm_low,
                              "holm_high": 100 * verdict.holm_high,
                              "verdict": verdict.marked_word})
        table.append(cells + [_earlier_conclusion(b, a)])
    lines += _table(header, table)
    if items:
        path, rel = study.figure(f"{prefix}earlier-{_slug(earlier.title)}-forest.png")
        plots.plot_forest(items, path, margin=100 * study.margin if study.margin else None,
                          title=f"Heads − {spec.reference}: Δ test top-1, {earlier.label} and this study")
        lines += [f"![{_md(earlier.title)}: forest plot]({rel})", ""]
    return lines


def _included_section(included, study: _Study) -> list[str]:
    """Another study set into this report from its results.jsonl: its heads' tables and verdicts (validation
    and test), and its own [earlier] comparison. Its primary comparison joins this report's headlines."""
    from keras_softmax.study.spec import Planner

    spec = included.spec
    planned = Planner(spec, check_data=False).plan()  # its names; its data need not be here
    planned_ids = {p.run_id for p in planned}
    rows = [row for row in read_results(included.results) if row["run_dir"].split("/", 1)[1] in planned_ids]
    other = _Study(spec, planned, rows, study.out, study.report_path, study.plots_dir)
    other.figures_written = study.figures_written  # one list: the figures this report links
    stem = f"study-{_slug(included.title)}"
    heads = [h for h in spec.heads if other.n(h)]
    reference = spec.reference if other.n(spec.reference) else None
    finished = len({row["run_dir"] for row in rows})
    lines = [f"## {_md(included.title)}", ""]
    if included.text:
        lines += [included.text.strip(), ""]
    kinds = Counter(_gpu(row["device"]) for row in {r["run_dir"]: r for r in rows if r.get("device")}.values())
    gpus = ", ".join(f"{kind} × {n}" for kind, n in sorted(kinds.items()))
    other.offset_section = f"{included.title}, GPU kinds"
    lines += [f"Study `{_md(spec.path.name)}` ({_md(spec.description)}): {finished} of "
              f"{len(planned_ids)} planned runs in `{_md(included.results.name)}`"
              + (f" (GPU: {gpus})" if gpus else "") + ".", ""]
    if not heads:
        return lines + ["No finished runs yet.", ""]
    lines += ["### Accuracy", ""] + other.accuracy_table(heads, reference)
    if reference:
        pairs = [(h, reference) for h in spec.heads if h != reference]
        primary = (spec.primary, reference) if spec.primary and spec.primary != reference else None
        lines += other.verdict_block(included.title, f"{stem}-heads", pairs, primary=primary)
    lines += ["### Calibration and speed", ""] + other.calibration_table(heads) + other.footnotes()
    lines += _earlier_section(spec, other, prefix=f"{stem}-", level="###")
    if len(kinds) > 1:
        by_row: dict[str, dict] = {}
        for row in rows:
            by_row.setdefault(row["name"], {}).setdefault(_gpu(row.get("device")), set()).add(row["run_dir"])
        lines += ["### GPU kinds", "", *_across_kinds(other, by_row)]
    study.headlines += other.headlines
    return lines


def _retrain(out: Path) -> str:
    """How one run of the study is trained again beside the original, from where the study ran (its
    configs name the dataset as the study was given it)."""
    return (f"`keras-softmax train --config {(out / 'configs').as_posix()}/<run>.toml "
            f"--out {(out / 'rerun').as_posix()}/<run>` from the directory the study ran in")


def _reproduce(study: _Study, names: list[str]) -> list[str]:
    """The commands that reproduce a section: the study's own, or each of its runs alone."""
    ids = list(dict.fromkeys(p.run_id for p in study.planned if p.name in names and p.kind != "timing"))
    runs = ", ".join(f"`{run}`" for run in ids)
    return [f"Reproduce: the study command at the top trains these runs with the rest; one alone with "
            f"{_retrain(study.out)}, for `<run>` in {runs}.", ""]


def _headlines(study: _Study) -> list[str]:
    if not study.headlines:
        return []
    rows = []
    for question, val, test, metric, owner in study.headlines:
        scale, digits, unit = ((1, 3, " s") if metric == "steady_epoch_seconds" else (100, 2, " pp"))
        for verdict, split in ((val, "val"), (test, "test")):
            d = verdict.difference
            rows.append([_md(question) if split == "val" else "", f"`{_md(verdict.a)}` − `{_md(verdict.b)}`",
                         "validation" if split == "val" else "test",
                         f"{_pp(d.difference, scale, digits)}{unit} [{_pp(d.low, scale, digits)}, "
                         f"{_pp(d.high, scale, digits)}]" if d else "–",
                         f"[{_pp(verdict.holm_low, scale, digits)}, {_pp(verdict.holm_high, scale, digits)}]"
                         if d else "–",
                         owner.verdict_cell(verdict, metric, split)])
    return ["## Headline verdicts", "",
            "Each question's primary comparison, on the validation split (which chose everything) and on the test "
            "split (scored once per finished run, read by no choice). Details, families and forest plots in each "
            "section.", "",
            *_table(["question", "primary comparison", "split", "Δ [raw 95 % CI]", "Holm-level CI", "verdict"], rows,
                    ["l", "l", "l", "r", "r", "l"])]


def _diverged_section(diverged: list[dict]) -> list[str]:
    """The runs whose training loss became NaN or infinite: settled, kept out of every mean."""
    runs = {}
    for row in diverged:  # one line per run directory (a grid point may share its run with a head row)
        runs.setdefault(row["run_dir"], row)
    if not runs:
        return []
    lines = ["## Diverged", "",
             f"{len(runs)} run(s) stopped because the training loss became NaN or infinite (`failed.json` in the "
             "run directory). That is the outcome of the run's settings, not a fault to retry: the study keeps it "
             "and does not train it again (remove the run directory to retry it). It has no figures, so it is "
             "left out of every mean (its row's n is one less), and in the tuning grid it makes its point the "
             "worst, never chosen while another point trained through, nor is its learning rate for that head "
             "while another rate is left.", ""]
    for run_dir, row in runs.items():
        lines.append(f"- `{_md(row['name'])}` seed {row['seed']} (`{run_dir}`): epoch {row['epoch']}, lr {row['lr']:g}")
    return lines + [""]


def _pending_tuned(spec, rows, diverged=()) -> list[tuple[str, tuple]]:
    """``[(tuned name, seeds)]`` of the tuned rows not planned yet (their head's grid is not complete)."""
    if not spec.tuning:
        return []
    from keras_softmax.study.results import best_points

    best = best_points(spec.tuning, rows, diverged)
    seeds = tuple(spec.tuning.tuned_seeds or spec.seeds)
    return [(f"tuned-{head}", seeds) for head in spec.tuning.heads if head not in best]


def write_study_report(spec, planned, rows=None, out=".", *, command: str = "", report_path=None,
                       plots_dir=None) -> Path:
    """Write the study report of ``planned`` runs from ``rows`` (default: ``out/results.jsonl``).

    Args:
        spec: the :class:`~keras_softmax.study.spec.StudySpec`.
        planned: its planned runs (tuned runs included).
        rows: the results rows; default read from ``out/results.jsonl``.
        out: the study directory (its ``runs/`` are read for curves, confusion and reliability).
        command: the command line that reproduces the study, shown at the top.
        report_path: the Markdown file to write (default ``out/STUDY.md``).
        plots_dir: where the PNGs go (default ``out/plots``); links are relative to the report.

    Returns:
        The report's path.
    """
    out = Path(out)
    rows = read_results(out / "results.jsonl") if rows is None else rows
    report_path = Path(report_path) if report_path else out / "STUDY.md"
    plots_dir = Path(plots_dir) if plots_dir else out / PLOTS_DIR
    diverged = diverged_runs(planned, out)
    study = _Study(spec, planned, rows, out, report_path.resolve(), plots_dir.resolve(), diverged)
    plots_dir.mkdir(parents=True, exist_ok=True)
    planned_ids = {p.run_id for p in planned}
    finished_ids = {r["run_dir"].split("/", 1)[1] for r in rows}
    pending = _pending_tuned(spec, rows, diverged)
    intro = _intro(spec, study, command, planned_ids, finished_ids, pending)

    heads = [h for h in spec.heads if study.n(h)]
    reference = spec.reference if study.n(spec.reference) else None
    lines = [f"## {_md(spec.heads_title)}", "", "### Accuracy", ""]
    lines += study.accuracy_table(heads, reference)
    if reference:
        pairs = [(h, reference) for h in spec.heads if h != reference]
        primary = (spec.primary, reference) if spec.primary and spec.primary != reference else None
        lines += study.verdict_block(spec.heads_title, "heads", pairs, primary=primary)
    lines += ["### Calibration and speed", ""]
    lines += study.calibration_table(heads) + study.footnotes()
    lines += ["### Figures", ""]
    lines += study.curves(heads, "heads", "Heads", reference)
    lines += study.epoch_times(heads, "heads")
    lines += study.confused(heads, "heads")
    lines += study.reliability(heads, "heads")
    lines += _earlier_section(spec, study)

    for section in spec.sections:
        names = [n for n in section.rows if study.n(n)]
        section_reference = section.reference or spec.reference
        stem = _slug(section.title)
        lines += [f"## {_md(section.title)}", ""]
        if section.text:
            lines += [section.text.strip(), ""]
        if not section.rows:
            continue
        pairs = list(section.comparisons) or [(r, section_reference) for r in section.rows if r != section_reference]
        if not names:
            lines += ["No finished runs yet.", ""]
            lines += study.verdict_block(section.title, stem, pairs, section.metric, section.primary)
            continue
        if section.metric != "accuracy":
            lines += study.metric_table(names, section.metric)
            path, rel = study.figure(f"{stem}-answers.png")
            metric = METRIC_TITLES.get(section.metric, section.metric)
            scored = any(study.n_test(n, section.metric) for n in names)
            splits = "validation and test" if scored else "validation"
            plots.plot_answers({n: study.values(n, section.metric) for n in names}, path,
                               test={n: study.values(n, f"test_{section.metric}") for n in names},
                               xlabel=f"{splits} {metric}", title=f"{section.title}: {splits} {metric} per run, "
                                                                  "mean and 95 % interval")
            lines += [f"![{_md(section.title)}: the answers side by side]({rel})", ""]
        else:
            lines += study.accuracy_table(names, section_reference if study.n(section_reference) else None)
        lines += study.verdict_block(section.title, stem, pairs, section.metric, section.primary)
        lines += ["Calibration and speed:", ""] + study.calibration_table(names)
        classes = sorted({row.get("num_classes") for n in names for row in study.by_name[n]} - {None})
        if len(classes) > 1:
            lines += [f"These rows' models have {' and '.join(str(c) for c in classes)} classes: NLL and ECE are "
                      "over each model's own classes, so they do not compare across those counts.", ""]
        lines += study.footnotes()
        if section.metric == "accuracy":
            lines += study.curves(names, stem, section.title,
                                  section_reference if section_reference in names else None)
        else:
            lines += [f"No curves: the question's metric ({METRIC_TITLES.get(section.metric, section.metric)}) is "
                      "not in the runs' per-epoch histories, and their own validation top-1 and NLL are not that "
                      "metric.", ""]
        lines += _reproduce(study, names)

    in_sections = _section_names(spec)
    loose = [v for v in spec.variants if v.name not in in_sections and study.n(v.name)]
    if loose:
        lines += ["## Variants", ""]
        for group in dict.fromkeys(v.group for v in loose):
            members = [v.name for v in loose if v.group == group]
            if group:
                lines += [f"### {_md(group)}", ""]
            compare = {v.compare_to for v in loose if v.group == group and v.compare_to}
            group_reference = compare.pop() if len(compare) == 1 else spec.reference
            lines += study.accuracy_table(members, group_reference if study.n(group_reference) else None)
            lines += ["Calibration and speed:", ""] + study.calibration_table(members) + study.footnotes()

    lines += _superclass_rows(study)
    for included in spec.studies:
        lines += _included_section(included, study)
    if spec.tuning:
        lines += _tuning_section(spec, study)
    lines += _claims_section(spec, study, command)
    lines += _provenance_section(spec, study, planned)

    lines += ["## Runs", "",
              f"Each run is an ordinary run directory (`report.md` inside); retrain one alone with "
              f"{_retrain(out)}.", ""]
    header = ["name", "seed", "run directory", "top-1 (%)", "test top-1 (%)", "GPU", "wall (s)"]
    table_rows = [[f"`{_md(r['name'])}`", str(r["seed"]), f"`{r['run_dir']}`",
                   f"{100 * r['accuracy']:.2f}" if r.get("accuracy") is not None else "–",
                   f"{100 * r['test_accuracy']:.2f}" if r.get("test_accuracy") is not None else NOT_SCORED,
                   _gpu(r.get("device")),
                   f"{r['wall_seconds']:.1f}" if r.get("wall_seconds") is not None else "–"] for r in rows]
    lines += _table(header, table_rows, ["l", "r", "l", "r", "r", "l", "r"])
    missing = planned_ids - finished_ids - study.diverged_ids
    by_name: dict[str, list[int]] = {}
    for p in planned:
        label = f"timing run of `{_md(p.name)}`" if p.kind == "timing" else f"`{_md(p.name)}`"
        if p.run_id in missing and p.seed not in by_name.get(label, []):
            by_name.setdefault(label, []).append(p.seed)
    if missing or pending:
        lines += ["## Not finished", "",
                  f"{len(missing)} planned run(s) not trained yet, interrupted, or failed (see `logs/<run>.log`); the "
                  "same command continues:", "",
                  *(f"- {name}: seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in sorted(seeds))}"
                    for name, seeds in by_name.items()), ""]
        if pending:
            lines += [f"{sum(len(seeds) for _, seeds in pending)} tuned run(s) are not planned yet: each head's "
                      "best setting is chosen once its tuning grid is complete, and the same command then trains "
                      "it:", "",
                      *(f"- `{_md(name)}`: seeds {', '.join(str(s) for s in seeds)}" for name, seeds in pending), ""]
    lines += _diverged_section(diverged)
    text = "\n".join(intro + _headlines(study) + lines).rstrip() + "\n"
    return write_text(report_path, text)
