"""The matching losses on their own: labels in every shape, target distributions, label smoothing."""

import math

import keras
import numpy as np
import pytest

import keras_softmax as ks
from keras_softmax import losses

from . import references as ref
from .helpers import to_np

Z = np.array([[2.0, -1.0, 0.5, 1.0, 1.9], [0.0, 3.0, -2.0, 1.5, 2.8], [1.0, 1.0, 1.0, 1.0, 1.0]],
             dtype="float32")
Y = np.array([0, 4, 2])


def outputs(loss):
    if isinstance(loss, ks.NegativeLogLikelihood):
        return to_np(keras.ops.log_softmax(Z))
    if isinstance(loss, ks.SparsemaxLoss):
        return to_np(ks.Sparsemax()(Z))
    if isinstance(loss, ks.Entmax15Loss):
        return to_np(ks.Entmax15()(Z))
    return to_np(keras.ops.softmax(Z))


LOSS_CLASSES = [ks.ProbabilityCrossEntropy, ks.NegativeLogLikelihood, ks.SparsemaxLoss, ks.Entmax15Loss]


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_label_shapes_and_one_hot_targets_agree(loss_class):
    loss = loss_class()
    pred = outputs(loss)
    want = to_np(loss(Y, pred))
    for labels in (Y[:, None], list(Y), Y.astype("float32"), np.eye(5, dtype="float32")[Y]):
        np.testing.assert_allclose(to_np(loss(labels, pred)), want, rtol=1e-6)


def test_probability_cross_entropy_value_and_floor():
    p = to_np(keras.ops.softmax(Z))
    want = -np.log(p[np.arange(3), Y]).mean()
    assert float(to_np(ks.ProbabilityCrossEntropy()(Y, p))) == pytest.approx(want, rel=1e-6)
    zero = np.array([[0.0, 1.0]], dtype="float32")
    assert float(to_np(ks.ProbabilityCrossEntropy()(np.array([0]), zero))) == pytest.approx(-math.log(1e-7))
    assert float(to_np(ks.ProbabilityCrossEntropy(epsilon=1e-3)(np.array([0]), zero))) == pytest.approx(
        -math.log(1e-3))


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_cross_entropy(eps):
    log_p = ref.log_softmax(Z)
    q = (1 - eps) * np.eye(5)[Y] + eps / 5
    want = -(q * log_p).sum(-1).mean()
    got_nll = to_np(ks.NegativeLogLikelihood(label_smoothing=eps)(Y, log_p.astype("float32")))
    got_ce = to_np(ks.ProbabilityCrossEntropy(label_smoothing=eps)(Y, np.exp(log_p).astype("float32")))
    assert float(got_nll) == pytest.approx(want, rel=1e-5)
    assert float(got_ce) == pytest.approx(want, rel=1e-5)
    # the same through explicit target distributions
    assert float(to_np(ks.NegativeLogLikelihood()(q.astype("float32"), log_p.astype("float32")))) == \
        pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("loss_class,exact", [(ks.SparsemaxLoss, ref.sparsemax_loss),
                                              (ks.Entmax15Loss, ref.entmax15_loss)])
def test_fenchel_young_label_smoothing_is_bounded_by_exact_loss(loss_class, exact):
    """With smoothing the target has full support, so the loss from p is a lower bound of the exact
    score-space loss; without smoothing and with the label in the support they are equal."""
    eps = 0.1
    loss = loss_class(label_smoothing=eps, reduction=None)
    pred = outputs(loss)
    q = (1 - eps) * np.eye(5)[Y] + eps / 5
    got = to_np(loss(Y, pred))
    assert np.all(got <= exact(q, Z) + 1e-5)
    assert np.all(got >= 0)


