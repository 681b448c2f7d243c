"""Figures for a run: training curves, confusion matrix, reliability diagram, run comparison.

Every function writes one PNG atomically (temp file, then rename) and returns its ``Path``. Figures are
built with matplotlib's object API (``matplotlib.figure.Figure``, rendered by the Agg canvas), never
``pyplot``: nothing needs a display, no global backend is switched under a notebook user's feet, and no
figure is left registered in pyplot's figure manager (no memory growth over many runs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from keras_softmax.evaluation.numbers import fixed as _fixed
from keras_softmax.io import atomic_path

__all__ = [
    "has_curve_data", "plot_comparison", "plot_confusion_matrix", "plot_curve", "plot_curves", "plot_reliability",
]

_DPI = 100
# Above this many classes the confusion matrix drops per-cell numbers (they would be unreadable).
_ANNOTATE_MAX_CLASSES = 30
_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png")
    return path


def _series(history: dict, key: str) -> np.ndarray | None:
    """``history[key]`` as float64 (``None`` entries -> NaN), or ``None`` if absent or empty."""
    values = history.get(key)
    if values is None:
        return None
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr if arr.size else None


def _curve(history: dict, key: str, ylabel: str, path, *, percent: bool, best=max) -> Path:
    train = _series(history, key)
    val = _series(history, f"val_{key}")
    if train is None and val is None:
        raise ValueError(f"history has neither {key!r} nor 'val_{key}' (keys: {sorted(history)})")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for values, label, color in ((train, "train", _TRAIN_COLOR), (val, "validation", _VAL_COLOR)):
        if values is None:
            continue
        epochs = np.arange(1, values.size + 1)
        ax.plot(epochs, values, label=label, color=color, marker="o" if values.size <= 30 else None,
                markersize=3, linewidth=1.5)
    # Mark the best validation epoch (or the best train epoch when there is no validation).
    marked, marked_name = (val, "validation") if val is not None else (train, "train")
    if np.any(np.isfinite(marked)):
        i = int(np.nanargmax(marked) if best is max else np.nanargmin(marked))
        shown = f"{_fixed(100 * marked[i], 2)}%" if percent else _fixed(marked[i], 4, "g")
        ax.scatter([i + 1], [marked[i]], s=60, facecolors="none", edgecolors="black", zorder=3,
                   label=f"best {marked_name}: {shown} (epoch {i + 1})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{ylabel} per epoch")
    return _save(fig, path)


def plot_curves(history: dict, path_loss, path_accuracy) -> tuple[Path, Path]:
    """Loss and accuracy learning curves, train and validation, against epochs 1..n.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...], "val_accuracy": [...]}``
            (e.g. ``keras.callbacks.History.history`` or the columns of ``history.csv``). Each figure needs
            its train or its validation series; the other is optional. ``None`` entries are gaps.
        path_loss: where to write the loss figure.
        path_accuracy: where to write the accuracy figure (y axis in percent).

    Returns:
        ``(path_loss, path_accuracy)`` as ``Path``s.
    """
    if not isinstance(history, dict):
        raise ValueError(f"history must be a dict of per-epoch lists, got {type(history).__name__}")
    # Check both before writing either, so a bad history leaves no half-made pair behind.
    for key in ("loss", "accuracy"):
        if _series(history, key) is None and _series(history, f"val_{key}") is None:
            raise ValueError(f"history has neither {key!r} nor 'val_{key}' (keys: {sorted(history)})")
    return plot_curve(history, "loss", path_loss), plot_curve(history, "accuracy", path_accuracy)


def plot_curve(history: dict, key: str, path) -> Path:
    """One learning curve: ``history[key]`` and ``history["val_" + key]`` against epochs 1..n.

    Keys containing ``"acc"`` are drawn in percent with the best (highest) validation epoch marked;
    others (losses) mark the lowest.
    """
    accuracy_like = "acc" in key
    return _curve(history, key, key, path, percent=accuracy_like, best=max if accuracy_like else min)


def has_curve_data(history: dict, key: str) -> bool:
    """Whether ``history`` holds at least one finite value of ``key`` or ``val_<key>``."""
    for name in (key, f"val_{key}"):
        values = _series(history, name)
        if values is not None and np.any(np.isfinite(values)):
            return True
    return False


def plot_confusion_matrix(confusion, class_names, path, normalize: bool = True) -> Path:
    """Confusion matrix heat map (rows = true class, columns = predicted), readable up to ~100+ classes.

    The figure grows with the number of classes (a matrix of up to 17.5 inches a side at 100 dpi, plus
    margins measured from the longest class name); tick labels shrink and the x labels are rotated 90°.
    With ``normalize=True`` each row is divided by the class support, so the colour is the fraction of
    that class predicted as each column (the diagonal is per-class recall) on a square-root colour scale
    that keeps small confusions visible. Cells carry numbers only up to 30 classes.

    Args:
        confusion: C×C counts (list of lists or array).
        class_names: C names, or ``None`` for ``0..C-1``.
        path: PNG to write.
        normalize: row-normalise (default) or show raw counts.

    Returns:
        ``Path(path)``.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty square C×C matrix, got shape {cm.shape}")
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names but the confusion matrix has {c} classes")
    total = cm.sum()
    accuracy = np.trace(cm) / total if total > 0 else float("nan")
    if normalize:
        support = cm.sum(axis=1, keepdims=True)
        shown = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
        norm = mcolors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
        bar_label = "% of true class (sqrt colour scale)"
    else:
        shown = cm
        norm = mcolors.PowerNorm(gamma=0.5, vmin=0.0, vmax=max(1.0, float(cm.max())))
        bar_label = "count (sqrt colour scale)"

    # The matrix is a square of `side` inches; font sizes follow the cell size in points.
    side = float(np.clip(0.5 + 0.17 * c, 3.5, 17.5))
    cell_points = 72.0 * side / c
    tick_size = float(np.clip(0.7 * cell_points, 4.0, 10.0))
    kind = "row-normalised" if normalize else "counts"
    title = f"Confusion matrix ({kind}), {c} classes, accuracy {100 * accuracy:.2f}%"
    title_size = max(10.0, tick_size + 2)
    # A fixed layout from the labels' measured sizes instead of a layout engine, which draws the whole
    # figure once more only to measure it: at 100 classes that was ~0.4 s of ~1.5 s.
    margins = _confusion_margins(names, tick_size, title, title_size)
    left, bottom, top, right = margins["left"], margins["bottom"], margins["top"], margins["right"]
    width = max(left + side + right, margins["title"] + 0.3)
    left += (width - (left + side + right)) / 2  # a title wider than the matrix: centre the matrix under it
    height = bottom + side + top
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    image = ax.imshow(shown, cmap="Blues", norm=norm, interpolation="nearest", aspect="equal")
    cax = fig.add_axes(((left + side + _BAR_GAP) / width, bottom / height, _BAR_WIDTH / width, side / height))
    colorbar = fig.colorbar(image, cax=cax)
    colorbar.set_label(bar_label)
    if normalize:
        colorbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))

    ticks = np.arange(c)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(names, rotation=90, fontsize=tick_size)
    ax.set_yticklabels(names, fontsize=tick_size)
    ax.tick_params(length=_TICK_LENGTH)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    # Thin cell borders help the eye follow a row across a large matrix (lines, not minor ticks: 2c tick
    # objects cost more to lay out than the whole image).
    borders = ticks[1:] - 0.5
    line = 0.3 if c > _ANNOTATE_MAX_CLASSES else 0.8
    ax.hlines(borders, -0.5, c - 0.5, colors="white", linewidth=line)
    ax.vlines(borders, -0.5, c - 0.5, colors="white", linewidth=line)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.text(0.5, 1 - 0.12 / height, title, fontsize=title_size, ha="center", va="top")  # centred on the figure

    if c <= _ANNOTATE_MAX_CLASSES:
        cell_font = float(np.clip(0.45 * cell_points, 5.0, 10.0))
        for i in range(c):
            for j in range(c):
                value = shown[i, j]
                if cm[i, j] == 0:
                    continue
                text = f"{100 * value:.0f}" if normalize else f"{int(round(value))}"
                dark = norm(value) > 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_font,
                        color="white" if dark else "black")
    return _save(fig, path)


