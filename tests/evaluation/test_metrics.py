"""Metrics against independent references: hand-built cases, closed forms, and properties."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_softmax.evaluation.metrics import (
    compute_metrics,
    expected_calibration_error,
    reliability_bins,
    top_k_accuracy,
)

REPO = Path(__file__).resolve().parents[2]


def _probs_predicting(pred, num_classes, confidence=0.7):
    """Rows whose argmax is ``pred``, with max probability ``confidence`` and the rest spread evenly."""
    pred = np.asarray(pred)
    rest = (1.0 - confidence) / (num_classes - 1)
    probs = np.full((len(pred), num_classes), rest)
    probs[np.arange(len(pred)), pred] = confidence
    return probs


# ----------------------------------------------------------------------------------------- accuracy


def test_accuracy_and_top_k_hand_built():
    probs = np.array([
        [0.50, 0.30, 0.15, 0.05],  # y=0: top1 hit
        [0.10, 0.20, 0.30, 0.40],  # y=2: rank 2 -> top2 hit
        [0.40, 0.35, 0.20, 0.05],  # y=2: rank 3 -> top3 hit
        [0.70, 0.10, 0.15, 0.05],  # y=3: rank 4 -> top4 hit only
    ])
    y = np.array([0, 2, 2, 3])
    assert top_k_accuracy(y, probs, k=1) == pytest.approx(0.25)
    assert top_k_accuracy(y, probs, k=2) == pytest.approx(0.50)
    assert top_k_accuracy(y, probs, k=3) == pytest.approx(0.75)
    assert top_k_accuracy(y, probs, k=4) == pytest.approx(1.00)
    assert top_k_accuracy(y, probs, k=50) == 1.0  # clipped to C
    metrics = compute_metrics(y, probs)
    assert metrics["accuracy"] == pytest.approx(0.25)
    assert metrics["top5_accuracy"] == 1.0  # top-min(5, 4)
    assert metrics["num_examples"] == 4 and metrics["num_classes"] == 4


def test_top5_with_many_classes_counts_rank_five_not_six():
    c = 10
    probs = np.tile(np.arange(c, 0, -1, dtype=float), (2, 1))  # class 0 most probable, class 9 least
    probs /= probs.sum(axis=1, keepdims=True)
    y = np.array([4, 5])  # ranks 5 and 6
    assert compute_metrics(y, probs)["top5_accuracy"] == pytest.approx(0.5)


def test_ties_break_to_lowest_index_consistently():
    probs = np.array([[0.5, 0.5], [0.5, 0.5]])
    y = np.array([0, 1])
    assert compute_metrics(y, probs)["accuracy"] == 0.5  # argmax -> class 0
    assert top_k_accuracy(y, probs, k=1) == 0.5
    assert top_k_accuracy(y, probs, k=2) == 1.0


def test_top_k_matches_sklearn_without_ties():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(12), size=300)
    y = rng.integers(0, 12, size=300)
    for k in (1, 3, 5):
        assert top_k_accuracy(y, probs, k) == pytest.approx(top_k_accuracy_score(y, probs, k=k, labels=range(12)))


# ---------------------------------------------------------------------------------- precision/recall


def test_macro_precision_recall_f1_hand_computed():
    # Confusion matrix (rows = true, columns = predicted); class 3 never occurs and is never predicted:
    #   [[2, 1, 0, 0],
    #    [1, 1, 0, 0],
    #    [0, 1, 3, 0],
    #    [0, 0, 0, 0]]
    # precision = [2/3, 1/3, 1, 0], recall = [2/3, 1/2, 3/4, 0], F1 = [2/3, 2/5, 6/7, 0]
    pairs = [(0, 0)] * 2 + [(0, 1)] + [(1, 0)] + [(1, 1)] + [(2, 1)] + [(2, 2)] * 3
    y = np.array([t for t, _ in pairs])
    pred = np.array([p for _, p in pairs])
    metrics = compute_metrics(y, _probs_predicting(pred, 4), class_names=["a", "b", "c", "d"])

    assert metrics["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]]
    assert metrics["accuracy"] == pytest.approx(6 / 9)
    assert metrics["precision_macro"] == pytest.approx((2 / 3 + 1 / 3 + 1 + 0) / 4)  # 1/2
    assert metrics["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4 + 0) / 4)  # 23/48
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 2 / 5 + 6 / 7 + 0) / 4)  # 101/210
    per_class = {row["name"]: row for row in metrics["per_class"]}
    assert per_class["b"]["precision"] == pytest.approx(1 / 3)
    assert per_class["b"]["recall"] == pytest.approx(1 / 2)
    assert per_class["b"]["f1"] == pytest.approx(2 / 5)
    assert per_class["c"]["precision"] == pytest.approx(1.0)
    assert per_class["c"]["recall"] == pytest.approx(0.75)
    assert per_class["d"] == {"name": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert [row["support"] for row in metrics["per_class"]] == [3, 2, 4, 0]


def test_confusion_rows_sum_to_support_and_default_names():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(7), size=200)
    y = rng.integers(0, 7, size=200)
    metrics = compute_metrics(y, probs)
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.dtype.kind == "i"
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y, minlength=7))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(probs.argmax(1), minlength=7))
    assert [row["support"] for row in metrics["per_class"]] == np.bincount(y, minlength=7).tolist()
    assert [row["name"] for row in metrics["per_class"]] == [str(i) for i in range(7)]


# ----------------------------------------------------------------------------------------------- ECE


def test_ece_zero_when_confidence_equals_accuracy():
    # Every prediction has confidence 0.8 and exactly 80% are right: perfectly calibrated.
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-12)
    assert compute_metrics(y, probs)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_two_bin_hand_computed():
    # Bin (0, 0.5]: 4 examples at confidence 0.4, 1 correct  -> |0.25 - 0.4| = 0.15
    # Bin (0.5, 1]: 6 examples at confidence 0.9, 3 correct  -> |0.50 - 0.9| = 0.40
    # ECE = 4/10 * 0.15 + 6/10 * 0.40 = 0.30
    low = np.tile([0.4, 0.2, 0.2, 0.2], (4, 1))
    high = np.tile([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3], (6, 1))
    probs = np.vstack([low, high])
    y = np.array([0, 1, 1, 1] + [0, 0, 0, 2, 2, 2])
    assert expected_calibration_error(y, probs, num_bins=2) == pytest.approx(0.30)
    bins = reliability_bins(y, probs, num_bins=2)
    assert bins == [
        {"lower": 0.0, "upper": 0.5, "count": 4, "confidence": pytest.approx(0.4), "accuracy": 0.25},
        {"lower": 0.5, "upper": 1.0, "count": 6, "confidence": pytest.approx(0.9), "accuracy": 0.5},
    ]
    metrics = compute_metrics(y, probs, num_bins=2)
    assert metrics["ece"] == pytest.approx(0.30)
    assert metrics["reliability"] == bins


def test_bins_are_right_closed_and_empty_bins_are_none():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    bins = reliability_bins(np.array([0, 0]), probs, num_bins=4)
    assert [b["count"] for b in bins] == [0, 1, 0, 1]  # 0.5 -> (0.25, 0.5]; 1.0 -> (0.75, 1]
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    assert bins[3] == {"lower": 0.75, "upper": 1.0, "count": 1, "confidence": 1.0, "accuracy": 1.0}


def test_ece_fully_wrong_and_confident_is_one():
    probs = np.tile([1.0, 0.0, 0.0], (5, 1))
    assert expected_calibration_error(np.full(5, 2), probs, num_bins=10) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ properties


@st.composite
def predictions(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(1, 8))
    raw = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0.0, 1.0)))
    probs = (raw + 1e-3) / (raw + 1e-3).sum(axis=1, keepdims=True)
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return y, probs


@settings(max_examples=60, deadline=None)
@given(predictions(), st.integers(1, 20))
def test_properties(pred, num_bins):
    y, probs = pred
    n, c = probs.shape
    metrics = compute_metrics(y, probs, num_bins=num_bins)
    cm = np.array(metrics["confusion_matrix"])
    assert 0.0 <= metrics["ece"] <= 1.0 + 1e-12
    assert metrics["ece"] == expected_calibration_error(y, probs, num_bins)
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert cm.sum() == n
    assert top_k_accuracy(y, probs, 1) == metrics["accuracy"]
    assert top_k_accuracy(y, probs, c) == 1.0
    assert metrics["accuracy"] <= metrics["top5_accuracy"]
    assert len(metrics["reliability"]) == num_bins
    assert sum(b["count"] for b in metrics["reliability"]) == n
    for key in ("precision_macro", "recall_macro", "f1_macro"):
        assert 0.0 <= metrics[key] <= 1.0
    json.dumps(metrics, allow_nan=False)  # strict JSON, plain Python types


def test_result_is_plain_json_types():
    metrics = compute_metrics(np.array([0, 1], dtype=np.int32), np.array([[0.9, 0.1], [0.3, 0.7]], np.float32))
    text = json.dumps(metrics, allow_nan=False)
    assert json.loads(text) == metrics
    assert type(metrics["accuracy"]) is float and type(metrics["num_examples"]) is int


def test_float32_probabilities_and_column_labels_accepted():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], np.float32)
    metrics = compute_metrics(np.array([[0], [1], [1]]), probs)
    assert metrics["accuracy"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------ validation

GOOD = np.array([[0.9, 0.1], [0.3, 0.7]])


@pytest.mark.parametrize(
    ("y", "probs", "match"),
    [
        ([0, 1], np.array([0.9, 0.1]), r"shape \(N, C\)"),
        ([0, 1, 1], GOOD, "3 labels but probs has 2 rows"),
        ([0, 2], GOOD, r"must be in \[0, 1\]"),
        ([-1, 0], GOOD, r"must be in \[0, 1\]"),
        ([0.5, 1.0], GOOD, "non-integral"),
        (np.eye(2, dtype=int), GOOD, "one-hot"),
        ([0, 1], np.log(GOOD), "log-probabilities"),
        ([0, 1], np.array([[3.0, -1.0], [0.2, 2.5]]), "logits"),
        ([0, 1], np.array([[2.0, 1.0], [0.2, 2.5]]), "sum to 1"),
        ([0, 1], np.array([[np.nan, 1.0], [0.3, 0.7]]), "NaN"),
        (np.array([], dtype=int), np.zeros((0, 3)), "zero examples"),
        (["a", "b"], GOOD, "integer class indices"),
    ],
)
def test_validation_errors(y, probs, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(np.asarray(y), probs)


def test_other_argument_errors():
    with pytest.raises(ValueError, match="class_names has 3 names but probs has 2 classes"):
        compute_metrics([0, 1], GOOD, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="num_bins"):
        compute_metrics([0, 1], GOOD, num_bins=0)
    with pytest.raises(ValueError, match="num_bins"):
        expected_calibration_error([0, 1], GOOD, num_bins=2.5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_k_accuracy([0, 1], GOOD, k=0)


# --------------------------------------------------------------------------------------------- layering


def test_evaluation_layer_imports_no_keras_or_tensorflow():
    """The subpackage itself pulls in neither Keras nor TensorFlow (its parent package is stubbed out)."""
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("keras_softmax")
        pkg.__path__ = [{str(REPO / "keras_softmax")!r}]
        sys.modules["keras_softmax"] = pkg
        import keras_softmax.evaluation
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax", "torch"))
        assert not bad, bad
        import matplotlib
        assert "matplotlib.pyplot" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