@pytest.mark.parametrize(
    "name,fn", [("sparsemax", losses.sparsemax_loss), ("entmax15", losses.entmax15_loss)]
)
def test_exact_losses_accept_target_distributions(name, fn):
    q = np.array([[0.2, 0.0, 0.3, 0.1, 0.4], [0.0, 0.5, 0.0, 0.0, 0.5], [0.2] * 5], dtype="float32")
    reference = ref.sparsemax_loss if name == "sparsemax" else ref.entmax15_loss
    np.testing.assert_allclose(to_np(fn(q, Z)), reference(q, Z), atol=1e-5)
    assert np.all(to_np(fn(q, Z)) >= -1e-6)  # Fenchel-Young losses are non-negative


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
def test_losses_compute_in_float32_from_low_precision_inputs(loss_class):
    loss = loss_class()
    pred = outputs(loss)
    value = loss(Y, keras.ops.cast(pred, "bfloat16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(to_np(value))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "gumbel", "log_gumbel"])
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_skips_classes_masked_by_drop_lowest(name, eps):
    """drop_lowest masks classes (probability 0, log-probability ~ -1e9): the smoothing mass goes to
    the K kept classes only, q = (1 - eps) y + eps / K, and the loss is that reference cross-entropy
    (on a log head the old eps / N over every class cost ~1e7 per masked class)."""
    head = ks.get_head(name, drop_lowest=0.4)
    loss = head.make_loss(label_smoothing=eps)
    keep = ref.keep_mask(Z, 0.4)
    log_p = ref.log_softmax(Z, drop_lowest=0.4)
    assert np.all(keep[np.arange(3), Y]) and np.any(~keep)  # the labels are kept, some classes not
    q = (1 - eps) * np.eye(5)[Y] + eps * keep / keep.sum(-1, keepdims=True)
    want = -(q * np.where(keep, log_p, 0.0)).sum(-1).mean()
    got = float(to_np(loss(Y, head.layer(Z))))
    assert got == pytest.approx(want, rel=1e-5)
    # and through target distributions (CutMix) as well
    targets = np.eye(5, dtype="float32")[Y]
    assert float(to_np(loss(targets, head.layer(Z)))) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("loss_class", [ks.ProbabilityCrossEntropy, ks.NegativeLogLikelihood])
def test_nan_outputs_give_a_nan_loss(loss_class):
    """A diverged model's NaN output must not be floored into a finite loss: training has to see it."""
    pred = np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype="float32")
    if loss_class is ks.NegativeLogLikelihood:
        pred = np.log(pred)
    for smoothing in (0.0, 0.1):
        assert np.isnan(float(to_np(loss_class(label_smoothing=smoothing)(np.array([0, 1]), pred))))
    # smoothing puts mass on every kept class: a NaN anywhere in the row shows
    assert np.isnan(float(to_np(loss_class(label_smoothing=0.1)(np.array([1, 1]), pred))))


# --------------------------------------------------------------------------- from_logits (issue 25)
def central_difference(fn, z, h=1e-4):
    g = np.zeros_like(z, dtype=np.float64)
    for index in np.ndindex(*z.shape):
        up, down = z.astype(np.float64).copy(), z.astype(np.float64).copy()
        up[index] += h
        down[index] -= h
        g[index] = (fn(up) - fn(down)) / (2 * h)
    return g


@pytest.mark.parametrize("name,loss_class,exact,mapping", [
    ("sparsemax", ks.SparsemaxLoss, ref.sparsemax_loss, ref.sparsemax),
    ("entmax15", ks.Entmax15Loss, ref.entmax15_loss, ref.entmax15),
])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_fenchel_young_from_logits_value_and_gradient_are_exact(name, loss_class, exact, mapping, eps):
    """On the scores: the numpy Fenchel-Young loss (float64) in value, p - q in gradient (also by finite
    differences of the numpy loss), labels outside the support included (Z's row 0 has label 0 in it,
    row 1's label 4 is out of sparsemax's support)."""
    from .helpers import grad

    loss = loss_class(from_logits=True, label_smoothing=eps, reduction=None)
    q = (1 - eps) * np.eye(5)[Y] + eps / 5
    np.testing.assert_allclose(to_np(loss(Y, Z)), exact(q, Z), atol=2e-5)
    g = grad(lambda v: keras.ops.sum(loss(Y, v)), Z)
    np.testing.assert_allclose(g, mapping(Z) - q, atol=2e-5)
    np.testing.assert_allclose(g, central_difference(lambda v: exact(q, v).sum(), Z), atol=1e-3)


def test_entmax_alpha_from_logits_matches_the_reference_for_its_alpha():
    from .helpers import grad

    loss = ks.EntmaxAlphaLoss(alpha=1.3, from_logits=True, reduction=None)
    np.testing.assert_allclose(to_np(loss(Y, Z)), ref.entmax_alpha_loss(Y, Z, 1.3), atol=5e-5)
    g = grad(lambda v: keras.ops.sum(loss(Y, v)), Z)
    np.testing.assert_allclose(g, ref.entmax_alpha(Z, 1.3) - np.eye(5)[Y], atol=5e-5)


@pytest.mark.parametrize("head,log_reference", [
    (None, ref.log_softmax),
    (ks.Softmax(temperature=2.0), lambda z: ref.log_softmax(z, temperature=2.0)),
    (ks.TaylorSoftmax(order=4), lambda z: ref.log_taylor(z, 4)),
    (ks.Base2Softmax(), lambda z: np.log(ref.base2(z))),
    (ks.HierarchicalSoftmax(fine_to_coarse=[0, 0, 1]), lambda z: ref.hierarchical_log(z, [0, 0, 1])),
])
@pytest.mark.parametrize("loss_class", [ks.ProbabilityCrossEntropy, ks.NegativeLogLikelihood])
def test_cross_entropy_from_logits_is_the_heads_log_likelihood(head, log_reference, loss_class):
    """-log p_y with log p the head's own, from numpy (float64); gradient by finite differences."""
    from .helpers import grad

    loss = loss_class(from_logits=True, head=head, reduction=None)
    y = np.array([0, 2, 1])
    log_p = log_reference(Z)
    np.testing.assert_allclose(to_np(loss(y, Z)), -log_p[np.arange(3), y], rtol=1e-5, atol=1e-5)
    fd = central_difference(lambda v: -log_reference(v)[np.arange(3), y].sum(), Z)
    np.testing.assert_allclose(grad(lambda v: keras.ops.sum(loss(y, v)), Z), fd, atol=2e-3)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))  # head= travels in the config
    np.testing.assert_allclose(to_np(revived(y, Z)), to_np(loss(y, Z)), rtol=1e-6)


def test_from_logits_is_validated():
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="from_logits"):
            ks.SparsemaxLoss(from_logits=bad)
    with pytest.raises(ValueError, match="from_logits"):
        ks.ProbabilityCrossEntropy(head=ks.TaylorSoftmax())  # head= needs from_logits=True
    with pytest.raises(ValueError, match="log-probabilities"):
        ks.NegativeLogLikelihood(from_logits=True, head=ks.SampledSoftmax(num_classes=5))
    with pytest.raises(ValueError, match="from_logits"):
        ks.MismatchedCrossEntropy(from_logits=True)
