"""Edges a Keras user meets (the audit of 2026-12-05): masks written as -inf, label smoothing when a
probability underflows to 0, a head and a loss of different output kinds, registering a loss that
cannot take label smoothing, and parameter messages. Each test fails on the code before its fix."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_softmax as ks

from .helpers import grad, to_np
from .references import entmax15 as entmax15_reference


def test_entmax15_reads_a_minus_inf_logit_as_masked():
    z = np.array([[1.0, 2.0, -np.inf, 0.5], [-np.inf, 3.0, -np.inf, 3.0]], dtype="float32")
    got = to_np(ks.Entmax15()(z))
    finite = np.where(np.isinf(z), -1e9, z)
    np.testing.assert_allclose(got, entmax15_reference(finite), atol=1e-6)
    assert got[0, 2] == got[1, 0] == got[1, 2] == 0.0 and np.allclose(got[1], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(got, to_np(ks.EntmaxAlpha(alpha=1.5)(z)), atol=1e-5)
    weights = keras.ops.convert_to_tensor(np.arange(4.0, dtype="float32"))
    g = grad(lambda v: keras.ops.sum(ks.Entmax15()(v) * weights), z)
    assert np.isfinite(g).all()


def _smoothed_softmax_loss(gap: float, **kw) -> float:
    z = np.array([[gap] + [0.0] * 9], dtype="float32")
    head = ks.Softmax()
    return float(to_np(ks.ProbabilityCrossEntropy(label_smoothing=0.1, **kw)(np.array([0]), head(z))))


def test_label_smoothing_keeps_charging_a_class_whose_probability_underflowed():
    # Regression: p == 0 was taken for a masked class, so past a gap of ~95 the smoothed loss of a
    # softmax far too sure of itself fell from 1.45 to 0, with no gradient.
    eps, n, floor = 0.1, 10, -np.log(1e-7)
    for gap in (95.0, 110.0):
        expected = (eps / n) * (n - 1) * floor  # the nine others at the floor; the label's share costs ~0
        assert _smoothed_softmax_loss(gap) == pytest.approx(expected, rel=1e-4)
    # drop_lowest still gets no smoothing mass on the classes it masked out
    z = np.array([[3.0, 2.0, 1.0, 0.0]], dtype="float32")
    head = ks.Softmax(drop_lowest=0.5)
    p = to_np(head(z))
    got = float(to_np(ks.ProbabilityCrossEntropy(label_smoothing=0.2)(np.array([0]), head(z))))
    kept = np.log(p[0, :2])
    assert got == pytest.approx(-(0.8 * kept[0] + 0.2 * kept.mean()), rel=1e-5)


@pytest.mark.parametrize(("head", "loss", "message"), [
    (ks.LogSoftmax(), ks.ProbabilityCrossEntropy(), "ProbabilityCrossEntropy() after LogSoftmax: it outputs "
                                                    "log-probabilities"),
    (ks.Softmax(), ks.NegativeLogLikelihood(), "NegativeLogLikelihood() after Softmax: it outputs probabilities"),
    (ks.Base2Softmax(), ks.NegativeLogLikelihood(), "use ProbabilityCrossEntropy()"),
])
def test_a_loss_refuses_a_head_of_the_other_output_kind(head, loss, message):
    z = np.array([[1.0, 2.0, 0.5]], dtype="float32")
    with pytest.raises(ks.CompositionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loss(np.array([1]), head(z))


def test_the_hierarchical_head_is_tagged_and_refused_by_a_probability_loss():
    head = ks.HierarchicalSoftmax(fine_to_coarse=[0, 0, 1, 1])
    out = head(np.zeros((2, head.num_logits(4)), dtype="float32"))
    with pytest.raises(ks.CompositionError, match="after HierarchicalSoftmax"):
        ks.ProbabilityCrossEntropy()(np.array([0, 1]), out)
    assert float(to_np(ks.NegativeLogLikelihood()(np.array([0, 1]), out))) == pytest.approx(np.log(4), rel=1e-5)


def test_registering_a_loss_that_takes_no_label_smoothing_is_one_error():
    class PlainLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return keras.ops.mean(y_pred)

    with pytest.raises(ValueError, match="loss PlainLoss must take label_smoothing="):
        ks.register_head("plain_loss_head", ks.Softmax, loss=PlainLoss)
    with pytest.raises(ValueError, match="loss SparseCategoricalCrossentropy must take label_smoothing="):
        ks.register_head("keras_loss_head", ks.Softmax, loss=keras.losses.SparseCategoricalCrossentropy)
    assert "plain_loss_head" not in ks.list_heads()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ks.TaylorSoftmax(order=4.0), r"order must be an even integer in \[2, \d+\] \(got 4.0\)"),
    (lambda: ks.ProbabilityCrossEntropy(epsilon=None), r"epsilon must be a number in \(0, 1\) \(got None\)"),
    (lambda: ks.ProbabilityCrossEntropy(epsilon="x"), r"epsilon must be a number in \(0, 1\) \(got 'x'\)"),
    (lambda: ks.GumbelSoftmax(seed=2**40), r"seed must be an integer in \[0, 2\*\*32\) or None"),
    (lambda: ks.Softmax(dtype=keras.DTypePolicy("mixed_bfloat16")), "heads compute in float32"),
])
def test_a_bad_parameter_is_one_clear_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_integers_and_dtype_policies_are_accepted_as_keras_accepts_them():
    assert ks.GumbelSoftmax(seed=np.int64(3)).seed == 3
    assert ks.EntmaxAlpha(iterations=np.int64(30)).iterations == 30
    assert ks.Softmax(dtype=keras.DTypePolicy("float32")).compute_dtype == "float32"


@pytest.mark.parametrize("make", [lambda: ks.Softmax(), lambda: ks.Sparsemax(), lambda: ks.Entmax15(),
                                  lambda: ks.Base2Softmax()])
def test_a_row_masked_everywhere_is_all_zeros_as_in_keras(make):
    z = np.array([[0.0, 1.0, 5.0, 4.0], [1.0, 2.0, 3.0, 4.0]], dtype="float32")
    mask = np.array([[False] * 4, [True, True, False, True]])
    got = to_np(make()(z, mask=mask))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(to_np(keras.layers.Softmax()(z, mask=mask))[0], 0.0)
    assert got[1, 2] == 0.0 and got[1].sum() == pytest.approx(1.0, abs=1e-6)


def test_drop_lowest_drops_masked_entries_first():
    # Regression: drop_lowest ranked the masked entries too, so with half the row masked it dropped the
    # real ones and the row came out uniform (0.25 each, masked entries included).
    z = np.array([[0.0, 1.0, 5.0, 4.0]], dtype="float32")
    got = to_np(ks.Softmax(drop_lowest=0.5)(z, mask=np.array([[True, True, False, False]])))
    np.testing.assert_allclose(got, [[1 / (1 + np.e), np.e / (1 + np.e), 0.0, 0.0]], atol=1e-6)


def test_drop_lowest_works_without_a_static_class_count():
    # Regression: inside a tf.function of signature [None, None] nothing was dropped, without a word.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a class axis of unknown static size is a TensorFlow graph's")
    import tensorflow as tf

    layer = ks.Softmax(drop_lowest=0.5)
    traced = tf.function(lambda v: layer(v), input_signature=[tf.TensorSpec([None, None], tf.float32)])
    z = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 0.5, 1.0, -1.0]], dtype="float32")
    np.testing.assert_allclose(traced(z).numpy(), to_np(layer(z)), atol=1e-7)
    assert (traced(z).numpy() == 0).sum() == 4
