"""The original study's mismatch (head output fed to a from-logits cross-entropy), on purpose (GUIDE §2)."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_softmax as ks
from keras_softmax import mismatch

from . import references as ref
from .helpers import BACKEND, one_hot, to_np

Z = np.array([[2.0, -1.0, 0.5, 1.0], [0.0, 3.0, -2.0, 1.5]], dtype="float32")
Y = np.array([1, 2])


def test_mismatched_loss_treats_output_as_logits():
    """On every backend: the same value as Keras' from-logits CE applied to a plain tensor."""
    out = to_np(ks.get_head("softmax").layer(Z))
    loss = mismatch.mismatched_loss()
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(to_np(loss(Y, out)), to_np(keras_ce(Y, keras.ops.convert_to_tensor(out))),
                               rtol=1e-6)
    np.testing.assert_allclose(to_np(loss(Y, out)), ref.nll_softmax(Y, out).mean(), rtol=1e-6)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is type(loss)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the _keras_logits shortcut exists only on TF")
@pytest.mark.filterwarnings("ignore:.*received `from_logits=True`:UserWarning")
def test_mismatched_loss_is_mismatched_on_tensorflow_too():
    """Keras' own from-logits CE, given a softmax *output* on TF, silently uses the logits behind it."""
    out = ks.get_head("softmax").layer(Z)
    matched = to_np(ks.ProbabilityCrossEntropy()(Y, out))
    keras_ce = to_np(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(Y, out))
    assert keras_ce == pytest.approx(matched, rel=1e-5)  # the trap: not a mismatch at all
    ours = to_np(mismatch.mismatched_loss()(Y, out))
    assert ours == pytest.approx(ref.nll_softmax(Y, ref.softmax(Z)).mean(), rel=1e-5)
    assert abs(ours - matched) > 0.1


@pytest.mark.parametrize("name", ["softmax", "gumbel", "sparsemax", "entmax15", "taylor", "base2"])
def test_mismatched_gradient_differs_from_p_minus_y(name):
    p = ref.reference(name, Z)
    expected = p - one_hot(Y, 4)
    matched = mismatch.logit_gradients(name, Z, Y, mismatched=False)
    wrong = mismatch.logit_gradients(name, Z, Y, mismatched=True)
    if name in ("softmax", "gumbel", "sparsemax", "entmax15"):
        np.testing.assert_allclose(matched, expected, atol=1e-5)
    assert np.abs(wrong - expected).max() > 0.1
    # the double softmax shrinks the gradient: the study's probability heads barely learned
    assert np.linalg.norm(wrong) < 0.5 * np.linalg.norm(matched)


def test_mismatched_gradient_is_the_double_softmax_formula():
    """J_softmax(z)^T (softmax(p) - y), p = softmax(z): the chain rule of CE(softmax(p), y)."""
    wrong = mismatch.logit_gradients("softmax", Z, Y, mismatched=True)
    p = ref.softmax(Z)
    r = ref.softmax(p) - one_hot(Y, 4)
    expected = np.stack([(np.diag(pi) - np.outer(pi, pi)) @ ri for pi, ri in zip(p, r)])
    np.testing.assert_allclose(wrong, expected, atol=1e-6)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_mismatched_gradient_of_sparse_heads_uses_the_true_jacobian(name):
    """Under the mismatched CE the sparse heads' logits get J(z)^T (softmax(p) - y), J the true
    Jacobian (finite differences of the float64 reference), not the straight-through copy
    softmax(p) - y that only the head's own Fenchel-Young loss may use."""
    z = np.array([[1.0, 0.2, 0.8, -0.5], [0.3, 0.1, -0.2, 0.25]], dtype="float32")  # away from kinks
    y = np.array([3, 2])
    wrong = mismatch.logit_gradients(name, z, y, mismatched=True)
    reference_map = ref.sparsemax if name == "sparsemax" else ref.entmax15
    p = reference_map(z)
    assert p[0, 3] == 0.0 and np.all((p > 0).sum(-1) > 1)
    r = ref.softmax(p) - one_hot(y, 4)
    jacobian = np.stack([(reference_map(z + e) - reference_map(z - e)) / 2e-6
                         for e in np.eye(4)[:, None, :] * 1e-6], axis=-1)
    np.testing.assert_allclose(wrong, np.einsum("bi,bij->bj", r, jacobian), atol=1e-5)
    assert np.abs(wrong - r).max() > 0.05


