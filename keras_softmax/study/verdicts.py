"""Verdicts of a study: each comparison in a declared family, with raw and Holm-adjusted intervals and
an equivalence test at a margin justified from the measured repeat noise.

A *family* is the set of comparisons one question makes (a section's rows against its reference,
or its declared ``comparisons``); Holm's adjustment keeps the family-wise error rate at α within it.
A comparison's verdict, on the per-seed values of one split:

- **better** / **worse** (a − b > 0 / < 0): the Holm-adjusted p-value of the two-sided Welch test
  is below α;
- **equivalent within ±m**: not better or worse, and the Holm-adjusted p-value of the two one-sided
  Welch tests (TOST) against ±m is below α;
- **inconclusive**: neither; the report then says which differences the data do exclude for the whole
  family ("beyond ±x": the larger end of the (1 − 2α/m) interval, Bonferroni over the family's m
  comparisons, :func:`~.stats.excluded_beyond`). Holm never needs more than Bonferroni, so x is at least
  the margin whenever the verdict is inconclusive.

The family is every comparison the question declares, run or not: one whose rows have fewer than 2
runs a side counts in Holm's m with p = 1, the largest it can take, so a verdict drawn while part of the
family is untested is never less conservative than the complete family's (Holm's adjusted p of a
comparison only falls when another one's p does). And a verdict whose own rows have fewer runs than
the study plans (``planned``) is *provisional*: more seeds may change it.

The margin m comes from same-config, same-seed GPU repeats (:func:`margin_from_repeats`): two runs of
one configuration differ by up to ``1.96 · √2 · σ_repeat`` 95 % of the time, so a difference between
two heads smaller than that is one that the GPU's own non-determinism produces between two runs.

>>> from keras_softmax.study.verdicts import compare_family
>>> a, b, c = [0.70, 0.71, 0.72], [0.60, 0.61, 0.62], [0.701, 0.709, 0.72]
>>> [v.word for v in compare_family({"a": a, "b": b, "c": c}, [("b", "a"), ("c", "a")], margin=0.01)]
['worse', 'inconclusive']
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from keras_softmax.study.stats import (
    Difference, Equivalence, excluded_beyond, holm, holm_levels, interval_at, repeat_sd, summarize, tost,
    welch_interval,
)

__all__ = ["KindOffset", "Verdict", "compare_family", "kind_offset", "margin_from_repeats"]

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One comparison ``a − b`` of a family of ``family_size``."""

    a: str
    b: str
    n_a: int
    n_b: int
    difference: Difference | None  # None: fewer than 2 values on a side
    p_holm: float | None = None
    holm_low: float | None = None  # the interval at the level stats.holm_levels gives it
    holm_high: float | None = None
    holm_level: float | None = None
    equivalence: Equivalence | None = None
    p_tost_holm: float | None = None
    beyond: float | None = None  # differences beyond ±beyond are excluded (TOST at alpha / family size)
    family_size: int = 1  # the declared family, untested comparisons included
    alpha: float = 0.05
    margin: float | None = None
    planned_a: int | None = None  # the runs the study plans for a (None: not known)
    planned_b: int | None = None

    @property
    def provisional(self) -> bool:
        """True when a side has fewer runs than planned: a verdict drawn before the seeds are all in."""
        sides = ((self.n_a, self.planned_a), (self.n_b, self.planned_b))
        return self.difference is not None and any(planned is not None and n < planned for n, planned in sides)

    @property
    def word(self) -> str:
        """``better``, ``worse``, ``equivalent``, ``inconclusive`` or ``untested``."""
        if self.difference is None:
            return "untested"
        if self.p_holm is not None and self.p_holm < self.alpha:
            return "better" if self.difference.difference > 0 else "worse"
        if self.p_tost_holm is not None and self.p_tost_holm < self.alpha:
            return "equivalent"
        return "inconclusive"

    @property
    def marked_word(self) -> str:
        """:attr:`word`, with "provisional: " before it when :attr:`provisional`."""
        return f"provisional: {self.word}" if self.provisional else self.word

    @property
    def raw_word(self) -> str:
        """The verdict of the raw 95 % interval read alone (what the report said before Holm)."""
        d = self.difference
        if d is None:
            return "untested"
        if d.low > 0:
            return "better"
        if d.high < 0:
            return "worse"
        return "indistinguishable"


