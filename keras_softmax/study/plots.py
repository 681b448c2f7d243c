"""The study's figures: curves of every head on one figure, epoch time, confusion and reliability grids.

Small PNGs (about 80 dpi) built with matplotlib's object API, written atomically, like
:mod:`keras_softmax.evaluation.plots`. Inputs are plain numbers read from the runs' own files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from keras_softmax.io import atomic_path

__all__ = ["plot_confusion_grid", "plot_epoch_times", "plot_mean_curves", "plot_reliability_grid",
           "superclass_confusion"]

DPI = 80


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path


def _colors(n: int):
    cmap = mcolors.ListedColormap(
        ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
         "tab:olive", "tab:cyan", "navy", "darkgoldenrod", "black", "lime", "magenta", "teal"])
    return [cmap(i % cmap.N) for i in range(n)]


def plot_mean_curves(series: dict, path, *, ylabel: str, percent: bool = False, title: str = "") -> Path:
    """One line per name: the mean over its runs at each epoch; the band spans their min to max.

    Args:
        series: name -> list of per-run lists of per-epoch values (``None``/NaN are gaps; runs may
            differ in length).
        path: PNG to write.
        ylabel: y-axis label.
        percent: show the y axis in percent (values are fractions).
        title: figure title.
    """
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for (name, runs), color in zip(series.items(), _colors(len(series))):
        runs = [np.array([np.nan if v is None else float(v) for v in run], dtype=np.float64) for run in runs if run]
        if not runs:
            continue
        length = max(len(r) for r in runs)
        stacked = np.full((len(runs), length), np.nan)
        for i, run in enumerate(runs):
            stacked[i, : len(run)] = run
        present = np.any(np.isfinite(stacked), axis=0)
        if not present.any():
            continue
        epochs = np.arange(1, length + 1)[present]
        values = stacked[:, present]
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0)
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        ax.plot(epochs, mean, color=color, linewidth=1.4, label=f"{name} (n={len(runs)})",
                marker="o" if len(epochs) <= 3 else None, markersize=3)
        if len(runs) > 1:
            ax.fill_between(epochs, low, high, color=color, alpha=0.15, linewidth=0)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    longest = max((len(run) for runs in series.values() for run in runs), default=1)
    ax.set_xlim(0.5, longest + 0.5)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, ncol=2 if drawn > 8 else 1, loc="best")
    ax.set_title(title or f"{ylabel}: mean over seeds, band = min to max", fontsize=10)
    return _save(fig, path)


def plot_epoch_times(times: dict, path, *, title: str = "") -> Path:
    """Horizontal bars: mean steady-state epoch seconds per name, error bars = sample std over runs."""
    names = list(times)
    means, stds, counts = [], [], []
    for name in names:
        values = np.array([float(v) for v in times[name] if v is not None and math.isfinite(float(v))])
        means.append(values.mean() if values.size else np.nan)
        stds.append(values.std(ddof=1) if values.size > 1 else 0.0)
        counts.append(values.size)
    fig = Figure(figsize=(7, max(2.0, 0.32 * len(names) + 1.0)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(means), xerr=stds, color="tab:blue", alpha=0.8, capsize=2)
    for yi, mean, std, count in zip(y, means, stds, counts):
        if np.isfinite(mean):
            ax.text(mean + std, yi, f"  {mean:.3g} s (n={count})", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("steady-state epoch seconds (median of epochs 2..n per run)")
    finite = [m for m in means if np.isfinite(m)]
    ax.set_xlim(0, (max(m + d for m, d in zip(means, stds) if np.isfinite(m)) * 1.4) if finite else 1)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or "Epoch time per head: mean ± std over seeds", fontsize=10)
    return _save(fig, path)


def superclass_confusion(confusion, fine_to_coarse) -> np.ndarray:
    """A fine-class confusion matrix (counts) summed into superclasses: ``M^T C M``."""
    cm = np.asarray(confusion, dtype=np.float64)
    table = np.asarray(fine_to_coarse, dtype=np.int64)
    if cm.shape != (len(table), len(table)):
        raise ValueError(f"the confusion matrix is {cm.shape} but the map has {len(table)} classes")
    member = np.zeros((len(table), int(table.max()) + 1))
    member[np.arange(len(table)), table] = 1.0
    return member.T @ cm @ member


def _normalise_rows(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)


def _grid(n: int, max_columns: int = 4):
    columns = min(max_columns, max(1, n))
    return int(math.ceil(n / columns)), columns


def plot_confusion_grid(matrices: dict, path, *, class_names=None, title: str = "") -> Path:
    """One small row-normalised confusion matrix per name (counts in, pooled over seeds by the caller)."""
    names = list(matrices)
    rows, columns = _grid(len(names))
    fig = Figure(figsize=(2.6 * columns + 0.8, 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    norm = mcolors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    image = None
    for ax, name in zip(axes, names):
        cm = np.asarray(matrices[name], dtype=np.float64)
        total = cm.sum()
        accuracy = np.trace(cm) / total if total else float("nan")
        image = ax.imshow(_normalise_rows(cm), cmap="Blues", norm=norm, interpolation="nearest")
        ax.set_title(f"{name}\n{100 * accuracy:.1f}% on the diagonal", fontsize=8)
        c = cm.shape[0]
        if class_names is not None and c <= 20 and len(class_names) == c:
            ax.set_xticks(range(c))
            ax.set_yticks(range(c))
            ax.set_xticklabels([], fontsize=4)
            ax.set_yticklabels([str(n)[:12] for n in class_names], fontsize=4)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.tolist(), shrink=0.6)
        bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        bar.set_label("% of true class (sqrt scale)", fontsize=8)
    fig.suptitle(title or "Confusion matrices (rows: true class), pooled over seeds", fontsize=10)
    return _save(fig, path)


def pool_reliability(bin_lists) -> list[dict]:
    """Reliability bins of several runs pooled: counts summed, confidence and accuracy count-weighted."""
    pooled = None
    for bins in bin_lists:
        if pooled is None:
            pooled = [{"lower": b["lower"], "upper": b["upper"], "count": 0, "_c": 0.0, "_a": 0.0} for b in bins]
        for target, b in zip(pooled, bins):
            n = int(b["count"])
            target["count"] += n
            if n:
                target["_c"] += n * float(b["confidence"])
                target["_a"] += n * float(b["accuracy"])
    out = []
    for b in pooled or []:
        n = b["count"]
        out.append({"lower": b["lower"], "upper": b["upper"], "count": n,
                    "confidence": b["_c"] / n if n else None, "accuracy": b["_a"] / n if n else None})
    return out


def plot_reliability_grid(bins: dict, path, *, captions: dict | None = None, title: str = "") -> Path:
    """One reliability diagram per name: accuracy per confidence bin against the diagonal."""
    names = list(bins)
    rows, columns = _grid(len(names))
    fig = Figure(figsize=(2.5 * columns + 0.4, 2.5 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        data = bins[name]
        lower = np.array([b["lower"] for b in data])
        upper = np.array([b["upper"] for b in data])
        count = np.array([b["count"] for b in data])
        acc = np.array([np.nan if b["accuracy"] is None else b["accuracy"] for b in data])
        conf = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in data])
        filled = count > 0
        centers, widths = (lower + upper) / 2, upper - lower
        ax.bar(centers[filled], acc[filled], width=widths[filled], color="tab:blue", edgecolor="black",
               linewidth=0.3)
        ax.bar(centers[filled], conf[filled] - acc[filled], bottom=acc[filled], width=widths[filled],
               facecolor="none", edgecolor="tab:red", hatch="//", linewidth=0.4)
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=0.8)
        total = count.sum()
        ece = float(np.sum(count[filled] * np.abs(acc[filled] - conf[filled])) / total) if total else float("nan")
        caption = (captions or {}).get(name, "")
        ax.set_title(f"{name}\nECE {100 * ece:.1f}%{caption}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.supxlabel("confidence (max probability)", fontsize=8)
    fig.supylabel("accuracy", fontsize=8)
    fig.suptitle(title or "Reliability diagrams, pooled over seeds\n(15 bins; hatched: gap to mean confidence)",
                 fontsize=9)
    return _save(fig, path)
