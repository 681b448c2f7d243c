"""Temperature scaling (Guo et al. 2017): one temperature for a trained classifier, fit by NLL.

A trained head gives (log-)probabilities ``log p``. Temperature scaling replaces them with
``q = softmax(log p / T)`` for a single ``T > 0`` chosen to minimise the negative log-likelihood of
the true labels on held-out data; ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an
under-confident one, and the predicted class never changes (accuracy is untouched). For the
softmax family ``softmax(log softmax(z) / T) = softmax(z / T)``: it is exactly the head's own
temperature.

Here ``T`` is fit **on the validation split and measured on the same split** (as the issue asks;
the CIFAR-100 copy has no test split), which flatters the "after" figures a little. To show by how
much, :func:`calibrate` also reports a 2-fold cross-fitted ECE and NLL: the split is halved at
random (seed 0), each half is scaled with the temperature fit on the other half, and the figures are
computed over all examples.

Probabilities are floored at :data:`PROBABILITY_FLOOR` before any log (float32 softmax outputs
underflow to exactly 0), so a single confidently wrong example cannot make the NLL infinite. ECE uses
15 equal-width confidence bins (:func:`~keras_softmax.evaluation.metrics.expected_calibration_error`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=(4000, 10)) * 3
>>> y = np.array([rng.choice(10, p=np.exp(r) / np.exp(r).sum()) for r in z])
>>> over = np.exp(2 * z) / np.exp(2 * z).sum(1, keepdims=True)      # twice too confident
>>> 1.8 < calibrate(y, over, head="softmax")["temperature"] < 2.2
True
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from keras_softmax.evaluation.metrics import _check_inputs, expected_calibration_error, reliability_bins
from keras_softmax.floors import PROBABILITY_FLOOR  # one definition: training's val_nll uses it too

__all__ = [
    "NOT_APPLICABLE", "NUM_BINS", "PROBABILITY_FLOOR", "apply_temperature", "calibrate", "fit_temperature",
    "negative_log_likelihood", "scale", "temperature_applicable",
]

NUM_BINS = 15
#: Search interval of the temperature (on log T).
TEMPERATURE_BOUNDS = (0.02, 50.0)

_SPARSE = ("its output has exact zeros (log p = -inf outside the support), so softmax(log p / T) cannot "
           "move probability onto them: a temperature is not a calibration map of this head")
_BOUNDED = ("its scores are bounded ({scores}), so its output is not a softmax of free logits and a "
            "temperature on log p would be a different head, not a calibration of this one")
_DROP_LOWEST = ("the lowest logits of every row are masked to exact zeros (drop_lowest = {fraction:g}), so "
                "softmax(log p / T) cannot move probability onto them: a temperature is not a calibration map "
                "of this head")
#: Heads whose output is not a softmax-family distribution: why a temperature is not meaningful.
NOT_APPLICABLE = {
    "sparsemax": _SPARSE,
    "entmax15": _SPARSE,
    "entmax_alpha": _SPARSE,  # alpha > 1 always (alpha -> 1 only approaches softmax)
    "exp_sin": _BOUNDED.format(scores="p ∝ exp(sin z), sin z in [-1, 1]"),
    "normal_cdf": _BOUNDED.format(scores="p ∝ exp(Φ(z)), Φ(z) in [0, 1]"),
}


def temperature_applicable(head: str, drop_lowest: float = 0.0) -> tuple[bool, str | None]:
    """``(True, None)`` for softmax-family heads, else ``(False, reason)``: not for the heads of
    :data:`NOT_APPLICABLE`, nor for any head whose ``drop_lowest`` masks logits to exact zeros. One rule
    for a run's own report and for a study's tables."""
    reason = NOT_APPLICABLE.get(head)
    if reason is None and float(drop_lowest or 0) > 0:
        reason = _DROP_LOWEST.format(fraction=float(drop_lowest))
    return reason is None, reason


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(probs, PROBABILITY_FLOOR))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log max(p, floor) / T)``: the map a fitted ``T`` stands for, with the same floor as the fit
    (another floor is another map: at T = 6 a floor of 1e-45 instead of 1e-12 moves ECE by points)."""
    return scale(_log(np.asarray(probs, dtype=np.float64)), temperature)


def scale(log_probs, temperature: float) -> np.ndarray:
    """``softmax(log_probs / temperature)`` row by row (float64)."""
    return np.exp(log_softmax(np.asarray(log_probs, dtype=np.float64) / float(temperature), axis=1))


