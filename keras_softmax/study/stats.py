"""The statistics of a study: mean ± sample standard deviation over seeds, and a Welch interval.

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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

__all__ = ["Difference", "Summary", "summarize", "welch_interval"]


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
    difference = float(np.mean(a) - np.mean(b))
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(difference, difference, difference, math.inf, confidence, int(a.size), int(b.size))
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Difference(difference, difference - half, difference + half, float(df), confidence, int(a.size),
                      int(b.size))
