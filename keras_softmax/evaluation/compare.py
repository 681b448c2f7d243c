"""Compare finished runs side by side, from their ``report.json`` files (what ``keras-softmax compare`` prints).

>>> rows = compare_runs(["runs/softmax", "runs/log_gumbel"])  # doctest: +SKIP
>>> print(format_table(rows))  # doctest: +SKIP
| run         | head       | dataset  | split | accuracy | top-5  | F1 (macro) | ECE   | loss   | ...
"""

from __future__ import annotations

from pathlib import Path

from keras_softmax.evaluation.numbers import fixed
from keras_softmax.evaluation.report import read_report

__all__ = ["COLUMNS", "compare_runs", "format_table"]

# (row key, column title, formatter kind)
COLUMNS = (
    ("label", "run", "text"),
    ("head", "head", "text"),
    ("dataset", "dataset", "text"),
    ("split", "split", "text"),
    ("accuracy", "accuracy", "pct"),
    ("top5_accuracy", "top-5", "pct"),
    ("f1_macro", "F1 (macro)", "pct"),
    ("ece", "ECE", "pct"),
    ("loss", "loss", "loss"),
    ("train_seconds", "train s", "seconds"),
    ("images_per_second", "images/s", "rate"),
    ("epochs", "epochs", "int"),
)


def _epochs(report: dict):
    if isinstance(report.get("epochs"), int):
        return report["epochs"]
    seconds = report.get("epoch_seconds")
    return len(seconds) if isinstance(seconds, list) else None


def compare_runs(run_dirs) -> list[dict]:
    """One row per run directory, in the order given.

    Args:
        run_dirs: paths of run directories holding ``report.json``.

    Returns:
        Dicts with ``label`` (the directory name; ``parent/name`` where two runs share a name), ``head``,
        ``dataset``, ``split``, ``accuracy``, ``top5_accuracy``, ``f1_macro``, ``ece``, ``loss``,
        ``train_seconds``, ``images_per_second``, ``epochs`` (``None`` where a report lacks a value) and
        ``run_dir``.

    Raises:
        FileNotFoundError: a directory has no ``report.json`` (the message names it).
    """
    dirs = [Path(d) for d in run_dirs]
    reports = [read_report(d) for d in dirs]
    names = [d.resolve().name for d in dirs]
    labels = [
        f"{d.resolve().parent.name}/{name}" if names.count(name) > 1 else name for d, name in zip(dirs, names)
    ]
    rows = []
    for d, label, report in zip(dirs, labels, reports):
        row = {"label": label}
        for key in ("head", "dataset", "split", "accuracy", "top5_accuracy", "f1_macro", "ece", "loss",
                    "train_seconds", "images_per_second"):
            row[key] = report.get(key)
        row["epochs"] = _epochs(report)
        row["run_dir"] = str(d)
        rows.append(row)
    return rows


def _cell(value, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{fixed(100 * float(value), 2)}%"
    if kind == "loss":
        return fixed(value, 4)
    if kind == "seconds":
        return fixed(value, 1)
    if kind == "rate":
        return f"{float(value):,.0f}"
    if kind == "int":
        return str(int(value))
    if isinstance(value, dict):  # a split given as sizes: {"train": 45000, "val": 5000, ...}
        return " / ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
    return str(value).replace("|", "\\|")


def format_table(rows) -> str:
    """A markdown table of :func:`compare_runs` rows, columns padded to line up in plain text too.

    Percentages have two decimals; numbers are right-aligned. Rows keep their order (sort them first,
    e.g. ``sorted(rows, key=lambda r: -(r["accuracy"] or 0))``).
    """
    rows = list(rows)
    header = [title for _, title, _ in COLUMNS]
    body = [[_cell(row.get(key), kind) for key, _, kind in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(COLUMNS))]
    right = [kind != "text" for _, _, kind in COLUMNS]

    def line(cells):
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if r else "-" * w for w, r in zip(widths, right)) + " |"
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])
