"""``results.jsonl``: one row per finished run of a study, copied from the run's own ``report.json``.

A row holds ``name`` (head or variant), ``kind``, ``head``, ``seed``, ``run_dir`` (relative to the
study directory), what distinguishes the run (``settings``, ``loss_pairing``, ``labels``, ``lr``,
``label_smoothing``, ``head_params``), the report's figures (:data:`FIGURES`), the calibration
figures and, where the run's data had a fine->coarse map, the superclass accuracy; where the run was
scored on the test split (``test.json``, :mod:`.testsplit`), the same figures as ``test_<key>``
(:data:`TEST_FIGURES`), else none of them. Two rows may share
a ``run_dir`` when their settings resolve to the same run (e.g. the tuning grid point that is the
shared recipe).
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_softmax.io import write_text

TEST_FILE = "test.json"  # written by keras_softmax.study.testsplit (kept free of its imports here)

__all__ = ["FIGURES", "TEST_FIGURES", "best_points", "collect", "diverged_runs", "read_placements", "read_results",
           "unstable_learning_rates", "write_results"]

#: The report figures every row carries (GUIDE §6 keys and the timing summary).
FIGURES = ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "loss", "ece",
           "steady_epoch_seconds", "images_per_second", "wall_seconds")
_EXTRA = ("epochs", "train_seconds", "compile_seconds", "num_params", "dataset", "backend", "device", "precision")
#: The test split's figures, copied from ``test.json`` as ``test_<key>``.
TEST_FIGURES = ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "ece",
                "ece_val_temperature", "coarse_accuracy", "coarse_accuracy_mapped", "num_examples")
_CALIBRATION = ("nll_before", "nll_after", "ece_after", "nll_after_crossfit", "ece_after_crossfit", "temperature")


#: ``{run id: runs that shared its device}`` in the study directory, written by the runner.
PLACEMENTS = "placements.json"
RUN_PLACEMENT = "placement.json"  # the same fact inside each run directory


def row_for(planned, report: dict, runs_sharing_device: int = 1, test: dict | None = None) -> dict:
    """The results row of ``planned`` (a :class:`~keras_softmax.study.spec.PlannedRun`) from its report
    (and its test-split figures ``test``, where it has been scored)."""
    config = planned.config
    row = {
        "name": planned.name, "kind": planned.kind, "group": planned.group, "head": config.head,
        "seed": planned.seed, "run_dir": f"runs/{planned.run_id}", "settings": planned.settings,
        "loss_pairing": config.loss, "labels": config.labels, "lr": config.lr,
        "label_smoothing": config.label_smoothing, "head_params": dict(config.head_params),
    }
    for key in FIGURES + _EXTRA:
        row[key] = report.get(key)
    calibration = report.get("calibration") or {}
    row["nll"] = calibration.get("nll_before")
    row["calibration_applicable"] = calibration.get("applicable")
    if calibration.get("applicable") is False:
        row["calibration_reason"] = calibration.get("reason")
    for key in _CALIBRATION[1:]:
        row[key] = calibration.get(key)
    row["num_classes"] = report.get("num_classes")
    row["runs_sharing_device"] = runs_sharing_device  # > 1: its timings are not the head's alone
    if config.labels == "coarse":  # a model of the superclasses: its accuracy is the superclass accuracy
        row["coarse_accuracy"] = row["coarse_accuracy_mapped"] = report.get("accuracy")
    else:
        row["coarse_accuracy"] = report.get("coarse_accuracy")
        row["coarse_accuracy_mapped"] = report.get("coarse_accuracy_mapped")
    if test:
        for key in TEST_FIGURES:
            row[f"test_{key}"] = test.get(key)
        if config.labels == "coarse":
            row["test_coarse_accuracy"] = row["test_coarse_accuracy_mapped"] = test.get("accuracy")
    return row


def collect(planned_runs, out) -> list[dict]:
    """The rows of every finished planned run, in plan order (unfinished runs are skipped)."""
    rows, sharing = [], read_placements(out)
    for planned in planned_runs:
        run = Path(out) / "runs" / planned.run_id
        if (run / "report.json").is_file():
            report = json.loads((run / "report.json").read_text(encoding="utf-8"))
            test_path = run / TEST_FILE
            test = json.loads(test_path.read_text(encoding="utf-8")) if test_path.is_file() else None
            rows.append(row_for(planned, report, _runs_sharing_device(run, sharing.get(planned.run_id, 1)), test))
    return rows


def diverged_runs(planned_runs, out) -> list[dict]:
    """One row per planned run that diverged (``RunDirectory.diverged``), in plan order, as :func:`collect`
    gives one per finished run (two planned runs may share a run directory): ``name``, ``kind``, ``seed``,
    ``run_dir``, the epoch it stopped in and its ``lr`` setting (the schedule's rate where it stopped, which
    failed.json also holds, may be a warm-up's or the decay's end). Such a run has no figures, so
    :func:`collect` has no row of it; the study keeps it as its settings' outcome."""
    from keras_softmax.training.rundir import RunDirectory

    rows = []
    for planned in planned_runs:
        failed = RunDirectory(Path(out) / "runs" / planned.run_id).diverged
        if failed is not None:
            rows.append({"name": planned.name, "kind": planned.kind, "seed": planned.seed,
                         "run_dir": f"runs/{planned.run_id}", "epoch": failed.get("epoch"), "lr": planned.config.lr})
    return rows


