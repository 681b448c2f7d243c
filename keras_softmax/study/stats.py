"""The statistics of a study: mean ± sample standard deviation over seeds, Welch intervals and tests,
Holm's adjustment over a family of comparisons, and equivalence by two one-sided tests (TOST).

Every figure in STUDY.md is a mean over seeds with its sample standard deviation (``ddof=1``) and
the number of runs behind it. A difference between two heads comes with a 95 % confidence interval
from Welch's unequal-variance t-interval on the per-seed values: ``Δ = mean_a − mean_b``,
``se = sqrt(s_a²/n_a + s_b²/n_b)``, Welch–Satterthwaite degrees of freedom, ``Δ ± t(0.975, df) · se``.
It treats the two sets of seeds as independent samples, which is conservative when both used the same
seeds (same validation split and data order per seed).

>>> s = summarize([0.61, 0.63, 0.62])
>>> round(s.mean, 3), round(s.std, 3), s.n
(0.62, 0.01, 3)
>>> d = welch_interval([0.61, 0.63, 0.62], [0.58, 0.60, 0.59])
>>> round(d.difference, 3), d.low < d.difference < d.high
(0.03, True)

Many comparisons: :func:`holm` adjusts the p-values of a family (Holm 1979, step-down; it controls the
family-wise error rate under any dependence), and :func:`holm_levels` gives each comparison the
confidence level of an interval that excludes 0 exactly when Holm rejects it (a rejected comparison's
step; for the retained, the step where Holm stopped). Equivalence: :func:`tost` tests ``|Δ| < margin``
with two one-sided Welch tests (Schuirmann 1987); its p-value is the larger of the two, and the (1 − 2α)
interval lies inside ``±margin`` exactly when it is below α. :func:`excluded_beyond` is the smallest margin
the data exclude at that level.

>>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
[0.03, 0.06, 0.06]

The t distribution comes from scipy (``scipy.stats.t``), which scikit-learn, a core dependency,
already brings; everything else is numpy and closed forms.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

__all__ = ["Difference", "Equivalence", "Summary", "excluded_beyond", "holm", "holm_levels", "interval_at",
           "repeat_sd", "summarize", "tost", "welch_interval"]


@dataclasses.dataclass(frozen=True)
class Summary:
    """``mean`` and sample ``std`` (None when ``n < 2``) of ``n`` finite values."""

    n: int
    mean: float | None
    std: float | None


@dataclasses.dataclass(frozen=True)
class Difference:
    """``difference = mean(a) − mean(b)`` with a ``confidence`` interval [low, high] on ``df`` degrees of freedom."""

    difference: float
    low: float
    high: float
    df: float
    confidence: float
    n_a: int
    n_b: int
    se: float = 0.0  # standard error of the difference
    p_value: float = 1.0  # two-sided Welch test of difference = 0


@dataclasses.dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests of ``|difference| < margin``: ``p_value`` (the larger one-sided p), and the
    (1 − 2α) interval ``[low, high]`` they imply."""

    margin: float
    p_value: float
    p_lower: float  # H0: difference <= -margin
    p_upper: float  # H0: difference >= +margin
    low: float
    high: float


def _finite(values) -> np.ndarray:
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def summarize(values) -> Summary:
    """Mean and sample standard deviation (ddof=1) of the finite values; ``None`` entries are skipped."""
    array = _finite(values)
    if array.size == 0:
        return Summary(0, None, None)
    std = float(np.std(array, ddof=1)) if array.size >= 2 else None
    return Summary(int(array.size), float(np.mean(array)), std)


def welch_interval(a, b, confidence: float = 0.95) -> Difference | None:
    """Welch's t-interval for ``mean(a) − mean(b)``; ``None`` unless both have at least 2 values.

    When both samples have zero spread the interval is the difference itself (``df`` infinite).
    """
    a, b = _finite(a), _finite(b)
    if a.size < 2 or b.size < 2:
        return None
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if se else math.inf
    return _t_interval(float(np.mean(a) - np.mean(b)), se, df, confidence, int(a.size), int(b.size))