def compare_family(values: dict, pairs, *, alpha: float = 0.05, margin: float | None = None,
                   planned: dict | None = None) -> list[Verdict]:
    """The verdicts of ``pairs`` (``(a, b)``: a − b) on ``values`` (name -> per-seed values), as one
    family of ``len(pairs)``: Holm over the pairs' Welch p-values, and over their TOST p-values, an
    untested pair (fewer than 2 values a side) counting with p = 1. ``planned`` (name -> runs the
    study plans) marks a verdict on fewer runs than that as provisional."""
    pairs = list(pairs)
    planned = planned or {}
    diffs = [welch_interval(values.get(a, []), values.get(b, [])) for a, b in pairs]
    testable = [i for i, d in enumerate(diffs) if d is not None]
    untested = [1.0] * (len(pairs) - len(testable))  # ranked after every tested p (the sort is stable)
    p_holm = holm([diffs[i].p_value for i in testable] + untested)
    levels = holm_levels([diffs[i].p_value for i in testable] + untested, alpha)
    equivalences = {i: tost(diffs[i], margin, alpha) for i in testable} if margin else {}
    p_tost_holm = holm([equivalences[i].p_value for i in testable] + untested) if margin else []
    out = []
    for i, ((a, b), d) in enumerate(zip(pairs, diffs)):
        n_a, n_b = summarize(values.get(a, [])).n, summarize(values.get(b, [])).n
        common = dict(family_size=len(pairs), alpha=alpha, margin=margin, planned_a=planned.get(a),
                      planned_b=planned.get(b))
        if d is None:
            out.append(Verdict(a, b, n_a, n_b, None, **common))
            continue
        k = testable.index(i)
        low, high = interval_at(d, levels[k])
        out.append(Verdict(a, b, n_a, n_b, d, p_holm=p_holm[k], holm_low=low, holm_high=high, holm_level=levels[k],
                           equivalence=equivalences.get(i), p_tost_holm=p_tost_holm[k] if margin else None,
                           beyond=excluded_beyond(d, alpha / len(pairs)), **common))
    return out


def margin_from_repeats(path) -> tuple[float, float, int]:
    """``(margin, σ_repeat, pairs)`` from a repeats file: JSON with ``"pairs": [{"accuracy": [a, b]}, ...]``,
    each pair the same configuration and seed trained twice. ``margin = 1.96 · √2 · σ_repeat``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = [pair["accuracy"] for pair in data["pairs"]]
    sd = repeat_sd(pairs)
    return Z95 * math.sqrt(2) * sd, sd, len(pairs)


@dataclasses.dataclass(frozen=True)
class KindOffset:
    """The offset between two GPU kinds: recorded runs (``record`` kind) trained again from the same
    config and seed on the ``repeat`` kind, ``repeat − record`` (a fraction) as the estimate and the paired
    95 % interval ``(estimate, low, high)``, per metric and split (``offsets``, keyed as the study's rows
    are: ``accuracy``, ``test_accuracy``, ``coarse_accuracy``, ...; a key not there: not measured), and
    how many pairs measured each (``counts``)."""

    path: Path
    record: str
    repeat: str
    pairs: int
    offsets: dict[str, tuple[float, float, float]]
    counts: dict[str, int]

    def on(self, split: str, metric: str = "accuracy") -> tuple[float, float, float] | None:
        return self.offsets.get(metric if split == "val" else f"test_{metric}")


OFFSET_METRICS = ("accuracy", "coarse_accuracy")  # the metrics bench/gpu_kinds.py measures an offset of


def kind_offset(path) -> KindOffset:
    """The :class:`KindOffset` in the JSON ``bench/gpu_kinds.py compare --json`` writes: ``pairs`` (each
    with ``kinds``: [record, repeat]) and ``<key>_offset`` for each key measured (``accuracy``,
    ``test_accuracy``, ``coarse_accuracy``, ``test_coarse_accuracy``: ``points``, ``ci95`` in percentage
    points, ``pairs``). ValueError names what is wrong with the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kinds = {tuple(pair["kinds"]) for pair in data["pairs"]}
        offsets, counts = {}, {}
        for key in (f"{prefix}{metric}" for metric in OFFSET_METRICS for prefix in ("", "test_")):
            found = data.get(f"{key}_offset")
            if found is not None:
                offsets[key] = (found["points"] / 100, found["ci95"][0] / 100, found["ci95"][1] / 100)
                counts[key] = int(found.get("pairs", len(data["pairs"])))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(f"{path}: not an offset file of bench/gpu_kinds.py "
                         f"({type(error).__name__}: {error})") from None
    if not kinds:
        raise ValueError(f"{path}: it holds no pairs (no run trained on both kinds)")
    if len(kinds) != 1 or len(next(iter(kinds))) != 2:
        raise ValueError(f"{path}: every pair must go from one record kind to one repeat kind (found {sorted(kinds)})")
    (record, repeat), = kinds
    if "accuracy" not in offsets and "test_accuracy" not in offsets:
        raise ValueError(f"{path}: it holds no offset (accuracy_offset and test_accuracy_offset are both missing)")
    return KindOffset(path=path, record=record, repeat=repeat, pairs=len(data["pairs"]), offsets=offsets,
                      counts=counts)
