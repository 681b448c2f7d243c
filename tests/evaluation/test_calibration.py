"""Temperature scaling: recovers a known temperature, never raises the NLL it minimises, says when it does not apply."""

import numpy as np
import pytest
from scipy.special import softmax

from keras_softmax.evaluation.calibration import (
    NOT_APPLICABLE,
    apply_temperature,
    calibrate,
    fit_temperature,
    negative_log_likelihood,
    scale,
)
from keras_softmax.evaluation.evaluate import coarse_metrics
from keras_softmax.evaluation.metrics import expected_calibration_error
from keras_softmax.heads import list_heads


def _sample(true_temperature, n=20000, classes=10, seed=0):
    """Labels drawn from softmax(z) and a model that reports softmax(z * true_temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * 2.5
    truth = softmax(z, axis=1)
    y = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return y, softmax(z * true_temperature, axis=1)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_recovers_a_known_temperature(true_temperature):
    y, probs = _sample(true_temperature)
    assert fit_temperature(y, probs) == pytest.approx(true_temperature, rel=0.05)


def test_calibration_lowers_nll_and_ece_of_an_overconfident_model():
    y, probs = _sample(3.0)
    result = calibrate(y, probs, head="softmax")
    assert result["applicable"] and result["num_bins"] == 15
    assert result["nll_after"] <= result["nll_before"]
    assert result["ece_after"] < result["ece_before"]
    assert result["ece_before"] == pytest.approx(expected_calibration_error(y, probs, 15))
    # The NLL floors p_y at 1e-12, which a few of these sharp predictions reach.
    assert result["nll_before"] == pytest.approx(-np.mean(np.log(probs[np.arange(len(y)), y])), rel=1e-3)
    after = scale(np.log(np.maximum(probs, 1e-12)), result["temperature"])
    assert result["nll_after"] == pytest.approx(negative_log_likelihood(y, after))
    # Cross-fitted: each half scaled with the temperature fit on the other half; on 20,000 examples
    # that costs little against fitting and measuring on the same examples.
    assert len(result["crossfit_temperatures"]) == 2
    assert result["nll_after_crossfit"] == pytest.approx(result["nll_after"], rel=0.01)
    assert result["ece_after_crossfit"] < result["ece_before"]
    # Temperature scaling never changes the predicted class.
    assert np.array_equal(after.argmax(1), probs.argmax(1))


def test_nll_after_never_exceeds_before_even_when_already_calibrated():
    y, probs = _sample(1.0, n=3000, seed=3)
    result = calibrate(y, probs, head="log_softmax")
    assert result["nll_after"] <= result["nll_before"] + 1e-12
    assert result["temperature"] == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("head", ["sparsemax", "entmax15", "entmax_alpha", "exp_sin", "normal_cdf"])
def test_heads_without_a_meaningful_temperature_say_why(head):
    y, probs = _sample(1.0, n=100)
    result = calibrate(y, probs, head=head)
    assert result["applicable"] is False
    assert result["reason"].startswith(head) and "temperature" in result["reason"]
    assert "temperature" not in {k for k in result if k != "reason"}


def test_every_other_head_is_softmax_family():
    assert set(NOT_APPLICABLE) < set(list_heads())
    y, probs = _sample(2.0, n=500)
    for head in set(list_heads()) - set(NOT_APPLICABLE):
        assert calibrate(y, probs, head=head)["applicable"], head


def test_zero_probabilities_are_floored_not_infinite():
    y = np.array([0, 1])
    probs = np.array([[0.0, 1.0], [0.0, 1.0]])  # a float32 softmax that underflowed, wrong on example 0
    result = calibrate(y, probs, head="softmax")
    assert np.isfinite(result["nll_before"]) and np.isfinite(result["nll_after"])


def test_coarse_metrics_sum_probabilities_within_superclasses():
    # Classes 0, 1 -> superclass 0; class 2 -> superclass 1.
    probs = np.array([[0.3, 0.3, 0.4],    # argmax 2 (super 1), summed super 0 (0.6)
                      [0.1, 0.1, 0.8]])
    metrics = coarse_metrics([0, 2], probs, [0, 0, 1])
    assert metrics["coarse_accuracy"] == 1.0
    assert metrics["coarse_accuracy_mapped"] == 0.5
    assert metrics["fine_to_coarse"] == [0, 0, 1]


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_no_temperature_where_drop_lowest_masks_logits_to_exact_zeros(fraction):
    # Regression (audit of 2026-12-05): a run's own report fit T = 0.82 for softmax with drop_lowest = 0.1
    # (and T = 2.35 for entmax_alpha, ECE 9.0 % -> 31.9 %), which the study's tables call not applicable.
    y, probs = _sample(2.0, n=500)
    result = calibrate(y, probs, head="softmax", drop_lowest=fraction)
    assert result["applicable"] is False and f"drop_lowest = {fraction:g}" in result["reason"]
    assert calibrate(y, probs, head="softmax", drop_lowest=0.0)["applicable"]


def test_the_temperature_is_applied_with_the_floor_it_was_fit_with():
    """The map a fitted T stands for: softmax(log max(p, 1e-12) / T). On float32-underflowed zeros another
    floor is another map (1e-45 at T = 6: log p / T = -17.3 instead of -4.6)."""
    y, probs = _sample(6.0, n=4000, seed=5)
    probs = np.where(probs < 1e-13, 0.0, probs)  # exact zeros, as where a float32 softmax underflows
    probs /= probs.sum(axis=1, keepdims=True)
    assert (probs == 0).any()
    temperature = fit_temperature(y, probs)
    by_hand = softmax(np.log(np.maximum(probs, 1e-12)) / temperature, axis=1)
    np.testing.assert_allclose(apply_temperature(probs, temperature), by_hand, rtol=1e-12, atol=1e-15)
    result = calibrate(y, probs, head="softmax")
    assert result["ece_after"] == pytest.approx(expected_calibration_error(y, by_hand, 15))
