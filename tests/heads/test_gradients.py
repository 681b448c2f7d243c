"""Matching losses give the logits the gradient p - y (softmax, log_softmax, sparsemax, entmax15).

(a) autodiff of ``head.loss(y, head.layer(z, training=True))`` against ``p - onehot(y)``;
(b) central finite differences, in float64, of the exact score-space losses;
(c) the loss computed from the head's output equals the exact score-space Fenchel-Young loss when the
    true class is in the support (and is a lower bound otherwise).
Plus: every head's matched-loss gradient equals finite differences of -log(reference p_y).
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

import keras_softmax as ks
from keras_softmax import losses

from . import references as ref
from .helpers import (
    HEADS,
    HYPOTHESIS,
    SMALL_MAP,
    central_difference,
    grad,
    logits,
    make_head,
    one_hot,
    probabilities,
    to_np,
)

P_MINUS_Y_HEADS = ("softmax", "log_softmax", "sparsemax", "entmax15")
EXACT_LOSSES = {
    "sparsemax": (losses.sparsemax_loss, ref.sparsemax_loss, ref.sparsemax),
    "entmax15": (losses.entmax15_loss, ref.entmax15_loss, ref.entmax15),
    "entmax_alpha": (losses.entmax_alpha_loss, ref.entmax_alpha_loss, ref.entmax_alpha),  # alpha = 1.5
}

#: Fixed logits, one row each, and the label; the "outside" rows put the label outside the support.
FIXED = {
    "ramp": ([[0.1, 0.2, 0.3, 0.4]], [1]),
    "mixed": ([[1.0, -2.0, 0.5, 3.0, 2.9, -0.3]], [4]),
    "outside": ([[3.0, 0.0, -2.0, 1.0]], [2]),  # label's logit far below the threshold
    "outside-wide": ([[0.0, 5.0, 4.5, -1.0, 2.0]], [0]),
}


def autodiff_logit_gradient(head, z, y):
    """d/dz of the batch-summed matched loss, through the layer in training mode."""
    batch = z.shape[0]
    return grad(lambda v: head.loss(y, head.layer(v, training=True)) * batch, z)


# --------------------------------------------------------------------------- (a) closed form
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", list(FIXED))
@pytest.mark.parametrize("name", P_MINUS_Y_HEADS)
def test_autodiff_gradient_is_p_minus_y(name, case, training):
    """The pair from get_head gives p - y, p from the float64 reference (not the layer's output),
    in training and outside it: a custom loop or an evaluation pass with the matched loss gets the
    Fenchel-Young gradient too (the label outside the support gets its full push either way)."""
    z, y = (np.asarray(v) for v in FIXED[case])
    z = z.astype("float32")
    head = make_head(name)
    p = ref.reference(name, z)
    g = grad(lambda v: head.loss(y, head.layer(v, training=training)), z)
    np.testing.assert_allclose(g, p - one_hot(y, z.shape[-1]), atol=1e-6)
    if case.startswith("outside") and name in EXACT_LOSSES:
        assert p[0, y[0]] == 0.0  # the label is really outside the support ...
        assert g[0, y[0]] == pytest.approx(-1.0)  # ... and still gets the full push


@pytest.mark.parametrize("name", P_MINUS_Y_HEADS)
@HYPOTHESIS
@given(z=logits(6, bound=5.0), data=st.data())
def test_autodiff_gradient_is_p_minus_y_hypothesis(name, z, data):
    y = np.asarray(data.draw(st.lists(st.integers(0, 5), min_size=z.shape[0], max_size=z.shape[0])))
    head = make_head(name)
    p = ref.reference(name, z)
    np.testing.assert_allclose(autodiff_logit_gradient(head, z, y), p - one_hot(y, 6), atol=2e-6)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_gradient_with_temperature_is_p_minus_y_over_t(name):
    z = np.array([[1.0, -2.0, 0.5, 3.0]], dtype="float32")
    head = make_head(name, temperature=2.5)
    p = probabilities(head, head.layer(z))
    np.testing.assert_allclose(autodiff_logit_gradient(head, z, [0]), (p - one_hot([0], 4)) / 2.5, atol=1e-6)


def test_softmax_gradient_survives_the_probability_floor():
    """The floor epsilon = 1e-7 bounds the loss *value* (-log max(p_y, eps)); the gradient stays
    p - y below it (the old flat floor gave 0 here), and is 0, not NaN, once p_y underflows."""
    z = np.array([[0.0, 30.0, 1.0]], dtype="float32")  # p_0 ~ 1e-13
    head = make_head("softmax")
    assert float(to_np(head.loss([0], head.layer(z)))) == pytest.approx(-np.log(1e-7), rel=1e-6)
    p = ref.softmax(z)
    np.testing.assert_allclose(autodiff_logit_gradient(head, z, [0]), p - one_hot([0], 3), atol=1e-6)
    log_head = make_head("log_softmax")
    np.testing.assert_allclose(autodiff_logit_gradient(log_head, z, [0]), p - one_hot([0], 3), atol=1e-6)
    underflow = np.array([[0.0, 200.0, 1.0]], dtype="float32")  # p_0 = e^-200 is 0 in float32
    g = autodiff_logit_gradient(head, underflow, [0])
    np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------- (b) finite differences
@pytest.mark.parametrize("case", list(FIXED))
@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "log_softmax"])
def test_finite_differences_of_exact_loss_are_p_minus_y(name, case):
    z, y = (np.asarray(v) for v in FIXED[case])
    z64 = z.astype(np.float64)
    if name == "log_softmax":
        ref_loss, p_ref = ref.nll_softmax, ref.softmax(z64)
    else:
        ref_loss, p_ref = EXACT_LOSSES[name][1], EXACT_LOSSES[name][2](z64)
    expected = p_ref - one_hot(y, z.shape[-1])
    # float64 reference loss: tight
    fd = central_difference(lambda v: ref_loss(y, v).sum(), z64, 1e-6)
    np.testing.assert_allclose(fd, expected, atol=1e-6)
    # the library's float32 score-space loss: a coarser step against float32 rounding
    if name == "log_softmax":
        def lib_loss(v):
            log_p = ops.log_softmax(v.astype("float32"))
            return float(to_np(losses.NegativeLogLikelihood()(y, log_p)))
    else:
        lib = EXACT_LOSSES[name][0]

        def lib_loss(v):
            return to_np(lib(y, v.astype("float32"))).astype(float).sum()

    fd32 = central_difference(lib_loss, z64, 1e-2)
    np.testing.assert_allclose(fd32, expected, atol=2e-3)
    # and the autodiff gradient of the library's score-space loss is p - y as well
    if name in EXACT_LOSSES:
        g = grad(lambda v: ops.sum(EXACT_LOSSES[name][0](y, v)), z.astype("float32"))
        np.testing.assert_allclose(g, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
@HYPOTHESIS
@given(z=logits(5, bound=3.0), data=st.data())
def test_library_exact_loss_matches_float64_reference(name, z, data):
    y = np.asarray(data.draw(st.lists(st.integers(0, 4), min_size=z.shape[0], max_size=z.shape[0])))
    lib, reference, _ = EXACT_LOSSES[name]
    np.testing.assert_allclose(to_np(lib(y, z)), reference(y, z), atol=5e-5)


# --------------------------------------------------------------------------- (c) loss values
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
@HYPOTHESIS
@given(z=logits(6, bound=3.0), data=st.data())
def test_head_loss_equals_exact_loss_when_label_in_support(name, z, data):
    head = make_head(name)
    p = to_np(head.layer(z))
    rows = []
    for row in range(z.shape[0]):
        support = np.flatnonzero(p[row] > 0)
        rows.append(int(data.draw(st.sampled_from(sorted(support.tolist())))))
    y = np.asarray(rows)
    per_example = head.loss.__class__(reduction=None)(y, head.layer(z, training=True))
    lib, reference, _ = EXACT_LOSSES[name]
    np.testing.assert_allclose(to_np(per_example), reference(y, z), atol=5e-5)
    np.testing.assert_allclose(to_np(per_example), to_np(lib(y, z)), atol=5e-5)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_head_loss_is_a_lower_bound_when_label_outside_support(name):
    z, y = (np.asarray(v) for v in FIXED["outside"])
    z = z.astype("float32")
    head = make_head(name)
    assert to_np(head.layer(z))[0, y[0]] == 0
    value = float(to_np(head.loss(y, head.layer(z))))
    exact = float(EXACT_LOSSES[name][1](y, z)[0])
    assert value <= exact + 1e-6
    assert value > 0


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_head_loss_equals_exact_loss_for_target_distribution_in_support(name):
    """A soft target (CutMix) inside the support: the loss from p is still the exact loss."""
    z = np.array([[2.0, 1.8, 1.5, -3.0]], dtype="float32")
    head = make_head(name)
    p = to_np(head.layer(z))
    assert np.all(p[0, :3] > 0) and p[0, 3] == 0
    q = np.array([[0.5, 0.3, 0.2, 0.0]], dtype="float32")
    value = to_np(head.loss(q, head.layer(z)))
    np.testing.assert_allclose(value, EXACT_LOSSES[name][1](q, z), atol=1e-5)
    np.testing.assert_allclose(value, to_np(EXACT_LOSSES[name][0](q, z)), atol=1e-5)
    g = grad(lambda v: head.loss(q, head.layer(v, training=True)), z)
    np.testing.assert_allclose(g, p - q, atol=1e-6)


# --------------------------------------------------------------------------- every head
@pytest.mark.parametrize("name", HEADS)
def test_matched_loss_gradient_matches_finite_differences_of_reference(name):
    """For every head, autodiff of its matched loss == central differences (float64) of the
    reference loss: -log p_ref[y] for the softmax-like heads, the exact loss for sparse heads."""
    rng = np.random.default_rng(7)
    width = 9 if name == "hierarchical" else 6
    z = rng.normal(size=(2, width)).astype("float32") * 1.5
    y = np.array([0, 4])
    head = make_head(name)
    params = {"fine_to_coarse": list(SMALL_MAP)} if name == "hierarchical" else {}
    if name in EXACT_LOSSES:
        def reference_loss(v):
            return EXACT_LOSSES[name][1](y, v).sum()
    else:
        def reference_loss(v):
            log_p = ref.reference_log(name, v, params)
            return -log_p[np.arange(len(y)), y].sum()

    fd = central_difference(reference_loss, z, 1e-6)
    g = autodiff_logit_gradient(head, z, y) if name not in ("gumbel", "log_gumbel") else grad(
        lambda v: head.loss(y, head.layer(v)) * 2, z)  # noise off: gumbel == softmax(z / tau)
    np.testing.assert_allclose(g, fd, atol=1e-5, err_msg=name)


SPARSE_LAYERS = {"sparsemax": ks.Sparsemax, "entmax15": ks.Entmax15}
#: The issue's example: the label (4) outside the support of sparsemax and of 1.5-entmax.
OUTSIDE_Z = np.array([[2.0, 1.5, 1.2, 0.8, -1.0]], dtype="float32")
OUTSIDE_Y = np.array([4])


def _reference_jacobian(name, z):
    """d p / d z of the float64 reference map by central differences: (batch, N out, N in)."""
    reference_map = EXACT_LOSSES[name][2]
    columns = []
    for j in range(z.shape[-1]):
        e = np.zeros(z.shape)
        e[:, j] = 1e-6
        columns.append((reference_map(z + e) - reference_map(z - e)) / 2e-6)
    return np.stack(columns, axis=-1)


def _other_losses(y, w):
    """Losses a user may put after a bare sparse layer: ``name -> f(p) -> scalar``.

    Cross-entropy takes a label inside the support (outside it, -log clip(p_y) is flat in p)."""
    target = ops.convert_to_tensor(one_hot(y, w.shape[-1]), "float32")
    inside = ops.convert_to_tensor(one_hot([1], w.shape[-1]), "float32")
    wt = ops.convert_to_tensor(w, "float32")
    return {
        "categorical_crossentropy": lambda p: keras.losses.CategoricalCrossentropy()(inside, p),
        "mse": lambda p: keras.losses.MeanSquaredError()(target, p),
        "attention_sum": lambda p: ops.sum(wt * p),
    }


@pytest.mark.parametrize("training", [True, False, None])
@pytest.mark.parametrize("loss_name", ["categorical_crossentropy", "mse", "attention_sum"])
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_bare_layer_gradient_is_the_true_jacobian_under_any_loss(name, loss_name, training):
    """A bare ks.Sparsemax() / ks.Entmax15() in someone's model: whatever the loss and the training
    flag, the logits get J(z)^T dL/dp, J from finite differences of the float64 reference map and
    dL/dp by autodiff of the loss alone at p. (The straight-through path would give dL/dp itself.)"""
    z = OUTSIDE_Z
    w = np.array([[1.0, 0.0, 0.0, 0.0, -1.0]], dtype="float32") * 0.7 + 0.3
    loss_of_p = _other_losses(OUTSIDE_Y, w)[loss_name]
    p = EXACT_LOSSES[name][2](z).astype("float32")
    assert p[0, OUTSIDE_Y[0]] == 0.0
    dl_dp = grad(loss_of_p, p)
    expected = np.einsum("bi,bij->bj", dl_dp, _reference_jacobian(name, z))
    layer = SPARSE_LAYERS[name]()
    assert layer.fenchel_young_gradient is False  # the bare layer's default
    g = grad(lambda v: loss_of_p(layer(v, training=training)), z)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, expected, atol=1e-4)
    assert not np.allclose(g, dl_dp, atol=1e-3)  # and it is not the straight-through copy


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_true_jacobian_matches_finite_differences(name, training):
    """fenchel_young_gradient=False (the bare default) is the true Jacobian in training too, equal to
    central differences of the float64 reference map; the paired layer (get_head) is not: it hands
    the incoming gradient to the logits unchanged, so the switch really switches."""
    z = np.array([[1.0, -2.0, 0.5, 3.0, 2.6, -0.3], [0.1, 0.2, 0.3, 0.4, -5.0, -0.05]], dtype="float32")
    w = np.random.default_rng(3).normal(size=z.shape)
    reference_map = EXACT_LOSSES[name][2]
    fd = central_difference(lambda v: (w * reference_map(v)).sum(), z, 1e-6)
    wt = ops.convert_to_tensor(w, "float32")
    for layer in (make_head(name, fenchel_young_gradient=False).layer, SPARSE_LAYERS[name]()):
        g = grad(lambda v: ops.sum(wt * layer(v, training=training)), z)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, fd, atol=1e-5)
    paired = make_head(name).layer
    assert paired.fenchel_young_gradient is True
    g = grad(lambda v: ops.sum(wt * paired(v, training=training)), z)
    np.testing.assert_allclose(g, w, atol=1e-6)
