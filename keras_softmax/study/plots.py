"""The study's figures: curves in small groups, epoch time, forest plots of the verdicts, heatmaps of
the tuning grid, the most-confused class pairs, the superclass answers, confusion and reliability grids.

Small PNGs (about 80 dpi) built with matplotlib's object API, written atomically, like
:mod:`keras_softmax.evaluation.plots`. Inputs are plain numbers read from the runs' own files.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator, PercentFormatter

from keras_softmax.io import atomic_path

__all__ = ["confused_pairs", "plot_confused_pairs", "plot_confusion_grid", "plot_curve_panels", "plot_epoch_times",
           "plot_forest", "plot_grid_heatmaps", "plot_mean_curves", "plot_reliability_grid", "plot_answers",
           "superclass_confusion", "wrap"]

DPI = 80
LINESTYLES = ("-", "--", ":", "-.")


def wrap(title: str, width_inches: float, fontsize: float = 10) -> str:
    """``title`` broken into lines that fit a figure ``width_inches`` wide at ``fontsize`` points
    (about 0.55 em per character), never between a number and its unit ("95 %") nor at a hyphen."""
    chars = max(20, int(width_inches * 72 / (0.62 * fontsize)))
    if not title:
        return title
    kept = re.sub(r"(\d) (%|pp|s\b)", "\\1\u00a0\\2", title)  # a no-break space: textwrap does not break there
    return "\n".join(textwrap.wrap(kept, chars, break_on_hyphens=False))


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
        band = _mean_band(runs)
        if band is None:
            continue
        epochs, mean, low, high, n = band
        ax.plot(epochs, mean, color=color, linewidth=1.4, label=f"{name} (n={n})",
                marker="o" if len(epochs) <= 3 else None, markersize=3)
        if n > 1:
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
    ax.set_title(wrap(title or f"{ylabel}: mean over seeds, band = min to max", 7.5), fontsize=10)
    return _save(fig, path)


def _mean_band(runs):
    """Per-epoch curves of several runs (lists, ``None`` for a missing epoch) as ``(epochs, mean, min,
    max, number of runs)`` over the epochs some run has; ``None`` when there is nothing to draw."""
    runs = [np.array([np.nan if v is None else float(v) for v in run], dtype=np.float64) for run in runs if run]
    if not runs:
        return None
    length = max(len(r) for r in runs)
    stacked = np.full((len(runs), length), np.nan)
    for i, run in enumerate(runs):
        stacked[i, : len(run)] = run
    present = np.any(np.isfinite(stacked), axis=0)
    if not present.any():
        return None
    values = stacked[:, present]
    with np.errstate(all="ignore"):
        mean = np.nanmean(values, axis=0)
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    return np.arange(1, length + 1)[present], mean, low, high, len(runs)


def _curve(ax, runs, color, style, label):
    band = _mean_band(runs)
    if band is None:
        return False
    epochs, mean, low, high, n = band
    ax.plot(epochs, mean, color=color, linestyle=style, linewidth=1.5, label=f"{label} (n={n})")
    if n > 1:
        ax.fill_between(epochs, low, high, color=color, alpha=0.12, linewidth=0)
    return True


def plot_curve_panels(series: dict, path, *, ylabel: str, percent: bool = False, title: str = "",
                      per_panel: int = 4, ylim=None, reference: str | None = None) -> Path:
    """Curves in panels of at most ``per_panel`` names (a shared x axis, each panel its own y range,
    panels filled evenly), each line its
    own colour and dash, so that a reader can tell them apart: the mean over runs per epoch, band = min
    to max. ``reference`` is drawn in every panel (thin, black) instead of in a panel of its own."""
    names = [n for n, runs in series.items() if any(runs) and n != reference]
    panels = max(1, math.ceil(len(names) / per_panel))
    size = max(1, math.ceil(len(names) / panels))
    groups = [names[i:i + size] for i in range(0, len(names), size)] or [[]]
    has_reference = reference is not None and any(series.get(reference) or [])
    rows, columns = _grid(len(groups), 3 if len(groups) > 4 else 2)
    width, height = (7.5, 4.6) if len(groups) == 1 else (3.6 * columns + 0.6, 2.9 * rows + 0.8)
    fig = Figure(figsize=(width, height), layout="constrained")
    # Each panel its own y range: one row's spike (an early epoch's NLL of 11) would flatten every other panel.
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=False)).ravel()
    longest = max((len(run) for runs in series.values() for run in runs), default=1)
    for ax, group in zip(axes, groups):
        if has_reference:
            _curve(ax, series[reference], "black", "-", f"{reference} (reference)")
            ax.lines[-1].set_linewidth(0.9)
        for k, name in enumerate(group):
            _curve(ax, series[name], _colors(per_panel)[k], LINESTYLES[k % len(LINESTYLES)], name)
        if not group:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, longest + 0.5)
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        if ylim is not None:
            ax.set_ylim(*ylim)
        if group:
            ax.legend(fontsize=7, loc="best")
        ax.tick_params(labelsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel(ylabel, fontsize=8)
    fig.suptitle(wrap(title or f"{ylabel}: mean over seeds, band = min to max", width), fontsize=10)
    return _save(fig, path)


def plot_forest(items: list[dict], path, *, margin: float | None = None, title: str = "", unit: str = "pp") -> Path:
    """One row per comparison: Δ with its raw 95 % interval (black) and the wider Holm-level interval
    (grey; :func:`keras_softmax.study.stats.holm_levels`); the band is the equivalence margin ±``margin``.

    Args:
        items: dicts with ``label``, ``difference``, ``low``, ``high`` and optionally ``holm_low``,
            ``holm_high``, ``verdict`` (already in the plotted unit) and ``split`` ("test": a blue square,
            else a red dot).
    """
    n = max(1, len(items))
    fig = Figure(figsize=(7.5, 0.42 * n + 1.3), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(items))[::-1]
    if margin:
        ax.axvspan(-margin, margin, color="tab:green", alpha=0.12, linewidth=0,
                   label=f"equivalence margin ±{margin:.2g} {unit}")
    ax.axvline(0, color="black", linewidth=0.8)
    shown = set()
    for yi, item in zip(y, items):
        if item.get("holm_low") is not None:
            ax.plot([item["holm_low"], item["holm_high"]], [yi, yi], color="0.65", linewidth=5,
                    solid_capstyle="butt", label="Holm-level interval" if yi == y[0] else None)
        ax.plot([item["low"], item["high"]], [yi, yi], color="black", linewidth=1.6,
                label="raw 95 % interval" if yi == y[0] else None)
        test = item.get("split") == "test"
        label = None
        if "split" in item and test not in shown:  # one legend entry per split
            label = "Δ, test" if test else "Δ, validation"
            shown.add(test)
        ax.plot([item["difference"]], [yi], "s" if test else "o", color="tab:blue" if test else "tab:red",
                markersize=5, label=label)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{item['label']}\n{item.get('verdict', '')}".strip() for item in items], fontsize=7)
    ax.set_ylim(-0.7, len(items) - 0.3)
    span = max((max(abs(item["low"]), abs(item["high"]), abs(item.get("holm_low") or 0),
                     abs(item.get("holm_high") or 0)) for item in items), default=0)
    linear = max(2.0, 2 * (margin or 0))
    if span > 10 * linear:  # a few huge differences beside small ones: linear near 0, logarithmic beyond
        ax.set_xscale("symlog", linthresh=linear)
        unit += f"; symmetric log scale beyond ±{linear:.2g}"
        # Plain numbers at 1-2-5 steps (matplotlib's default labels here are powers of ten, "−10^1").
        low, high = ax.get_xlim()
        steps = [m * 10 ** e for e in range(0, 4) for m in (1, 2, 5)]
        ax.set_xticks(sorted({0.0, *(v for v in steps if v <= high), *(-v for v in steps if -v >= low)}))
        ax.set_xlim(low, high)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g}" if v else "0"))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"Δ ({unit}): first − second", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=7)
    if items:
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(wrap(title, 7.5), fontsize=10)
    return _save(fig, path)


def plot_grid_heatmaps(grids: dict, path, *, row_label: str, column_label: str, rows, columns, title: str = "",
                       chosen: dict | None = None, set_aside: dict | None = None) -> Path:
    """One small heatmap per head: ``grids[head][i][j]`` the mean validation top-1 (fraction, or None)
    at ``rows[i]`` × ``columns[j]``, -inf where a run of that point diverged (left blank, marked "div.");
    each head's colours span its own range; the chosen cell is boxed, and the cells of ``set_aside[head]``
    (``(i, j)``: points not to be chosen) carry a "†"."""
    heads = list(grids)
    n_rows, n_columns = _grid(len(heads), 4)
    fig = Figure(figsize=(2.3 * n_columns + 0.4, 2.0 * n_rows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_columns, squeeze=False)).ravel()
    for ax, head in zip(axes, heads):
        values = np.array([[np.nan if v is None else 100 * v for v in row] for row in grids[head]], dtype=float)
        diverged = np.isneginf(values)
        values[diverged] = np.nan
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0, 1)
        ax.imshow(values, cmap="viridis", vmin=low, vmax=max(high, low + 1e-9), aspect="auto")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if np.isfinite(values[i, j]):
                    shade = (values[i, j] - low) / max(high - low, 1e-9)  # 0 = viridis's dark end
                    mark = "†" if (i, j) in (set_aside or {}).get(head, ()) else ""
                    ax.text(j, i, f"{values[i, j]:.1f}{mark}", ha="center", va="center", fontsize=7,
                            color="white" if shade < 0.5 else "black")
                elif diverged[i, j]:
                    ax.text(j, i, "div.", ha="center", va="center", fontsize=7, color="firebrick")
        point = (chosen or {}).get(head)
        if point is not None:
            i, j = point
            ax.add_patch(_box(j, i))
        ax.set_xticks(range(len(columns)))
        ax.set_xticklabels([str(c) for c in columns], fontsize=7)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([str(r) for r in rows], fontsize=7)
        ax.set_title(head, fontsize=8)
    for ax in axes[len(heads):]:
        ax.set_visible(False)
    fig.supxlabel(column_label, fontsize=8)
    fig.supylabel(row_label, fontsize=8)
    width = 2.3 * n_columns + 0.4
    fig.suptitle(wrap(title or "Tuning grid: validation top-1 (%)", width), fontsize=10)
    return _save(fig, path)


def _box(x, y):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def confused_pairs(confusion, class_names, top: int = 15) -> list[tuple[str, str, float, int]]:
    """The ``top`` largest off-diagonal cells as ``(true, predicted, share of the true class, count)``.

    Equal shares keep the matrix's order (by true class, then predicted class): a stable sort, so the
    table is the same on every machine (numpy's default sort orders ties by the CPU's SIMD kernel).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    rates = _normalise_rows(cm)
    np.fill_diagonal(rates, -1.0)
    order = np.argsort(-rates, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, rates.shape)
        if rates[i, j] <= 0:
            break
        pairs.append((str(class_names[i]), str(class_names[j]), float(rates[i, j]), int(cm[i, j])))
    return pairs


