"""A run's report: ``report.json`` for tools, ``report.md`` for people, and the plots both point to.

The ``report.json`` keys in :data:`REQUIRED_KEYS` are a contract (GUIDE §6): ``keras-softmax compare``,
the zoo tables and users' scripts read them. Everything is written atomically, so a crash or a
concurrent reader never sees a half-written report.

>>> report = write_report("runs/demo", {**metrics, "loss": 1.23, ...}, history=history)  # doctest: +SKIP
>>> read_report("runs/demo")["accuracy"]  # doctest: +SKIP
0.6123
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


from keras_softmax.evaluation import plots as _plots
from keras_softmax.evaluation.numbers import fixed
from keras_softmax.io import to_jsonable, write_json, write_text

__all__ = ["REQUIRED_KEYS", "read_report", "to_jsonable", "write_report"]

REQUIRED_KEYS = (
    "accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "loss", "ece",
    "epoch_seconds", "train_seconds", "images_per_second", "num_params", "head", "head_params", "dataset",
    "split", "seed",
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
_PLOT_FILES = {
    "loss_curve": "loss_curve.png",
    "accuracy_curve": "accuracy_curve.png",
    "confusion_matrix": "confusion_matrix.png",
    "reliability": "reliability.png",
}


def _class_names(report: dict, class_names) -> list[str] | None:
    """Class names for the plots and the per-class table: the argument, else the report's per_class names."""
    num_classes = None
    if report.get("confusion_matrix") is not None:
        num_classes = len(report["confusion_matrix"])
    elif report.get("per_class") is not None:
        num_classes = len(report["per_class"])
    if class_names is not None:
        names = [str(n) for n in class_names]
        if num_classes is not None and len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} names but the report has {num_classes} classes")
        return names
    if report.get("per_class"):
        return [str(row.get("name", i)) for i, row in enumerate(report["per_class"])]
    return None