def test_saturation_curve_mismatched_gradient_collapses():
    rows = mismatch.saturation_curve("softmax", scales=(1, 2, 4, 8, 16, 32), num_classes=10, seed=0)
    assert [row["scale"] for row in rows] == [1, 2, 4, 8, 16, 32]
    norms = np.array([row["mismatched_norm"] for row in rows])
    assert np.all(np.isfinite(norms))
    # monotone-ish: each at most a little above the previous, and falling by orders of magnitude overall
    assert np.all(norms[1:] <= 2.0 * norms[:-1])
    assert norms[-1] < 1e-3
    assert norms[-1] < 1e-2 * norms[0]


@pytest.mark.parametrize("name", ["log_softmax", "sparsemax", "entmax15"])
def test_saturation_curve_matched_gradient_stays_near_sqrt2(name):
    """The true class gets the lowest logit: as the head saturates on another class, p - y tends to
    e_k - e_y, of norm sqrt(2). A matched loss keeps pushing; a mismatched one stops."""
    rows = mismatch.saturation_curve(name, scales=(1, 4, 16, 32), num_classes=10, seed=0)
    assert rows[-1]["matched_norm"] == pytest.approx(math.sqrt(2), abs=1e-3)
    for row in rows:
        assert row["matched_norm"] > 0.5


def test_saturation_curve_softmax_matched_gradient_stays_near_sqrt2():
    """ProbabilityCrossEntropy's floor bounds its value, not its gradient: the matched softmax keeps
    p - y far below p_y = 1e-7 (a flat floor gave 0 from scale 8 on)."""
    rows = mismatch.saturation_curve("softmax", scales=(1, 8, 32), num_classes=10, seed=0)
    assert rows[-1]["matched_norm"] == pytest.approx(math.sqrt(2), abs=1e-3)


def test_saturation_curve_softmax_matched_is_p_minus_y_while_above_floor():
    rows = mismatch.saturation_curve("softmax", scales=(1, 2, 4), num_classes=10, seed=0)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 10)).astype("float32")
    label = [int(np.argmin(base[0]))]
    for row in rows:
        p = ref.softmax(base * np.float32(row["scale"]))
        assert p[0, label[0]] > 1e-7
        expected = np.linalg.norm(p - one_hot(label, 10))
        assert row["matched_norm"] == pytest.approx(expected, rel=1e-4)
        assert row["mismatched_norm"] < 0.1 * row["matched_norm"]


@pytest.mark.parametrize("name", ["log_softmax", "log_taylor", "hierarchical"])
def test_mismatch_is_harmless_for_normalised_log_heads(name):
    """log_softmax(log p) = log p when exp(log p) sums to 1: the from-logits CE of a log head's output
    is its NLL, so the study's log heads trained normally."""
    width = 120 if name == "hierarchical" else 4
    z = np.random.default_rng(0).normal(size=(2, width)).astype("float32") * 3
    y = np.array([1, 2])
    np.testing.assert_allclose(
        mismatch.logit_gradients(name, z, y, mismatched=True),
        mismatch.logit_gradients(name, z, y, mismatched=False),
        atol=1e-5,
    )
    head = ks.get_head(name)
    out = head.layer(z)
    np.testing.assert_allclose(to_np(ops.log_softmax(out)), to_np(out), atol=1e-5)  # idempotence


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the _keras_logits shortcut exists only on TF")
def test_probability_cross_entropy_does_not_use_keras_logits():
    """TF attaches the logits to a softmax output (``_keras_logits``) and Keras' own CE silently uses
    them. Ours must compute -log max(p_y, 1e-7) from the probabilities it is given."""
    z = np.array([[0.0, 200.0, -50.0]], dtype="float32")  # p_0 = e^-200 underflows to 0
    out = ks.get_head("softmax").layer(z)
    assert to_np(out)[0, 0] == 0.0
    assert hasattr(out, "_keras_logits")  # the trap is armed
    ours = float(to_np(ks.ProbabilityCrossEntropy()(np.array([0]), out)))
    assert ours == pytest.approx(-math.log(1e-7), rel=1e-6)
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    keras_value = float(to_np(keras_ce(np.array([0]), out)))
    assert keras_value == pytest.approx(200.0, rel=1e-3)  # recovered from the logits behind p
    assert keras_value > 10 * ours
    # and the same probabilities without the attribute give Keras' clipped value, like ours
    plain = keras.ops.convert_to_tensor(to_np(out))
    clipped = float(to_np(keras_ce(np.array([0]), plain)))
    assert clipped == pytest.approx(ours, rel=1e-3)
