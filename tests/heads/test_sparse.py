"""Sparsemax / 1.5-entmax: regression guard against keras.ops.sparsemax's wrong threshold (Keras 3.15).

``keras.ops.sparsemax`` sums the cumulative sums over the whole support instead of taking the one at
the support size, so on rows whose support has more than one class it returns a vector that does
not sum to 1 (``[0.1, 0.2, 0.3, 0.4]`` gives all zeros). Our own sparsemax must not share the bug.
"""

import keras
import numpy as np
import pytest
from hypothesis import assume, given

import keras_softmax as ks

from . import references as ref
from .helpers import HYPOTHESIS, logits, to_np

BUG_ROW = np.array([[0.1, 0.2, 0.3, 0.4]], dtype="float32")


def test_sparsemax_on_the_row_keras_gets_wrong():
    p = to_np(ks.Sparsemax()(BUG_ROW))
    np.testing.assert_allclose(p, [[0.1, 0.2, 0.3, 0.4]], atol=1e-6)  # full support, tau = 0
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)


@HYPOTHESIS
@given(z=logits(8, bound=1.0))
def test_sparsemax_sums_to_one_and_matches_reference_with_large_support(z):
    p_ref = ref.sparsemax(z)
    assume(np.all((p_ref > 0).sum(-1) > 1))  # the rows the keras bug gets wrong
    p = to_np(ks.Sparsemax()(z))
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, atol=1e-5)
    np.testing.assert_array_equal(p > 1e-6, p_ref > 1e-6)  # same support


def test_our_heads_do_not_call_keras_ops_sparsemax(monkeypatch):
    def broken(*args, **kwargs):
        raise AssertionError("keras.ops.sparsemax must not be used: its threshold is wrong in 3.15")

    monkeypatch.setattr(keras.ops, "sparsemax", broken)
    monkeypatch.setattr(keras.activations, "sparsemax", broken, raising=False)
    for layer in (ks.Sparsemax(), ks.Entmax15()):
        for training in (False, True):
            out = to_np(layer(BUG_ROW, training=training))
            np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-6)
    loss = ks.SparsemaxLoss(from_logits=True)([3], BUG_ROW)
    assert np.isfinite(to_np(loss))


@pytest.mark.xfail(strict=False, reason=(
    "keras.ops.sparsemax in Keras 3.15 takes a wrong threshold; an XPASS here means upstream "
    "fixed it (then keras.ops.sparsemax could be compared against, or used)."))
def test_keras_ops_sparsemax_is_still_wrong_upstream():
    """Documents the upstream bug: this fails (xfail) while keras.ops.sparsemax is wrong."""
    got = to_np(keras.ops.sparsemax(BUG_ROW))
    np.testing.assert_allclose(got, ref.sparsemax(BUG_ROW), atol=1e-6)


def test_keras_ops_sparsemax_bug_is_what_we_think():
    """Pin the exact wrong answer, so the xfail above fails for the reason it says."""
    got = to_np(keras.ops.sparsemax(BUG_ROW))
    if np.allclose(got, ref.sparsemax(BUG_ROW), atol=1e-6):
        pytest.skip("keras.ops.sparsemax is fixed upstream")
    np.testing.assert_allclose(got, 0.0, atol=1e-7)  # all zeros: sums to 0, not 1


@HYPOTHESIS
@given(z=logits(7, bound=2.0))
def test_entmax15_sums_to_one_and_matches_bisection_reference(z):
    p = to_np(ks.Entmax15()(z))
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, ref.entmax15(z), atol=1e-5)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_sparse_heads_give_exact_zeros(name):
    z = np.array([[5.0, 4.9, -3.0, -10.0, 0.0]], dtype="float32")
    p = to_np(ks.get_head(name).layer(z))
    assert p[0, 3] == 0.0 and p[0, 2] == 0.0
    assert np.all(p[0, :2] > 0)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_sparse_heads_shift_invariant_at_large_magnitude(name):
    """Rows are shifted by their max first: adding 1e4 changes nothing beyond float32 rounding."""
    z = np.array([[0.3, -0.2, 0.1, -1.5]], dtype="float32")
    layer = ks.get_head(name).layer
    np.testing.assert_allclose(to_np(layer(z + 1e4)), to_np(layer(z)), atol=2e-3)
    np.testing.assert_allclose(to_np(layer(z - 1e4)), to_np(layer(z)), atol=2e-3)