def write_report(run_dir, report: dict, *, history: dict | None = None, class_names=None) -> dict:
    """Write ``report.json``, ``report.md`` and ``plots/`` into ``run_dir``.

    Args:
        run_dir: the run directory (created if needed).
        report: the metrics (e.g. :func:`~keras_softmax.evaluation.compute_metrics` output) plus the run's
            facts; must hold every key in :data:`REQUIRED_KEYS`. Optional keys used when present:
            ``confusion_matrix``, ``reliability``, ``per_class``, ``num_examples``, ``compile_seconds``,
            ``split_sizes``, ``backend``, ``device``, ``versions``. Not modified.
        history: per-epoch lists (``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``; ``None`` entries
            are gaps) for the curves. A curve whose train and validation series hold no finite value
            is skipped (and absent from ``plots``) rather than failing the report.
        class_names: names for the confusion-matrix axes and the per-class table (default: the names in
            ``report["per_class"]``).

    Returns:
        The report as written to ``report.json``: JSON types only, plus ``plots``, a dict from plot kind
        (``loss_curve``, ``accuracy_curve``, ``confusion_matrix``, ``reliability``) to its path relative
        to ``run_dir`` (e.g. ``"plots/loss_curve.png"``), for the plots that were made.

    Raises:
        ValueError: a required key is missing, ``history`` is not a dict, or ``class_names`` does not fit.
    """
    if not isinstance(report, dict):
        raise ValueError(f"report must be a dict, got {type(report).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in report]
    if missing:
        raise ValueError(f"report is missing required keys: {', '.join(missing)}")
    data = to_jsonable(report)
    if data["epoch_seconds"] is not None and not isinstance(data["epoch_seconds"], list):
        raise ValueError(f"report['epoch_seconds'] must be a list of per-epoch seconds (or None), "
                         f"got {data['epoch_seconds']!r}")
    names = _class_names(data, class_names)
    if names is not None and data.get("per_class"):
        for row, name in zip(data["per_class"], names):
            row["name"] = name
    if history is not None:
        if not isinstance(history, dict):
            raise ValueError(f"history must be a dict of per-epoch lists, got {type(history).__name__}")
        history = to_jsonable(history, "history")

    run_dir = Path(run_dir)
    plot_dir = run_dir / PLOTS_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def rel(kind: str) -> str:
        return f"{PLOTS_DIR}/{_PLOT_FILES[kind]}"

    # A curve is drawn only when its series has data: a report at the end of a long run must not fail
    # because, say, no accuracy metric was tracked or the history is empty after a resume.
    for key, kind in (("loss", "loss_curve"), ("accuracy", "accuracy_curve")):
        if history is not None and _plots.has_curve_data(history, key):
            _plots.plot_curve(history, key, run_dir / rel(kind))
            made[kind] = rel(kind)
    if data.get("confusion_matrix") is not None:
        _plots.plot_confusion_matrix(data["confusion_matrix"], names, run_dir / rel("confusion_matrix"))
        made["confusion_matrix"] = rel("confusion_matrix")
    if data.get("reliability"):
        _plots.plot_reliability(data["reliability"], run_dir / rel("reliability"),
                                title=f"{data['head']} on {data['dataset']}")
        made["reliability"] = rel("reliability")

    data["plots"] = made
    write_json(run_dir / REPORT_JSON, data)
    write_text(run_dir / REPORT_MD, render_markdown(data, run_name=run_dir.resolve().name))
    return data


def read_report(run_dir) -> dict:
    """Load ``report.json`` from a run directory (or from the path of the file itself)."""
    path = Path(run_dir)
    if path.suffix.lower() != ".json":
        path = path / REPORT_JSON
    if not path.is_file():
        where = path.parent
        hint = "" if where.is_dir() else " (the directory does not exist)"
        raise FileNotFoundError(f"no {REPORT_JSON} in {where}{hint}; is it a finished run directory?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


# --------------------------------------------------------------------------------------------- markdown


def _pct(value) -> str:
    return "n/a" if value is None else f"{fixed(100 * float(value), 2)}%"


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else fixed(value, digits)


def _md(text) -> str:
    """Escape a value for a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _format_split(split) -> str:
    if isinstance(split, dict):
        return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in split.items())
    return str(split)


def _format_params(params) -> str:
    if isinstance(params, dict):
        return ", ".join(f"`{k}={v}`" for k, v in params.items()) or "defaults"
    return "defaults" if params in (None, "") else f"`{params}`"


def _timing_rows(data: dict) -> list[list[str]]:
    seconds = [float(s) for s in data.get("epoch_seconds") or [] if s is not None]
    rows = [["epochs", str(len(seconds))]]
    if len(seconds) > 1:
        steady = seconds[1:]
        rows.append([f"epoch seconds, steady state (epochs 2–{len(seconds)}), mean",
                     f"{statistics.fmean(steady):.2f} s"])
        rows.append(["epoch seconds, steady state, median", f"{statistics.median(steady):.2f} s"])
        rows.append(["first epoch (includes compilation)", f"{seconds[0]:.2f} s"])
    elif seconds:
        rows.append(["epoch seconds (one epoch, includes compilation)", f"{seconds[0]:.2f} s"])
    if data.get("compile_seconds") is not None:
        rows.append(["compile seconds", f"{float(data['compile_seconds']):.2f} s"])
    if data.get("images_per_second") is not None:
        rows.append(["images / second", f"{float(data['images_per_second']):,.0f}"])
    if data.get("train_seconds") is not None:
        rows.append(["train seconds (total)", f"{float(data['train_seconds']):.1f} s"])
    return rows


def _calibration_rows(calibration) -> list[list[str]]:
    """Rows of the temperature-scaling figures (``report["calibration"]``), if any."""
    if not isinstance(calibration, dict):
        return []
    if not calibration.get("applicable"):
        return [["temperature scaling", _md(f"not applicable: {calibration.get('reason', '')}")]]
    return [
        ["temperature T (fit on this split by NLL)", _num(calibration.get("temperature"), 3)],
        ["NLL before → after temperature scaling",
         f"{_num(calibration.get('nll_before'))} → {_num(calibration.get('nll_after'))}"],
        ["ECE after temperature scaling (same split)", _pct(calibration.get("ece_after"))],
        ["ECE after temperature scaling (2-fold cross-fitted)", _pct(calibration.get("ece_after_crossfit"))],
    ]


def render_markdown(data: dict, *, run_name: str | None = None) -> str:
    """The ``report.md`` text for a (JSON-able) report dict with ``plots`` filled in."""
    head, dataset = data.get("head", "?"), data.get("dataset", "?")
    lines = [f"# `{head}` on {dataset}", ""]
    if run_name:
        lines += [f"Run `{_md(run_name)}`; split: {_md(_format_split(data.get('split')))}.", ""]

    lines += ["## Results", ""]
    summary = [
        ["accuracy", _pct(data.get("accuracy"))],
        ["top-5 accuracy", _pct(data.get("top5_accuracy"))],
        ["precision (macro)", _pct(data.get("precision_macro"))],
        ["recall (macro)", _pct(data.get("recall_macro"))],
        ["F1 (macro)", _pct(data.get("f1_macro"))],
        ["expected calibration error", _pct(data.get("ece"))],
        ["loss", _num(data.get("loss"))],
    ]
    if data.get("coarse_accuracy") is not None:
        summary.append(["superclass accuracy (probabilities summed per superclass)", _pct(data["coarse_accuracy"])])
    if data.get("coarse_accuracy_mapped") is not None:
        summary.append(["superclass accuracy (superclass of the predicted class)",
                        _pct(data["coarse_accuracy_mapped"])])
    summary += _calibration_rows(data.get("calibration"))
    if data.get("num_examples") is not None:
        summary.append(["examples", f"{int(data['num_examples']):,}"])
    lines += _table(["metric", "value"], summary, "lr") + [""]

    lines += ["## Run", ""]
    num_params = data.get("num_params")
    run_rows = [
        ["head", f"`{_md(head)}`"],
        ["head parameters", _md(_format_params(data.get("head_params")))],
        ["dataset", _md(dataset)],
        ["split", _md(_format_split(data.get("split")))],
        *([["split sizes", _md(_format_split(data["split_sizes"]))]] if data.get("split_sizes") else []),
        ["seed", _md(data.get("seed"))],
        ["parameters", f"{int(num_params):,}" if isinstance(num_params, (int, float)) else _md(num_params)],
    ]
    lines += _table(["setting", "value"], run_rows) + [""]

    lines += ["## Timing", ""]
    lines += _table(["timing", "value"], _timing_rows(data), "lr") + [""]

    env_rows = [[key, _md(data[key])] for key in ("backend", "device") if data.get(key) is not None]
    versions = data.get("versions")
    if isinstance(versions, dict):
        env_rows += [[_md(name), _md(version)] for name, version in versions.items()]
    elif versions is not None:
        env_rows.append(["versions", _md(versions)])
    if env_rows:
        lines += ["## Environment", ""] + _table(["component", "value"], env_rows) + [""]

    plots = data.get("plots") or {}
    if plots:
        lines += ["## Plots", ""]
        captions = {"loss_curve": "loss", "accuracy_curve": "accuracy",
                    "confusion_matrix": "confusion matrix", "reliability": "reliability diagram"}
        for kind, rel_path in plots.items():
            lines += [f"![{captions.get(kind, kind)}]({rel_path})", ""]

    per_class = data.get("per_class")
    if per_class:
        ordered = sorted(per_class, key=lambda row: -float(row.get("f1") or 0.0))
        rows = [[_md(row.get("name")), _pct(row.get("precision")), _pct(row.get("recall")), _pct(row.get("f1")),
                 str(row.get("support", ""))] for row in ordered]
        lines += ["## Per-class results (sorted by F1, best first)", ""]
        lines += _table(["class", "precision", "recall", "F1", "support"], rows, "lrrrr") + [""]
    return "\n".join(lines)
