"""STUDY.md: the comparison for people, built only from results.jsonl and the run directories.

Every number is computed here from the rows (:mod:`.results`, copied from each run's
``report.json``) and every figure from the runs' ``history.csv`` and ``report.json``: nothing is
typed by hand, so re-running ``keras-softmax study ... --report-only`` reproduces the file.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np

from keras_softmax.cifar100 import COARSE_NAMES, FINE_TO_COARSE
from keras_softmax.io import write_text
from keras_softmax.study import plots
from keras_softmax.study.results import read_results
from keras_softmax.study.stats import summarize, welch_interval

__all__ = ["format_difference", "format_summary", "write_study_report"]

PLOTS_DIR = "plots"
# (row key, column title, scale, digits)
ACCURACY_COLUMNS = (
    ("accuracy", "top-1 (%)", 100, 2),
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
)
SPEED_COLUMNS = (
    ("steady_epoch_seconds", "epoch (s)", 1, 3),
    ("images_per_second", "images/s", 1, 0),
)


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


def _verdict(a, b) -> str:
    d = welch_interval(a, b)
    if d is None:
        return "untested"
    if d.low > 0:
        return "better"
    if d.high < 0:
        return "worse"
    return "indistinguishable"


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows, align=None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


class _Study:
    """The rows grouped by name, and what the tables and plots need of the run directories."""

    def __init__(self, spec, planned, rows, out: Path, report_path: Path, plots_dir: Path):
        self.spec, self.out = spec, out
        self.report_path, self.plots_dir = report_path, plots_dir
        self.rows = [row for row in rows if row.get("kind") != "timing"]
        self.by_name: dict[str, list[dict]] = {}
        self.timing_by_name: dict[str, list[dict]] = {}  # timing runs: speed figures only
        for row in rows:
            group = self.timing_by_name if row.get("kind") == "timing" else self.by_name
            group.setdefault(row["name"], []).append(row)
        self.names = list(dict.fromkeys(p.name for p in planned))
        self.planned = planned
        self.compare_to = {p.name: p.compare_to for p in planned if p.compare_to}
        self._reports: dict[str, dict] = {}
        self.notes: dict[str, str] = {}
        self.shared_timing = False

    def figure(self, filename: str) -> tuple[Path, str]:
        """Where a plot is written, and its link relative to the report."""
        path = self.plots_dir / filename
        return path, Path(os.path.relpath(path, self.report_path.parent)).as_posix()

    def values(self, name: str, key: str) -> list:
        return [row.get(key) for row in self.by_name.get(name, [])]

    def n(self, name: str) -> int:
        return len(self.by_name.get(name, []))

    def timings(self, name: str, key: str) -> list:
        """``key`` of the timing runs of ``name`` if it has any, else of its runs that had their device
        to themselves (see ``runs_per_device``)."""
        if self.timing_by_name.get(name):
            return [row.get(key) for row in self.timing_by_name[name]]
        return [row.get(key) for row in self.by_name.get(name, []) if row.get("runs_sharing_device", 1) == 1]

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

    # ------------------------------------------------------------------------------------------ tables

    def accuracy_table(self, names, reference: str | None) -> list[str]:
        header = ["run", "n", *(title for _, title, _, _ in ACCURACY_COLUMNS)]
        if reference:
            header.append(f"Δ top-1 vs `{reference}` (pp, 95 % CI)")
        rows = []
        for name in names:
            cells = [f"`{_md(name)}`", str(self.n(name))]
            cells += [format_summary(self.values(name, key), scale, digits)
                      for key, _, scale, digits in ACCURACY_COLUMNS]
            if reference:
                if name == reference:
                    cells.append("reference")
                else:
                    cells.append(format_difference(self.values(name, "accuracy"), self.values(reference, "accuracy")))
            rows.append(cells)
        return _table(header, rows)

    def calibration_table(self, names) -> list[str]:
        header = ["run", "n", *(t for _, t, _, _ in CALIBRATION_COLUMNS), *(t for _, t, _, _ in SPEED_COLUMNS)]
        rows = []
        for name in names:
            cells = [f"`{_md(name)}`", str(self.n(name))]
            applicable = [r.get("calibration_applicable") for r in self.by_name.get(name, [])]
            for key, _, scale, digits in CALIBRATION_COLUMNS:
                if key in ("ece_after", "ece_after_crossfit", "temperature") and applicable and not any(applicable):
                    cells.append("n/a¹")
                    reason = next((r.get("calibration_reason") for r in self.by_name[name]
                                   if r.get("calibration_reason")), "")
                    self.notes[reason.split(":")[0]] = reason
                else:
                    cells.append(format_summary(self.values(name, key), scale, digits))
            timed = self.timings(name, "steady_epoch_seconds")
            cells += [format_summary(self.timings(name, key), scale, digits) for key, _, scale, digits in SPEED_COLUMNS]
            if len(timed) < self.n(name):
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
                      "for accuracy, not for speed. n is the number of runs behind the speed figures.", ""]
            self.shared_timing = False
        if not self.notes:
            return lines
        lines += ["¹ No temperature for these heads:", ""]
        lines += [f"- {_md(reason)}" for reason in self.notes.values()]
        self.notes = {}
        return lines + [""]

    # ------------------------------------------------------------------------------------------ plots

    def curves(self, names, stem: str, title: str) -> list[str]:
        lines = []
        for key, label, percent in (("val_loss", "validation loss", False),
                                    ("val_accuracy", "validation top-1", True)):
            series = {name: [self.history(r["run_dir"], key) for r in self.by_name.get(name, [])] for name in names}
            if not any(any(runs) for runs in series.values()):
                continue
            path, rel = self.figure(f"{stem}-{key}.png")
            plots.plot_mean_curves(series, path, ylabel=label, percent=percent,
                                   title=f"{title}: {label}, mean over seeds (band: min to max)")
            lines += [f"![{title}: {label}]({rel})", ""]
        return lines

    def confusion(self, names, stem: str) -> list[str]:
        matrices, mapped, class_names = {}, False, None
        for name in names:
            pooled = None
            for row in self.by_name.get(name, []):
                report = self.report(row["run_dir"])
                if report.get("confusion_matrix") is None:
                    continue
                cm = np.asarray(report["confusion_matrix"], dtype=np.float64)
                table = report.get("fine_to_coarse")
                if table is None and len(cm) == len(FINE_TO_COARSE) and row.get("labels") != "coarse":
                    table = list(FINE_TO_COARSE)
                if table is not None:
                    cm, mapped = plots.superclass_confusion(cm, table), True
                elif len(cm) > 20:
                    continue  # unreadable at this size, and no superclasses to sum into
                pooled = cm if pooled is None else pooled + cm
                if len(cm) == len(COARSE_NAMES):
                    class_names = list(COARSE_NAMES)
                elif class_names is None:
                    class_names = [str(c.get("name")) for c in report.get("per_class") or []] or None
            if pooled is not None:
                matrices[name] = pooled
        if not matrices:
            return []
        shapes = {m.shape for m in matrices.values()}
        if len(shapes) > 1:
            return []
        what = "the superclasses (fine predictions summed into their superclass)" if mapped else "the classes"
        path, rel = self.figure(f"{stem}-confusion.png")
        plots.plot_confusion_grid(matrices, path, class_names=class_names,
                                  title=f"Row-normalised confusion over {what}, pooled over seeds")
        return [f"![confusion matrices]({rel})", ""]

    def reliability(self, names, stem: str) -> list[str]:
        bins, captions = {}, {}
        for name in names:
            lists = [self.report(r["run_dir"]).get("reliability") for r in self.by_name.get(name, [])]
            lists = [b for b in lists if b]
            if lists:
                bins[name] = plots.pool_reliability(lists)
                after = summarize(self.values(name, "ece_after"))
                if after.n:
                    captions[name] = f", after T {100 * after.mean:.1f}%"
        if not bins:
            return []
        path, rel = self.figure(f"{stem}-reliability.png")
        plots.plot_reliability_grid(bins, path, captions=captions)
        return [f"![reliability diagrams]({rel})", ""]

    def epoch_times(self, names, stem: str) -> list[str]:
        times = {name: self.timings(name, "steady_epoch_seconds") for name in names}
        times = {name: values for name, values in times.items() if values}
        if not times:
            return []
        path, rel = self.figure(f"{stem}-epoch_time.png")
        plots.plot_epoch_times(times, path)
        return [f"![epoch time]({rel})", ""]


def _intro(spec, study: _Study, command: str, planned_ids: set, finished_ids: set) -> list[str]:
    title = spec.description or f"Study {spec.path.stem}"
    seeds = ", ".join(str(s) for s in spec.seeds)
    datasets = sorted({str(r.get("dataset")) for r in study.rows if r.get("dataset")})
    devices = sorted({str(r.get("device")) for r in study.rows if r.get("device")})
    backends = sorted({str(r.get("backend")) for r in study.rows if r.get("backend")})
    lines = [f"# {_md(title)}", "",
             "Generated by `keras-softmax study` from `results.jsonl` and the run directories; every number and "
             "figure below is recomputed from them (`--report-only` rebuilds this file).", "",
             "```bash", command, "```", "",
             f"- spec: `{spec.path}`; seeds {seeds}; reference `{spec.reference}`",
             f"- runs: {len(finished_ids)} of {len(planned_ids)} finished"
             + (f" (see *Not finished* below)" if len(finished_ids) < len(planned_ids) else ""),
             f"- data: {', '.join(datasets) or '–'}; backend {', '.join(backends) or '–'}; "
             f"device {', '.join(devices) or '–'}",
             "", "## How to read it", "",
             "- Every figure is on the **validation split** (held out from the training images; there is no test "
             "split here). Cells are the **mean ± sample standard deviation** (ddof = 1) over seeds; `n` is the "
             "number of runs behind the row. With n = 1 there is no spread and no interval.",
             "- A seed fixes the initialisation, the data order and augmentation, **and which images form the "
             "validation split**, so the spread includes the split's.",
             "- Δ is a difference of means in percentage points with a **95 % Welch t-interval** "
             "(unequal variances, Welch–Satterthwaite degrees of freedom) on the per-seed values, treating "
             "the two rows' seeds as independent samples. An interval that contains 0 means the seeds cannot "
             "tell the two apart.",
             "- NLL is the mean −log p(true class) with p floored at 1e-12 (not the training loss, which for "
             "sparsemax and entmax15 is their Fenchel–Young loss). ECE: 15 equal-width confidence bins.",
             "- Temperature scaling (Guo et al. 2017): one T per run fit by minimising the NLL on the validation "
             "split and **measured on the same split** (optimistic); the *cross-fitted* column fits T on one "
             "random half and measures on the other, both ways, which is the honest figure.",
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
              "superclass top-1, superclass of the argmax (%)"]
    rows = []
    for name in names:
        first = study.by_name[name][0]
        rows.append([f"`{_md(name)}`", str(first.get("labels")), str(first.get("num_classes")), str(study.n(name)),
                     format_summary(study.values(name, "coarse_accuracy"), 100, 2),
                     format_summary(study.values(name, "coarse_accuracy_mapped"), 100, 2)])
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


def _tuning_section(spec, study: _Study) -> list[str]:
    from keras_softmax.study.results import best_points
    from keras_softmax.study.spec import tune_name

    tuning = spec.tuning
    points = tuning.points()
    best = best_points(tuning, study.rows)
    labels = [", ".join(f"{k}={v}" for k, v in p.items()) for p in points]
    lines = ["## Per-head tuning", "",
             f"Every head in the same grid of {len(points)} settings ({' × '.join(tuning.grid)}), on seed(s) "
             f"{', '.join(str(s) for s in tuning.seeds)}; the best by validation {tuning.metric} is then trained on "
             f"every seed ({', '.join(str(s) for s in spec.seeds)}) as `tuned-<head>`. The setting is chosen on the "
             "same validation split the tuned table reports, so those figures are optimistic by the selection "
             f"(the best of {len(points)} points on one split; small, but not zero); the shared-recipe table has no "
             "such bias.", ""]
    header = ["head", *[f"{_md(l)}" for l in labels], "best"]
    rows = []
    for head in tuning.heads:
        cells = [f"`{head}`"]
        for point in points:
            cells.append(format_summary(study.values(tune_name(head, point), tuning.metric), 100, 2))
        chosen = best.get(head)
        cells.append(_md(", ".join(f"{k}={v}" for k, v in chosen.items())) if chosen else "grid unfinished")
        rows.append(cells)
    lines += [f"Grid, validation {tuning.metric} (%):", "", *_table(header, rows)]
    edges = _grid_edges(tuning, best)
    if edges:
        lines += ["", "**The best setting is at the edge of the grid** for " + "; ".join(edges)
                  + ": the optimum may lie outside it, so widen that axis before reading the tuned table as "
                  "each head's best.", ""]

    tuned = [f"tuned-{h}" for h in tuning.heads if study.n(f"tuned-{h}")]
    if tuned:
        reference = f"tuned-{spec.reference}" if spec.reference in tuning.heads else spec.reference
        lines += ["Each head at its best setting:", ""]
        lines += study.accuracy_table(tuned, reference if study.n(reference) else None)
        lines += study.calibration_table(tuned) + study.footnotes()
        header = ["head", "shared recipe top-1 (%)", "tuned top-1 (%)", "Δ tuned − shared (pp, 95 % CI)",
                  f"vs `{spec.reference}`, shared", f"vs `{spec.reference}`, tuned", "conclusion"]
        rows, changed = [], []
        for head in tuning.heads:
            shared, mine = study.values(head, "accuracy"), study.values(f"tuned-{head}", "accuracy")
            if not study.n(f"tuned-{head}"):
                continue
            v_shared = (_verdict(shared, study.values(spec.reference, "accuracy"))
                        if head != spec.reference else "reference")
            v_tuned = (_verdict(mine, study.values(reference, "accuracy"))
                       if f"tuned-{head}" != reference else "reference")
            if "untested" in (v_shared, v_tuned):
                conclusion = "not known yet (fewer than 2 runs)"
            elif v_shared == v_tuned:
                conclusion = "same"
            else:
                conclusion = "**changes**"
                changed.append(f"`{head}`: {v_shared} → {v_tuned}")
            rows.append([f"`{head}`", format_summary(shared, 100, 2), format_summary(mine, 100, 2),
                         format_difference(mine, shared), v_shared, v_tuned, conclusion])
        lines += ["Shared recipe against per-head tuning (\"better\"/\"worse\": the 95 % interval of the "
                  f"difference to `{spec.reference}` excludes 0):", "", *_table(header, rows)]
        ranked_shared = sorted(tuning.heads, key=lambda h: -(summarize(study.values(h, "accuracy")).mean or -1))
        ranked_tuned = sorted(tuning.heads,
                              key=lambda h: -(summarize(study.values(f"tuned-{h}", "accuracy")).mean or -1))
        lines += [f"- Ranking by mean top-1, shared recipe: {', '.join(f'`{h}`' for h in ranked_shared)}",
                  f"- Ranking by mean top-1, tuned per head: {', '.join(f'`{h}`' for h in ranked_tuned)}",
                  "- Conclusions that change with tuning: " + ("; ".join(changed) if changed else "none"), ""]
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
    study = _Study(spec, planned, rows, out, report_path.resolve(), plots_dir.resolve())
    plots_dir.mkdir(parents=True, exist_ok=True)
    planned_ids = {p.run_id for p in planned}
    finished_ids = {r["run_dir"].split("/", 1)[1] for r in rows}
    lines = _intro(spec, study, command, planned_ids, finished_ids)

    heads = [h for h in spec.heads if study.n(h)]
    reference = spec.reference if study.n(spec.reference) else None
    lines += ["## Heads, shared recipe", "", "### Accuracy", ""]
    lines += study.accuracy_table(heads, reference)
    lines += ["### Calibration and speed", ""]
    lines += study.calibration_table(heads) + study.footnotes()
    lines += ["### Figures", ""]
    lines += study.curves(heads, "heads", "Heads")
    lines += study.epoch_times(heads, "heads")
    lines += study.confusion(heads, "heads")
    lines += study.reliability(heads, "heads")

    for section in spec.sections:
        names = [n for n in section.rows if study.n(n)]
        section_reference = section.reference or spec.reference
        lines += [f"## {_md(section.title)}", ""]
        if section.text:
            lines += [section.text.strip(), ""]
        if not section.rows:
            continue
        if not names:
            lines += ["No finished runs yet.", ""]
            continue
        lines += study.accuracy_table(names, section_reference if study.n(section_reference) else None)
        lines += ["Calibration and speed:", ""] + study.calibration_table(names) + study.footnotes()
        lines += study.curves(names, _slug(section.title), section.title)
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
    if spec.tuning:
        lines += _tuning_section(spec, study)

    lines += ["## Runs", "",
              f"Each run is an ordinary run directory (`report.md` inside); retrain one alone with "
              f"{_retrain(out)}.", ""]
    header = ["name", "seed", "run directory", "top-1 (%)", "wall (s)"]
    table_rows = [[f"`{_md(r['name'])}`", str(r["seed"]), f"`{r['run_dir']}`",
                   f"{100 * r['accuracy']:.2f}" if r.get("accuracy") is not None else "–",
                   f"{r['wall_seconds']:.1f}" if r.get("wall_seconds") is not None else "–"] for r in rows]
    lines += _table(header, table_rows, ["l", "r", "l", "r", "r"])
    missing = sorted(planned_ids - finished_ids)
    if missing:
        lines += ["## Not finished", "",
                  "Not trained yet, interrupted, or failed (see `logs/<run>.log`); the same command continues:", "",
                  *(f"- `runs/{run_id}`" for run_id in missing), ""]
    return write_text(report_path, "\n".join(lines).rstrip() + "\n")