def negative_log_likelihood(y_true, probs) -> float:
    """Mean ``-log max(p_y, PROBABILITY_FLOOR)`` over the examples."""
    y, p = _check_inputs(y_true, probs)
    return float(-np.mean(_log(p[np.arange(len(y)), y])))


def _nll_at(log_probs: np.ndarray, y: np.ndarray, temperature: float) -> float:
    scaled = log_softmax(log_probs / temperature, axis=1)
    return float(-np.mean(np.maximum(scaled[np.arange(len(y)), y], np.log(PROBABILITY_FLOOR))))


def fit_temperature(y_true, probs) -> float:
    """The ``T`` in :data:`TEMPERATURE_BOUNDS` that minimises the NLL of ``softmax(log p / T)``.

    The NLL is convex in ``1 / T``, so a bounded scalar search (Brent's method on ``log T``) finds the
    global minimum.
    """
    y, p = _check_inputs(y_true, probs)
    log_probs = _log(p)
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(lambda u: _nll_at(log_probs, y, float(np.exp(u))), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def calibrate(y_true, probs, *, head: str | None = None, drop_lowest: float = 0.0, num_bins: int = NUM_BINS,
              seed: int = 0) -> dict:
    """Temperature-scale ``probs`` against ``y_true``; the figures before and after.

    Args:
        y_true: integer labels ``(N,)`` (the validation split).
        probs: the head's probabilities ``(N, C)`` (``exp()`` of a log head's output).
        head: the head's registry name; heads in :data:`NOT_APPLICABLE` get no temperature.
        drop_lowest: the head's ``drop_lowest``; > 0 (exact zeros) gets no temperature either.
        num_bins: ECE bins.
        seed: seeds the halving of the cross-fitted figures.

    Returns:
        ``{"applicable": False, "reason": ..., "nll_before", "ece_before", ...}``, or ``applicable``,
        ``temperature``, ``nll_before``,
        ``nll_after``, ``ece_before``, ``ece_after`` (fit and measured on the same examples),
        ``nll_after_crossfit``, ``ece_after_crossfit`` (2-fold cross-fitted), ``crossfit_temperatures``,
        ``num_bins``, ``num_examples`` and ``reliability_after`` (the bins after scaling).
    """
    ok, reason = temperature_applicable(head, drop_lowest) if head is not None else (True, None)
    y, p = _check_inputs(y_true, probs)
    if not ok:
        return {"applicable": False, "reason": f"{head}: {reason}", "nll_before": negative_log_likelihood(y, p),
                "ece_before": expected_calibration_error(y, p, num_bins), "num_bins": int(num_bins),
                "num_examples": int(len(y))}
    temperature = fit_temperature(y, p)
    after = apply_temperature(p, temperature)

    # 2-fold cross-fitting: each half is scaled with the temperature fit on the other half.
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[: len(y) // 2], order[len(y) // 2:])
    crossfit = np.empty_like(p)
    temperatures = []
    if min(len(h) for h in halves) >= 1:
        for fit_on, apply_to in (halves, halves[::-1]):
            t = fit_temperature(y[fit_on], p[fit_on])
            temperatures.append(t)
            crossfit[apply_to] = apply_temperature(p[apply_to], t)
    else:  # a single example: nothing to cross-fit with
        crossfit, temperatures = after, [temperature]

    return {
        "applicable": True,
        "method": "temperature scaling: one T minimising the NLL of softmax(log p / T) on the validation split",
        "temperature": temperature,
        "nll_before": negative_log_likelihood(y, p),
        "nll_after": negative_log_likelihood(y, after),
        "ece_before": expected_calibration_error(y, p, num_bins),
        "ece_after": expected_calibration_error(y, after, num_bins),
        "nll_after_crossfit": negative_log_likelihood(y, crossfit),
        "ece_after_crossfit": expected_calibration_error(y, crossfit, num_bins),
        "crossfit_temperatures": temperatures,
        # At a bound the NLL still fell towards it: a near-constant model (T -> inf) or a perfect one (T -> 0).
        "temperature_at_bound": bool(min(abs(np.log(temperature / b)) for b in TEMPERATURE_BOUNDS) < 1e-3),
        "num_bins": int(num_bins),
        "num_examples": int(len(y)),
        "reliability_after": reliability_bins(y, after, num_bins),
    }
