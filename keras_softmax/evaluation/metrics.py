"""Classification metrics from predicted probabilities: accuracy, top-k, macro P/R/F1, calibration.

Everything here is plain numpy / scikit-learn (no Keras), so it runs on any backend's outputs and on
predictions loaded from disk. Inputs are integer labels ``y_true`` of shape ``(N,)`` and probabilities
``probs`` of shape ``(N, C)``. Log heads (``log_softmax``, ``log_gumbel``, ``log_taylor``,
``hierarchical``) output log-probabilities: ``exp()`` them first. Passing log-probabilities or raw logits
is caught and reported, because silently scoring the wrong kind of output is exactly the wiring mistake
this project exists to avoid.

The predicted class is ``argmax(probs)``; ties go to the lowest class index (numpy's rule), and top-k uses
the same tie rule, so ``top_k_accuracy(..., k=1) == accuracy`` always.

>>> import numpy as np
>>> probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
>>> m = compute_metrics(np.array([0, 2, 1]), probs, class_names=["cat", "dog", "fox"])
>>> round(m["accuracy"], 4), m["top5_accuracy"], m["confusion_matrix"][1]
(0.6667, 1.0, [1, 0, 0])
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

__all__ = ["compute_metrics", "expected_calibration_error", "reliability_bins", "top_k_accuracy"]

# How far a row of probabilities may sum from 1 before we call it "not a distribution". Generous, so
# float16/bfloat16 outputs pass, while logits and log-probabilities (which sum to anything) do not.
_SUM_TOLERANCE = 1e-2


def _check_inputs(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels int64 (N,), probs float64 (N, C))`` or raise ``ValueError`` saying what is wrong."""
    probs = np.asarray(probs)
    y = np.asarray(y_true)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got shape {probs.shape}")
    n, c = probs.shape
    if c < 1:
        raise ValueError(f"probs must have at least one class column, got shape {probs.shape}")
    if n == 0:
        raise ValueError("cannot compute metrics on zero examples (probs has shape (0, C))")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"y_true must be integer class indices of shape (N,), got shape {y.shape}"
            + (" (one-hot labels? pass argmax(y, axis=-1))" if y.ndim == 2 else "")
        )
    if y.shape[0] != n:
        raise ValueError(f"y_true has {y.shape[0]} labels but probs has {n} rows")
    if not np.issubdtype(probs.dtype, np.number) or np.issubdtype(probs.dtype, np.complexfloating):
        raise ValueError(f"probs must be real numbers, got dtype {probs.dtype}")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"y_true must be integer class indices, got dtype {y.dtype}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("y_true must be integer class indices; got non-integral values")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"y_true values must be in [0, {c - 1}] for {c} classes, got range [{y.min()}, {y.max()}]")
    p = probs.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or Inf")
    if p.min() < 0:
        hint = (
            " (all values are <= 0: these look like log-probabilities; pass exp(log_probs))"
            if p.max() <= 0
            else " (logits? pass the head's probabilities)"
        )
        raise ValueError(f"probs must be non-negative probabilities, got minimum {p.min():.4g}{hint}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _SUM_TOLERANCE:
        raise ValueError(
            f"each row of probs must sum to 1 (a probability distribution); row {worst} sums to "
            f"{sums[worst]:.6g}. Pass head probabilities, not logits; exp() the output of log heads."
        )
    return y, p


def _check_num_bins(num_bins) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    return int(num_bins)


def top_k_accuracy(y_true, probs, k: int = 5) -> float:
    """Fraction of examples whose true class is among the ``k`` most probable classes.

    ``k`` larger than the number of classes C is clipped to C (top-C accuracy is 1). Ties in probability
    are broken towards the lower class index, as ``argmax`` does, so ``k=1`` equals plain accuracy.

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: probabilities, shape ``(N, C)``.
        k: positive integer.

    Returns:
        A Python float in [0, 1].
    """
    y, p = _check_inputs(y_true, probs)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = min(int(k), p.shape[1])
    # A stable sort of -p ranks equal probabilities by class index: the same rule as argmax.
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def _bin_statistics(y: np.ndarray, p: np.ndarray, num_bins: int):
    """Per-bin (count, mean confidence, accuracy) for equal-width confidence bins on [0, 1]."""
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # Bins are right-closed, (lower, upper], as in Guo et al. (2017); confidence 0 (impossible for a
    # distribution) would land in the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=num_bins)
    return edges, count, conf_sum, correct_sum


def expected_calibration_error(y_true, probs, num_bins: int = 15) -> float:
    """Expected calibration error (ECE) of the top-1 prediction.

    ECE = Σ_b (n_b / N) · |acc_b − conf_b| over ``num_bins`` equal-width confidence bins (lower, upper]
    on [0, 1], where conf_b is the mean max-probability and acc_b the accuracy of the n_b examples in
    bin b (Naeini et al. 2015; Guo et al. 2017). 0 is perfectly calibrated; the value lies in [0, 1].

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: probabilities, shape ``(N, C)``.
        num_bins: number of equal-width bins.

    Returns:
        A Python float in [0, 1].
    """
    y, p = _check_inputs(y_true, probs)
    num_bins = _check_num_bins(num_bins)
    return _ece(y, p, num_bins)


def _ece(y: np.ndarray, p: np.ndarray, num_bins: int) -> float:
    _, _, conf_sum, correct_sum = _bin_statistics(y, p, num_bins)
    # Σ_b (n_b/N)|acc_b − conf_b| = Σ_b |Σcorrect_b − Σconf_b| / N, with no division by empty bins.
    return float(np.sum(np.abs(correct_sum - conf_sum)) / y.shape[0])


def reliability_bins(y_true, probs, num_bins: int = 15) -> list[dict]:
    """The reliability-diagram bins behind :func:`expected_calibration_error`.

    Returns:
        One dict per bin, in order: ``lower``, ``upper``, ``count``, ``confidence`` (mean max-probability)
        and ``accuracy``; the last two are ``None`` for empty bins.
    """
    y, p = _check_inputs(y_true, probs)
    num_bins = _check_num_bins(num_bins)
    return _reliability(y, p, num_bins)


def _reliability(y: np.ndarray, p: np.ndarray, num_bins: int) -> list[dict]:
    edges, count, conf_sum, correct_sum = _bin_statistics(y, p, num_bins)
    bins = []
    for b in range(num_bins):
        n = int(count[b])
        bins.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": n,
            "confidence": float(conf_sum[b] / n) if n else None,
            "accuracy": float(correct_sum[b] / n) if n else None,
        })
    return bins


