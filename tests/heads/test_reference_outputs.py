"""Every head's inference output against an independent float64 numpy reference (float32 error < 1e-4).

Also: rows are distributions (probabilities >= 0 summing to 1; exp of log heads sums to 1) and the
argmax of the output is the argmax of the reference.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_softmax.cifar100 import FINE_TO_COARSE

from . import references as ref
from .helpers import HEADS, HYPOTHESIS, SMALL_MAP, is_log, logits, make_head, probabilities, to_np

TOL = 1e-4


def params_strategy(name):
    """Head parameters worth varying, per head."""
    if name in ("softmax", "log_softmax", "gumbel", "log_gumbel"):
        # With drop_lowest > 0 the temperature is a power of two, so z / T rounds identically in
        # float32 and float64 and the masked set cannot differ through a rounding near-tie.
        masked = st.fixed_dictionaries({
            "temperature": st.sampled_from([0.5, 1.0, 2.0]),
            "drop_lowest": st.sampled_from([0.25, 0.5]),
        })
        plain = st.fixed_dictionaries({"temperature": st.floats(0.25, 4.0)})
        return st.one_of(plain, masked)
    if name in ("taylor", "log_taylor"):
        return st.fixed_dictionaries({"order": st.sampled_from([2, 4, 6, 8])})
    if name == "hierarchical":
        return st.just({"fine_to_coarse": list(SMALL_MAP)})
    if name == "entmax_alpha":
        return st.fixed_dictionaries({"alpha": st.sampled_from([1.01, 1.2, 1.5, 2.0, 3.0]),
                                      "learn_alpha": st.booleans()})
    return st.just({})


def width_of(name):
    return len(SMALL_MAP) + max(SMALL_MAP) + 1 if name == "hierarchical" else None


def check_against_reference(name, params, z):
    head = make_head(name, **params)
    out = to_np(head.layer(z))
    assert out.dtype == np.float32
    p_ref = ref.reference(name, z, params)
    p = probabilities(head, out)
    assert out.shape == p_ref.shape
    np.testing.assert_allclose(p, p_ref, rtol=0, atol=TOL, err_msg=f"{name} {params}")
    if is_log(head):
        log_ref = ref.reference_log(name, z, params)
        kept = np.isfinite(log_ref)
        np.testing.assert_allclose(out[kept], log_ref[kept], rtol=0, atol=TOL, err_msg=f"{name} {params}")
        # classes removed by drop_lowest: a large finite negative log-probability
        assert np.all(out[~kept] < -1e8)
    # rows are distributions
    assert np.all(np.isfinite(out))
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-5)
    # argmax agrees with the reference's wherever the reference has a clear winner
    top2 = np.sort(p_ref, axis=-1)[:, -2:] if p_ref.shape[-1] > 1 else None
    got, want = out.argmax(-1), p_ref.argmax(-1)
    for row in range(out.shape[0]):
        if top2 is None or top2[row, 1] - top2[row, 0] > 1e-5:
            assert got[row] == want[row], (name, params, z[row])
        else:  # a near-tie: the chosen class must be one of the tied maxima
            assert p_ref[row, got[row]] >= p_ref[row].max() - 1e-5


@pytest.mark.parametrize("name", HEADS)
@HYPOTHESIS
@given(data=st.data())
def test_matches_reference(name, data):
    width = width_of(name) or data.draw(st.sampled_from([3, 8]), label="width")
    z = data.draw(logits(width), label="logits")
    params = data.draw(params_strategy(name), label="params")
    check_against_reference(name, params, z)


# --------------------------------------------------------------------------- fixed cases
@pytest.mark.parametrize("name", [h for h in HEADS if h != "hierarchical"])
@pytest.mark.parametrize(
    "z",
    [
        [[1.0, 2.0, 3.0]],
        [[0.1, 0.2, 0.3, 0.4]],
        [[0.0, 0.0, 0.0, 0.0, 0.0]],
        [[-3.0, 1.5, 1.5, 0.25], [7.0, -7.0, 0.0, 0.5]],
        [[50.0, -50.0, 10.0, 9.9, 0.0, -1.0]],
    ],
    ids=["123", "ramp", "equal", "two-rows", "wide"],
)
def test_fixed_cases(name, z):
    check_against_reference(name, {}, np.asarray(z, dtype="float32"))


def test_known_values():
    """Values worked out by hand, independent of any code."""
    cases = [
        ("softmax", {}, [[0.0, math.log(3.0)]], [[0.25, 0.75]]),
        ("softmax", {"temperature": 2.0}, [[0.0, 2 * math.log(3.0)]], [[0.25, 0.75]]),
        ("sparsemax", {}, [[1.0, 2.0, 2.5]], [[0.0, 0.25, 0.75]]),
        ("sparsemax", {}, [[1.0, 2.0, 3.5]], [[0.0, 0.0, 1.0]]),
        ("sparsemax", {}, [[0.1, 0.2, 0.3, 0.4]], [[0.1, 0.2, 0.3, 0.4]]),
        ("entmax15", {}, [[0.0, 0.0]], [[0.5, 0.5]]),
        ("entmax15", {}, [[4.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]]),
        ("base2", {}, [[0.0, 1.0]], [[1 / 3, 2 / 3]]),
        ("taylor", {"order": 2}, [[0.0, 1.0, -3.0]], [[1 / 6, 2.5 / 6, 2.5 / 6]]),
        ("exp_sin", {}, [[0.0, math.pi / 2]], [[1 / (1 + math.e), math.e / (1 + math.e)]]),
        ("normal_cdf", {}, [[0.0, 40.0]], [[math.exp(0.5) / (math.exp(0.5) + math.e),
                                            math.e / (math.exp(0.5) + math.e)]]),
        ("hierarchical", {"fine_to_coarse": [0, 0, 1]}, [[0.0, 0.0, 5.0, 0.0, 0.0]],
         [[0.25, 0.25, 0.5]]),
    ]
    for name, params, z, want in cases:
        head = make_head(name, **params)
        got = probabilities(head, head.layer(np.asarray(z, dtype="float32")))
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "gumbel", "log_gumbel"])
@pytest.mark.parametrize("fraction,n,dropped", [(0.1, 10, 1), (0.29, 100, 29), (0.5, 7, 3), (0.9, 10, 9)])
def test_drop_lowest_masks_exactly_the_lowest_fraction(name, fraction, n, dropped):
    rng = np.random.default_rng(n)
    z = rng.permutation(np.arange(n, dtype="float32"))[None, :] * 0.1  # distinct logits
    head = make_head(name, drop_lowest=fraction)
    p = probabilities(head, head.layer(z))
    assert ref.n_dropped(fraction, n) == dropped
    assert np.sum(p < 1e-30) == dropped
    lowest = np.argsort(z[0])[:dropped]
    assert np.all(p[0, lowest] < 1e-30)
    np.testing.assert_allclose(p, ref.softmax(z, drop_lowest=fraction), atol=TOL)


def test_drop_lowest_keeps_ties_at_the_threshold():
    head = make_head("softmax", drop_lowest=0.5)
    p = to_np(head.layer(np.array([[1.0, 1.0, 1.0, 1.0]], dtype="float32")))
    np.testing.assert_allclose(p, 0.25, atol=1e-7)


def test_hierarchical_cifar100_map():
    rng = np.random.default_rng(0)
    head = make_head("hierarchical", fine_to_coarse=None)
    assert head.num_logits(100) == 120
    z = (rng.normal(size=(3, 120)) * 4).astype("float32")
    out = to_np(head.layer(z))
    assert out.shape == (3, 100)
    np.testing.assert_allclose(out, ref.hierarchical_log(z, FINE_TO_COARSE), atol=TOL)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)
    # p(coarse c) = sum of p(fine) over the fine classes of c = softmax of the coarse logits
    coarse = np.zeros((3, 20))
    np.add.at(coarse.T, np.asarray(FINE_TO_COARSE), np.exp(out).T)
    np.testing.assert_allclose(coarse, ref.softmax(z[:, 100:]), atol=1e-5)


def test_hierarchical_custom_map_with_singleton_group():
    fine_to_coarse = [2, 0, 0, 1, 2, 2, 0]  # group 1 has a single fine class: p(f|c) = 1
    head = make_head("hierarchical", fine_to_coarse=fine_to_coarse)
    z = np.random.default_rng(1).normal(size=(4, 10)).astype("float32") * 3
    out = to_np(head.layer(z))
    np.testing.assert_allclose(out, ref.hierarchical_log(z, fine_to_coarse), atol=TOL)
    np.testing.assert_allclose(out[:, 3], ref.log_softmax(z[:, 7:])[:, 1], atol=1e-5)


@pytest.mark.parametrize("order", [2, 4, 6, 8, 10, 12])
def test_taylor_error_is_within_the_documented_bound(order):
    """The documented float32 accuracy (kernels.TAYLOR_LOG_ERROR), measured as it is stated: the
    error of log p, i.e. the *relative* error of p, on a fine grid of non-integer logits (integer
    logits and an absolute tolerance on p hide the cancellation near z = -order/2.7, and the
    relative error of a small probability). Each z sits in a row with a large logit, so its
    probability is small."""
    from keras_softmax.heads.kernels import TAYLOR_LOG_ERROR

    far = np.logspace(np.log10(12.0), 4.0, 2000)
    z = np.concatenate([np.linspace(-12.0, 12.0, 24001), far, -far]).astype("float32")
    rows = np.stack([z, np.zeros_like(z), np.full_like(z, 60.0), np.full_like(z, -2.25)], axis=-1)
    log_ref = ref.log_taylor(rows, order)
    log_out = to_np(make_head("log_taylor", order=order).layer(rows)).astype(np.float64)
    log_error = np.abs(log_out - log_ref).max()
    p_out = to_np(make_head("taylor", order=order).layer(rows)).astype(np.float64)
    representable = log_ref > -69.0  # p > 1e-30: a normal float32 with digits to spare
    relative_error = np.abs(p_out[representable] / np.exp(log_ref[representable]) - 1.0).max()
    assert np.exp(log_ref).min() < 1e-3  # small probabilities are in the test
    bound = TAYLOR_LOG_ERROR[order]
    assert log_error <= bound, (order, log_error)
    assert relative_error <= bound, (order, relative_error)
    assert log_error > bound / 20, (order, log_error)  # the bound is tight, not decoration


def test_taylor_high_orders_stay_finite_at_huge_logits():
    """The polynomial is evaluated scaled by |z|^k."""
    # huge logits: the dominant term z^k / k! must not overflow float32
    z = np.array([[1e4, -1e4, 0.0, 5e3]], dtype="float32")
    for order in (2, 4, 8, 12):
        out = to_np(make_head("taylor", order=order).layer(z))
        assert np.all(np.isfinite(out)), order
        np.testing.assert_allclose(out, ref.taylor(z, order), atol=TOL, err_msg=order)


@pytest.mark.parametrize("order", [14, 16, 30])
def test_taylor_orders_beyond_float32_accuracy_are_refused(order):
    """Beyond order 12 the alternating terms cancel in float32 (order >= 26 even goes negative)."""
    with pytest.raises(ValueError, match=r"order must be an even integer in \[2, 12\]"):
        make_head("taylor", order=order)


def test_taylor_order_accepts_numpy_integers():
    assert make_head("taylor", order=np.int64(4)).layer.order == 4