def paired_interval(a, b, confidence: float = 0.95) -> Difference | None:
    """The paired t-interval for ``mean(a − b)`` (``a[i]`` and ``b[i]`` one configuration measured twice,
    e.g. on two GPU kinds); ``None`` unless at least 2 pairs have both values. ``n_a = n_b`` = pairs."""
    pairs = [(float(x), float(y)) for x, y in zip(a, b)
             if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    if len(pairs) < 2:
        return None
    diffs = np.array([x - y for x, y in pairs], dtype=np.float64)
    n = int(diffs.size)
    se = float(np.std(diffs, ddof=1) / math.sqrt(n))
    return _t_interval(float(np.mean(diffs)), se, n - 1 if se else math.inf, confidence, n, n)


def _t_interval(difference: float, se: float, df: float, confidence: float, n_a: int, n_b: int) -> Difference:
    """The t-interval and two-sided p-value of ``difference`` with standard error ``se`` on ``df`` degrees
    of freedom; with no spread (``se = 0``) the interval is the difference itself."""
    if se == 0:
        return Difference(difference, difference, difference, math.inf, confidence, n_a, n_b, 0.0,
                          1.0 if difference == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(2 * stats.t.sf(abs(difference) / se, df))
    return Difference(difference, difference - half, difference + half, float(df), confidence, n_a, n_b,
                      float(se), min(1.0, p_value))


def interval_at(d: Difference, confidence: float) -> tuple[float, float]:
    """The Welch interval of ``d`` at another ``confidence`` level (same df and standard error)."""
    if d.se == 0:
        return d.difference, d.difference
    half = float(stats.t.ppf(0.5 + confidence / 2, d.df)) * d.se
    return d.difference - half, d.difference + half


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: sort ascending, multiply the i-th
    smallest (i from 0) by ``m − i``, take the running maximum, cap at 1."""
    p = [float(v) for v in p_values]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def holm_levels(p_values, alpha: float = 0.05) -> list[float]:
    """The confidence level of each comparison's Holm-level interval (rank 0 is the smallest p). Holm
    rejects the first ``r`` ranks while ``p · (m − rank) < α`` and stops at the first that fails: a
    comparison it rejects gets its step's level ``1 − α / (m − rank)``, and every comparison it retains the
    level of the step where it stopped, ``1 − α / (m − r)``, as the retained comparisons' bounds of the
    intervals compatible with Holm (Strassburger and Bretz 2008, Statistics in Medicine) have it. So an
    interval excludes 0 exactly when Holm's adjusted p-value (:func:`holm`) is below α."""
    p = [float(v) for v in p_values]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    levels = [0.0] * m
    stopped = None
    for rank, i in enumerate(order):
        if stopped is None and not p[i] * (m - rank) < alpha:
            stopped = rank
        levels[i] = 1.0 - alpha / (m - (rank if stopped is None else stopped))
    return levels


def tost(d: Difference, margin: float, alpha: float = 0.05) -> Equivalence:
    """Two one-sided Welch tests of ``-margin < difference < margin`` on the same df as ``d``."""
    if not margin > 0:
        raise ValueError(f"an equivalence margin must be > 0 (got {margin!r})")
    if d.se == 0:
        inside = -margin < d.difference < margin
        p = 0.0 if inside else 1.0
        return Equivalence(margin, p, p, p, d.difference, d.difference)
    p_lower = float(stats.t.sf((d.difference + margin) / d.se, d.df))
    p_upper = float(stats.t.cdf((d.difference - margin) / d.se, d.df))
    low, high = interval_at(d, 1 - 2 * alpha)
    return Equivalence(margin, max(p_lower, p_upper), p_lower, p_upper, low, high)


def excluded_beyond(d: Difference, alpha: float = 0.05) -> float:
    """The smallest margin x for which TOST at level α says ``|difference| < x``: the larger end, in
    absolute value, of the (1 − 2α) interval. "A difference beyond ±x is excluded"."""
    low, high = interval_at(d, 1 - 2 * alpha)
    return max(abs(low), abs(high))


def repeat_sd(pairs) -> float:
    """The standard deviation of one run from same-config repeat pairs: ``sqrt(Σ (a − b)² / 2k)``."""
    diffs = np.array([float(a) - float(b) for a, b in pairs], dtype=np.float64)
    if diffs.size == 0:
        raise ValueError("no repeat pairs")
    return float(math.sqrt(np.sum(diffs ** 2) / (2 * diffs.size)))