_TICK_LENGTH = 2.0  # points
_BAR_GAP, _BAR_WIDTH, _BAR_LABELS = 0.25, 0.25, 1.0  # inches: gap, colour bar, its tick labels and label
_LABEL_PAD = 0.35  # inches: an axis label's line and the padding around tick labels


def _confusion_margins(names, tick_size: float, title: str, title_size: float) -> dict:
    """Inches each side of the confusion matrix needs, from the rendered sizes of its longest labels."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point

    def extent(text, size):
        w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
        return w / 72.0, h / 72.0

    label = max((extent(n, tick_size)[0] for n in names), default=0.0) + (_TICK_LENGTH + 4) / 72.0
    title_width, title_height = extent(title, title_size)
    return {"left": 0.1 + _LABEL_PAD + label, "bottom": 0.1 + _LABEL_PAD + label,
            "top": 0.3 + 1.5 * title_height, "right": _BAR_GAP + _BAR_WIDTH + _BAR_LABELS, "title": title_width}


def _bin_value(b, key):
    value = b.get(key) if isinstance(b, dict) else None
    return None if value is None else float(value)


def plot_reliability(reliability_bins, path, *, title: str | None = None) -> Path:
    """Reliability diagram: per-bin accuracy against confidence, the diagonal, and a count histogram.

    Bars show the accuracy of each confidence bin; the red hatched part is the gap to the bin's mean
    confidence (hatching above the bar: over-confident; inside it: under-confident). The lower panel shows how many
    examples fall in each bin. The title carries the ECE, recomputed from the bins.

    Args:
        reliability_bins: the ``reliability`` list from :func:`~keras_softmax.evaluation.compute_metrics`:
            dicts with ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy`` (``None`` when empty).
        path: PNG to write.
        title: optional first line of the title.

    Returns:
        ``Path(path)``.
    """
    bins = list(reliability_bins)
    if not bins:
        raise ValueError("reliability_bins is empty")
    for b in bins:
        missing = [k for k in ("lower", "upper", "count") if not isinstance(b, dict) or k not in b]
        if missing:
            raise ValueError(f"each reliability bin needs lower, upper, count (missing {missing} in {b!r})")
    lower = np.array([float(b["lower"]) for b in bins])
    upper = np.array([float(b["upper"]) for b in bins])
    count = np.array([int(b["count"]) for b in bins])
    conf = np.array([np.nan if _bin_value(b, "confidence") is None else _bin_value(b, "confidence") for b in bins])
    acc = np.array([np.nan if _bin_value(b, "accuracy") is None else _bin_value(b, "accuracy") for b in bins])
    filled = count > 0
    total = int(count.sum())
    ece = float(np.sum(count[filled] * np.abs(acc[filled] - conf[filled])) / total) if total else float("nan")
    centers = (lower + upper) / 2
    widths = upper - lower

    fig = Figure(figsize=(6.5, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centers[filled], acc[filled], width=widths[filled], color="tab:blue", edgecolor="black",
            linewidth=0.6, label="accuracy")
    gap = conf[filled] - acc[filled]
    top.bar(centers[filled], gap, bottom=acc[filled], width=widths[filled], facecolor="none",
            edgecolor="tab:red", hatch="//", linewidth=0.8, label="gap to mean confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1.2, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_aspect("auto")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left")
    first = f"{title}\n" if title else ""
    top.set_title(f"{first}Reliability diagram: ECE = {100 * ece:.2f}% ({total} examples, {len(bins)} bins)")

    bottom.bar(centers, count, width=widths, color="tab:gray", edgecolor="black", linewidth=0.6)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("count")
    bottom.grid(True, axis="y", alpha=0.3)
    if total:
        mean_conf = float(np.sum(count[filled] * conf[filled]) / total)
        bottom.axvline(mean_conf, color="tab:red", linewidth=1.2, label=f"mean confidence {100 * mean_conf:.1f}%")
        bottom.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def comparison_figure(rows) -> Figure:
    """The figure of :func:`plot_comparison`: its legend sits above the axes, where no bar or bar
    label can be (inside, it covered the labels of bars near 100 %)."""
    return _comparison_figure(rows)


def plot_comparison(rows, path) -> Path:
    """Horizontal grouped bars of accuracy and macro F1 per run (one group per ``label``).

    Args:
        rows: dicts with ``label`` and ``accuracy`` / ``f1_macro`` (fractions; ``None`` = not available),
            e.g. from :func:`~keras_softmax.evaluation.compare_runs`. Drawn top to bottom in the given order.
        path: PNG to write.

    Returns:
        ``Path(path)``.
    """
    return _save(_comparison_figure(rows), path)


def _comparison_figure(rows) -> Figure:
    rows = list(rows)
    if not rows:
        raise ValueError("no runs to compare")
    metrics = (("accuracy", "accuracy", "tab:blue"), ("f1_macro", "macro F1", "tab:orange"))
    labels = [str(r.get("label", i)) for i, r in enumerate(rows)]
    n = len(rows)
    fig = Figure(figsize=(9, max(2.5, 0.55 * n * len(metrics) / 2 + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(metrics)
    y = np.arange(n)
    for m, (key, name, color) in enumerate(metrics):
        values = [r.get(key) for r in rows]
        vals = np.array([np.nan if v is None else float(v) for v in values])
        offset = (m - (len(metrics) - 1) / 2) * height
        bars = ax.barh(y + offset, np.nan_to_num(vals), height=height, color=color, label=name)
        for bar, v in zip(bars, vals):
            text = "n/a" if math.isnan(v) else f"{_fixed(100 * v, 2)}%"
            ax.text(bar.get_width() + 0.005, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"Run comparison ({n} runs)")
    fig.legend(loc="outside upper right", ncols=len(metrics), frameon=False)
    return fig
