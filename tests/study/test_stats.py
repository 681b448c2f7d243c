"""Mean ± std over seeds and the Welch interval, checked against numpy and scipy directly."""

import numpy as np
import pytest
from scipy import stats

from keras_softmax.study.report import format_difference, format_summary
from keras_softmax.study.stats import summarize, welch_interval


def test_summary_is_mean_and_sample_std():
    values = [0.61, 0.64, 0.60, 0.66]
    s = summarize(values)
    assert s.n == 4
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))


def test_one_value_has_no_spread_and_none_are_skipped():
    assert summarize([0.5]) == summarize([0.5, None])
    assert summarize([0.5]).std is None and summarize([]).n == 0
    assert format_summary([0.5]) == "0.50" and format_summary([]) == "–"
    assert format_summary([0.61, 0.63], 100, 2) == "62.00 ± 1.41"


@pytest.mark.parametrize(("a", "b"), [
    ([0.61, 0.63, 0.62], [0.58, 0.60, 0.59]),
    ([0.61, 0.65, 0.60], [0.62, 0.63]),
    ([0.10, 0.30, 0.20, 0.25], [0.20, 0.21, 0.19]),
])
def test_welch_interval_matches_scipy(a, b):
    d = welch_interval(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.low, d.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert d.n_a == len(a) and d.n_b == len(b)


def test_no_interval_below_two_runs_and_a_degenerate_one_for_no_spread():
    assert welch_interval([0.5], [0.4, 0.6]) is None
    assert format_difference([0.5], [0.4, 0.6]) == "n/a (n=1 vs 2)"
    d = welch_interval([0.5, 0.5], [0.4, 0.4])
    assert (d.low, d.difference, d.high) == pytest.approx((0.1, 0.1, 0.1))
    assert format_difference([0.61, 0.63, 0.62], [0.58, 0.60, 0.59]).startswith("+3.00 [")