def _runs_sharing_device(run: Path, default: int) -> int:
    """What the run directory says (it travels with the run), else the study's placements.json."""
    path = run / RUN_PLACEMENT
    if path.is_file():
        return int(json.loads(path.read_text(encoding="utf-8"))["runs_sharing_device"])
    return default


def read_placements(out) -> dict:
    """``{run id: runs that shared its device when it trained}``; runs not listed had theirs alone."""
    path = Path(out) / PLACEMENTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_results(rows, path) -> Path:
    """Write ``rows`` as JSON lines, atomically."""
    return write_text(path, "".join(json.dumps(row, sort_keys=False) + "\n" for row in rows))


def read_results(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def best_points(tuning, rows, diverged=()) -> dict:
    """Each tuned head's best grid point by ``tuning.metric`` (mean over the grid seeds that finished).

    A head is left out until every one of its grid points has a finished run on every grid seed, so
    that the choice never depends on which runs happened to finish first. Ties go to the earlier point.
    A grid run that diverged (``diverged``: :func:`diverged_runs`) counts as finished with a score of
    -inf: its point is settled and never chosen while any point trained through (where every point
    diverged, the first is chosen, as in any tie, and its tuned runs say what it does). Nor is any point
    at a learning rate where one of the head's grid runs diverged (:func:`unstable_learning_rates`), while
    another rate is left: its tuned runs train on seeds the grid never saw, and a rate that diverged
    once, at whatever other setting, is at the edge of what the head trains through.
    """
    from keras_softmax.study.spec import tune_name

    by_name: dict[str, list[float]] = {}
    for row in rows:
        if row["kind"] == "tune" and row.get(tuning.metric) is not None:
            by_name.setdefault(row["name"], []).append(float(row[tuning.metric]))
    for row in diverged:
        if row["kind"] == "tune":
            by_name.setdefault(row["name"], []).append(float("-inf"))
    best = {}
    for head in tuning.heads:
        scores = []
        for point in tuning.points():
            values = by_name.get(tune_name(head, point), [])
            if len(values) < len(tuning.seeds):
                break
            scores.append((sum(values) / len(values), point))
        else:
            unstable = unstable_learning_rates(tuning, head, diverged)
            stable = [item for item in scores if item[1].get("lr") not in unstable] or scores
            best[head] = max(stable, key=lambda item: item[0])[1]  # max keeps the first of equal scores
    return best


def unstable_learning_rates(tuning, head: str, diverged=()) -> set:
    """The grid's learning rates (its ``lr`` axis) at which a grid run of ``head`` diverged."""
    from keras_softmax.study.spec import tune_name

    failed = {row["name"] for row in diverged if row["kind"] == "tune"}
    return {point["lr"] for point in tuning.points() if "lr" in point and tune_name(head, point) in failed}