def plot_confused_pairs(pairs, path, *, title: str = "") -> Path:
    """Horizontal bars: the share of a true class's images predicted as another, largest first."""
    fig = Figure(figsize=(7.0, 0.3 * max(1, len(pairs)) + 1.1), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(pairs))
    ax.barh(y, [p[2] for p in pairs], color="tab:blue", alpha=0.85)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{t} → {p}" for t, p, _, _ in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel("share of the true class's validation images", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(wrap(title or "Most-confused class pairs (true → predicted)", 7.0), fontsize=10)
    return _save(fig, path)


def plot_answers(answers: dict, path, *, test: dict | None = None, title: str = "", xlabel: str = "") -> Path:
    """One row per answer: every run's value (dots) and the mean with its 95 % t-interval (bar), on
    validation (red diamond) and, where ``test`` gives a name's test-split values, on test beside it (blue
    square)."""
    from scipy import stats

    names = list(answers)
    splits = [("validation", answers, "tab:red", "D")]
    if test and any(v is not None for name in names for v in test.get(name, [])):
        splits.append(("test", test, "tab:blue", "s"))
    step = 0.34 if len(splits) > 1 else 0.0
    fig = Figure(figsize=(7.0, (0.55 + 0.3 * (len(splits) - 1)) * max(1, len(names)) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    for yi, name in enumerate(names):
        for si, (label, found, color, marker) in enumerate(splits):
            values = np.array([float(v) for v in found.get(name, []) if v is not None], dtype=float)
            if not values.size:
                continue
            y = yi + (si - (len(splits) - 1) / 2) * step
            ax.plot(values, np.full(values.size, y), "o", color="0.5", markersize=4)
            mean, half = values.mean(), 0.0
            if values.size > 1:
                half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
                ax.plot([mean - half, mean + half], [y, y], color="black", linewidth=2)
            ax.plot([mean], [y], marker, color=color, markersize=6, label=label if yi == 0 else None)
            ax.annotate(f"{100 * mean:.2f}% (n={values.size})", (max(mean + half, values.max()), y),
                        xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    low, high = ax.get_xlim()
    ax.set_xlim(low, high + 0.3 * (high - low))  # room for the labels right of each interval
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    if len(splits) > 1:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(wrap(title, 7.0), fontsize=10)
    return _save(fig, path)


def plot_epoch_times(times: dict, path, *, title: str = "", kind: str | None = None) -> Path:
    """Horizontal bars: mean steady-state epoch seconds per name, error bars = sample std over runs;
    ``kind``: the one GPU kind the times come from, where the study's runs span several."""
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
    ax.set_xlabel("steady-state epoch seconds (median of epochs 2..n per run"
                  + (f"; {kind} runs only)" if kind else ")"))
    finite = [m for m in means if np.isfinite(m)]
    ax.set_xlim(0, (max(m + d for m, d in zip(means, stds) if np.isfinite(m)) * 1.4) if finite else 1)
    ax.grid(True, axis="x", alpha=0.3)
    if not title:
        title = ("Epoch time per head: one timing run each (no spread to show)" if max(counts, default=0) <= 1
                 else "Epoch time per head: mean ± std over its timing runs (n on each bar)")
    ax.set_title(wrap(title, 7.0), fontsize=10)
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
