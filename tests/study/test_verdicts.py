"""The report's statistics against independent computations: Holm by a brute-force closed form, Welch
and TOST against scipy's t-tests, the margin from the repeat noise by hand; and the calibration
cases where temperature scaling does not apply."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_softmax.study.report import _floor_decides_nll, calibration_status
from keras_softmax.study.stats import excluded_beyond, holm, holm_levels, repeat_sd, tost, welch_interval
from keras_softmax.study.verdicts import compare_family, margin_from_repeats


def holm_by_definition(p):
    """Holm (1979): the adjusted p of hypothesis i is the largest, over the hypotheses j ranked at or
    before i, of min(1, (m − rank_j) · p_j), ranks from 0 (ties broken by position)."""
    m = len(p)
    rank = {i: r for r, i in enumerate(sorted(range(m), key=lambda k: (p[k], k)))}
    return [max(min(1.0, (m - rank[j]) * p[j]) for j in range(m) if rank[j] <= rank[i]) for i in range(m)]


@pytest.mark.parametrize("p", [
    [0.01, 0.04, 0.03, 0.005],
    [0.2, 0.2, 0.01],
    [0.5],
    [0.001, 0.9, 0.049, 0.02, 0.03, 0.0125],
])
def test_holm_matches_its_definition(p):
    assert holm(p) == pytest.approx(holm_by_definition(p), abs=1e-15)


def test_holm_on_a_textbook_case_and_random_families():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, max(1·0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for m in (2, 5, 11):
        p = list(rng.uniform(0, 0.2, m))
        assert holm(p) == pytest.approx(holm_by_definition(p))


def test_a_holm_level_interval_excludes_zero_exactly_when_holm_rejects():
    rng = np.random.default_rng(1)
    groups = [rng.normal(0.66 + shift, 0.004, 5) for shift in (0, 0.002, 0.006, 0.012, -0.008)]
    diffs = [welch_interval(g, groups[0]) for g in groups[1:]]
    p = [d.p_value for d in diffs]
    levels = holm_levels(p, 0.05)
    for i, d in enumerate(diffs):
        half = scipy_stats.t.ppf(0.5 + levels[i] / 2, d.df) * d.se
        assert (abs(d.difference) > half) == (holm(p)[i] < 0.05)
        assert levels[i] >= 0.95


def test_holm_levels_follow_the_step_that_rejects_or_the_step_where_holm_stopped():
    # Closed forms, m = 4, α = 0.05: 0.001 is rejected at step 0 (level 1 − α/4), 0.012 at step 1
    # (1 − α/3); 0.03 fails step 2 (0.03 · 2 ≥ α), so Holm stops there and it and 0.04 are retained, both
    # at that step's level 1 − α/2. The old levels gave 0.04 the last step's 1 − α/1 = 95 %, an interval
    # that excluded 0 (p < 0.05) for a comparison Holm does not reject (adjusted p 0.06).
    p = [0.04, 0.001, 0.03, 0.012]
    assert holm_levels(p, 0.05) == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 4, 1 - 0.05 / 2, 1 - 0.05 / 3])
    assert holm(p)[0] == pytest.approx(0.06)
    # An interval at level L excludes 0 exactly when its two-sided p < 1 − L; over random families that
    # agrees with Holm's adjusted p-value on every comparison.
    rng = np.random.default_rng(3)
    for m in (1, 2, 3, 5, 11):
        for _ in range(200):
            p = list(rng.uniform(0, 0.08, m) ** rng.uniform(0.5, 2))
            levels = holm_levels(p, 0.05)
            assert [pi < 1 - level for pi, level in zip(p, levels)] == [q < 0.05 for q in holm(p)]
    assert holm_levels([0.2, 0.3, 0.5], 0.05) == pytest.approx([1 - 0.05 / 3] * 3)  # none rejected: Bonferroni


def test_welch_test_matches_scipy():
    a, b = [0.6642, 0.6652, 0.6689], [0.6688, 0.6662, 0.6702]
    d = welch_interval(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert d.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert d.difference / d.se == pytest.approx(reference.statistic, rel=1e-10)
    low, high = reference.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-10)


@pytest.mark.parametrize("margin", [0.005, 0.0112, 0.03])
def test_tost_matches_two_one_sided_scipy_tests(margin):
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.668, 0.004, 5), rng.normal(0.666, 0.006, 4)
    d = welch_interval(a, b)
    e = tost(d, margin, alpha=0.05)
    # H0: Δ <= −margin, i.e. a + margin is no larger than b; H0: Δ >= +margin, i.e. a − margin no smaller
    p_lower = scipy_stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    p_upper = scipy_stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    assert (e.p_lower, e.p_upper) == pytest.approx((p_lower, p_upper), rel=1e-9)
    assert e.p_value == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    # the (1 − 2α) interval lies inside ±margin exactly when TOST rejects
    assert (-margin < e.low and e.high < margin) == (e.p_value < 0.05)


def test_excluded_beyond_is_the_smallest_margin_tost_accepts():
    a, b = [0.6642, 0.6652, 0.6689, 0.6650, 0.6671], [0.6688, 0.6662, 0.6702, 0.6655, 0.6690]
    d = welch_interval(a, b)
    x = excluded_beyond(d, 0.05)
    assert tost(d, x * 1.001).p_value < 0.05 < tost(d, x * 0.999).p_value
    assert excluded_beyond(d, 0.05 / 4) > x  # family-wise (Bonferroni over 4) excludes less


def test_repeat_noise_and_the_margin_by_hand(tmp_path):
    pairs = [[0.6812, 0.682], [0.6802, 0.6836], [0.6724, 0.6762]]
    sd = math.sqrt(sum((a - b) ** 2 for a, b in pairs) / (2 * len(pairs)))
    assert repeat_sd(pairs) == pytest.approx(sd)
    path = tmp_path / "repeats.json"
    path.write_text(json.dumps({"pairs": [{"run": f"r{i}", "accuracy": p} for i, p in enumerate(pairs)]}))
    margin, got_sd, count = margin_from_repeats(path)
    assert (got_sd, count) == (pytest.approx(sd), 3)
    assert margin == pytest.approx(scipy_stats.norm.ppf(0.975) * math.sqrt(2) * sd)


def test_family_verdicts():
    base = [0.660, 0.662, 0.664, 0.661, 0.663]
    values = {"ref": base, "same": [v + 0.0001 for v in base[::-1]], "worse": [v - 0.05 for v in base],
              "noisy": [0.60, 0.70, 0.65, 0.62, 0.68], "one": [0.7]}
    found = compare_family(values, [("same", "ref"), ("worse", "ref"), ("noisy", "ref"), ("one", "ref")],
                           margin=0.0112)
    words = {v.a: v.word for v in found}
    assert words == {"same": "equivalent", "worse": "worse", "noisy": "inconclusive", "one": "untested"}
    assert all(v.family_size == 4 for v in found)  # the declared family, the untested comparison included
    noisy = next(v for v in found if v.a == "noisy")
    assert noisy.beyond >= 0.0112  # inconclusive: what it excludes is at least the margin
    # Holm within the family: the adjusted p-values are those of holm() on the raw ones
    raw = [v.difference.p_value for v in found if v.difference is not None]
    assert [v.p_holm for v in found if v.difference is not None] == pytest.approx(holm(raw + [1.0])[:3])
    # without a margin nothing is called equivalent
    assert compare_family(values, [("same", "ref")])[0].word == "inconclusive"


def test_a_result_significant_alone_can_lose_it_in_its_family():
    values = {"ref": [0.660, 0.662, 0.664], "edge": [0.665, 0.667, 0.669],
              **{f"n{i}": [0.659 + 0.001 * i, 0.662, 0.665 - 0.001 * i] for i in range(9)}}
    alone = compare_family(values, [("edge", "ref")])[0]
    family = compare_family(values, [("edge", "ref")] + [(f"n{i}", "ref") for i in range(9)])[0]
    assert alone.word == "better" and alone.p_holm < 0.05
    assert family.word == "inconclusive" and family.p_holm == pytest.approx(10 * alone.p_holm)
    assert family.holm_high - family.holm_low > alone.holm_high - alone.holm_low


@pytest.mark.parametrize("row, applicable, why", [
    ({"head": "sparsemax"}, False, "exact zeros"),
    ({"head": "entmax15"}, False, "exact zeros"),
    ({"head": "entmax_alpha", "calibration_applicable": True}, False, "exact zeros"),
    ({"head": "softmax", "head_params": {"drop_lowest": 0.1}, "calibration_applicable": True}, False, "drop_lowest"),
    ({"head": "softmax", "head_params": {"drop_lowest": 0.3}}, False, "drop_lowest"),
    ({"head": "exp_sin", "calibration_applicable": False, "calibration_reason": "exp_sin: bounded"}, False, "bounded"),
    ({"head": "softmax", "head_params": {"drop_lowest": 0.0}, "calibration_applicable": True}, True, None),
    ({"head": "log_gumbel", "head_params": {"temperature": 3.0}, "calibration_applicable": True}, True, None),
])
def test_temperature_scaling_is_not_applicable_where_the_output_has_exact_zeros(row, applicable, why):
    ok, reason = calibration_status(row)
    assert ok is applicable
    if why:
        assert why in reason


def test_a_temperature_cannot_move_probability_onto_an_exact_zero():
    """The reason, checked: softmax(log p / T) of a distribution with a zero keeps the zero for every T."""
    p = np.array([0.7, 0.3, 0.0])
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    for temperature in (0.5, 1.0, 5.0, 50.0):
        z = log_p / temperature
        q = np.exp(z - z[np.isfinite(z)].max())
        assert q[2] == 0.0


def test_the_floor_decides_the_nll_of_exact_zeros_and_of_the_mismatched_wiring():
    assert _floor_decides_nll({"head": "sparsemax"})
    assert _floor_decides_nll({"head": "softmax", "head_params": {"drop_lowest": 0.1}})
    assert "mismatched" in _floor_decides_nll({"head": "softmax", "loss_pairing": "mismatched"})
    assert _floor_decides_nll({"head": "softmax", "loss_pairing": "matched"}) is None
    assert _floor_decides_nll({"head": "exp_sin", "calibration_applicable": False}) is None


def test_holm_is_invariant_to_the_order_of_the_family():
    p = [0.03, 0.001, 0.2, 0.04]
    for perm in itertools.permutations(range(4)):
        assert [holm([p[i] for i in perm])[perm.index(k)] for k in range(4)] == pytest.approx(holm(p))


def test_holm_counts_the_declared_family_untested_comparisons_included():
    # Regression (audit of 2026-12-05): Holm ran over the comparisons that happened to have runs, so a
    # question of 3 declared comparisons with 1 run so far called p = 0.03 "better" (m = 1).
    values = {"ref": [0.660, 0.662, 0.664], "edge": [0.665, 0.667, 0.669], "later": [0.7], "never": []}
    alone = compare_family(values, [("edge", "ref")])[0]
    assert 0.0167 < alone.p_holm < 0.05 and alone.word == "better"
    found = compare_family(values, [("edge", "ref"), ("later", "ref"), ("never", "ref")], margin=0.001)
    edge = found[0]
    raw = scipy_stats.ttest_ind(values["edge"], values["ref"], equal_var=False).pvalue
    assert edge.p_holm == pytest.approx(holm_by_definition([raw, 1.0, 1.0])[0]) == pytest.approx(3 * raw)
    assert edge.word == "inconclusive" and edge.family_size == 3
    assert edge.holm_level == pytest.approx(1 - 0.05 / 3)
    # "beyond ±x": the 1 − 2α/m interval with m = 3 (Bonferroni over the declared family), by scipy
    d = welch_interval(values["edge"], values["ref"])
    half = scipy_stats.t.ppf(1 - 0.05 / 3, d.df) * d.se
    assert edge.beyond == pytest.approx(abs(d.difference) + half)
    assert [v.word for v in found[1:]] == ["untested", "untested"]


def test_counting_an_untested_comparison_with_p_1_is_never_less_conservative():
    """Whatever p the untested comparisons later get, Holm's adjusted p of a tested one can only fall."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        tested = list(rng.uniform(0, 0.1, 3))
        bound = holm(tested + [1.0, 1.0])[:3]
        later = holm_by_definition(tested + list(rng.uniform(0, 1, 2)))[:3]
        assert all(b >= x - 1e-15 for b, x in zip(bound, later))


def test_a_verdict_on_fewer_runs_than_planned_is_provisional():
    values = {"ref": [0.660, 0.662, 0.664, 0.661, 0.663], "a": [0.70, 0.71, 0.72], "b": [0.7]}
    planned = {"ref": 5, "a": 5, "b": 5}
    a, b = compare_family(values, [("a", "ref"), ("b", "ref")], planned=planned)
    assert a.word == "better" and a.provisional and (a.planned_a, a.planned_b) == (5, 5)
    assert b.word == "untested" and not b.provisional  # no verdict at all, nothing to mark
    values["a"] += [0.705, 0.715]
    assert not compare_family(values, [("a", "ref")], planned=planned)[0].provisional
    assert not compare_family(values, [("a", "ref")])[0].provisional  # nothing planned: not known