def compute_metrics(y_true, probs, *, class_names=None, num_bins: int = 15) -> dict:
    """All evaluation metrics for one set of predictions, as a JSON-able dict.

    Args:
        y_true: integer labels, shape ``(N,)``.
        probs: probabilities, shape ``(N, C)`` (``exp()`` the output of log heads first).
        class_names: optional sequence of C names for ``per_class``; defaults to ``"0" .. "C-1"``.
        num_bins: number of equal-width confidence bins for ``ece`` / ``reliability``.

    Returns:
        ``accuracy``, ``top5_accuracy`` (top-min(5, C)), ``precision_macro``, ``recall_macro``,
        ``f1_macro`` (scikit-learn, ``zero_division=0``, over all C classes so classes absent from
        ``y_true`` count as 0), ``ece``, ``reliability`` (list of bins), ``per_class`` (list of
        ``{name, precision, recall, f1, support}`` in class order), ``confusion_matrix`` (C×C ints, rows =
        true class, columns = predicted), ``num_examples``, ``num_classes``.
    """
    y, p = _check_inputs(y_true, probs)
    num_bins = _check_num_bins(num_bins)
    n, c = p.shape
    if class_names is None:
        names = [str(i) for i in range(c)]
    else:
        names = [str(name) for name in class_names]
        if len(names) != c:
            raise ValueError(f"class_names has {len(names)} names but probs has {c} classes")

    pred = p.argmax(axis=1)
    labels = np.arange(c)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0
    )
    confusion = np.bincount(y * c + pred, minlength=c * c).reshape(c, c)
    reliability = _reliability(y, p, num_bins)

    return {
        "accuracy": float(np.mean(pred == y)),
        "top5_accuracy": top_k_accuracy(y, p, k=5),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "f1_macro": float(np.mean(f1)),
        "ece": _ece(y, p, num_bins),
        "reliability": reliability,
        "per_class": [
            {
                "name": names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(c)
        ],
        "confusion_matrix": confusion.astype(int).tolist(),
        "num_examples": int(n),
        "num_classes": int(c),
    }
