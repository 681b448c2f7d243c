"""alpha-entmax by bisection: references, special cases, half precision, gradients (logits and alpha).

The generic families (reference outputs, low precision, serialization, XLA) also run over
``entmax_alpha`` through ``helpers.HEADS``; this file adds what is specific to it.
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

import keras_softmax as ks
from keras_softmax import losses
from keras_softmax.heads.entmax_alpha import entmax_bisect

from . import references as ref
from .helpers import BACKEND, HYPOTHESIS, central_difference, grad, logits, make_head, one_hot, to_np

ALPHAS = (1.01, 1.3, 1.5, 2.0, 2.7)


def grad_wrt_variable(fn, variable) -> float:
    """d fn() / d variable by the backend's autodiff, ``fn`` reading the variable."""
    if BACKEND == "jax":
        import jax

        def of(value):
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return fn()

        return float(jax.grad(of)(variable.value))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        return float(tape.gradient(value, variable.value).numpy())
    pytest.skip(f"no variable gradient helper for {BACKEND}")


# --------------------------------------------------------------------------- values
@HYPOTHESIS
@given(z=logits(7, bound=5.0))
def test_alpha_one_and_a_half_is_entmax15_and_two_is_sparsemax(z):
    np.testing.assert_allclose(to_np(ks.EntmaxAlpha(alpha=1.5)(z)), to_np(ks.Entmax15()(z)), atol=2e-6)
    np.testing.assert_allclose(to_np(ks.EntmaxAlpha(alpha=2.0)(z)), to_np(ks.Sparsemax()(z)), atol=2e-6)


def test_alpha_towards_one_approaches_softmax():
    z = np.random.default_rng(0).normal(size=(4, 12)).astype("float32")
    softmax = ref.softmax(z)
    gaps = [np.abs(to_np(ks.EntmaxAlpha(alpha=a)(z)) - softmax).max() for a in (1.2, 1.05, 1.01, 1.001)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 2e-3


@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_float64_bisection_on_wide_rows(alpha):
    z = np.random.default_rng(1).normal(size=(3, 200)).astype("float32") * 4
    z[0, :3] = [1e4, -1e4, 9999.5]
    p = to_np(ks.EntmaxAlpha(alpha=alpha)(z))
    np.testing.assert_allclose(p, ref.entmax_alpha(z, alpha), atol=1e-5)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.01, 1.5, 3.0])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_extreme_logits_no_nan(alpha, dtype):
    """The entmax package bisects in the input dtype and returns NaN for very negative fp16/bf16
    logits; here everything is float32 after a max shift, values and gradients alike."""
    z = np.array([[-1e4] * 6, [1e4, -1e4, -1e4, -9999.0, 0.0, -5000.0], [-1e4, -1e4 + 1, -1e4 + 2, -1e4, 3, 3]],
                 dtype="float32")
    head = make_head("entmax_alpha", alpha=alpha, learn_alpha=True)
    p = to_np(head.layer(ops.cast(z, dtype)))
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    y = np.array([1, 2, 0])
    g = grad(lambda v: head.loss(y, head.layer(ops.cast(v, dtype), training=True)), z)
    assert np.all(np.isfinite(g))
    g_alpha = grad_wrt_variable(lambda: head.loss(y, head.layer(ops.cast(z, dtype), training=True)),
                                head.layer.alpha_weight)
    assert math.isfinite(g_alpha)
    bare = ks.EntmaxAlpha(alpha=alpha, learn_alpha=True, fenchel_young_gradient=False)
    g = grad(lambda v: ops.sum(bare(ops.cast(v, dtype)) * np.arange(6, dtype="float32")), z)
    assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------- gradients: logits
@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.5])
@HYPOTHESIS
@given(z=logits(6, bound=4.0), data=st.data())
def test_matched_loss_gives_logits_p_minus_y(alpha, z, data):
    y = np.asarray(data.draw(st.lists(st.integers(0, 5), min_size=z.shape[0], max_size=z.shape[0])))
    head = make_head("entmax_alpha", alpha=alpha)
    g = grad(lambda v: head.loss(y, head.layer(v, training=True)) * z.shape[0], z)
    np.testing.assert_allclose(g, ref.entmax_alpha(z, alpha) - one_hot(y, 6), atol=2e-5)


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.5])
def test_exact_loss_finite_differences_are_p_minus_y(alpha):
    z = np.array([[1.0, -2.0, 0.5, 3.0, 2.9, -0.3], [3.0, 0.0, -2.0, 1.0, 0.2, 0.1]])
    y = np.array([4, 2])
    fd = central_difference(lambda v: ref.entmax_alpha_loss(y, v, alpha).sum(), z, 1e-6)
    np.testing.assert_allclose(fd, ref.entmax_alpha(z, alpha) - one_hot(y, 6), atol=1e-6)
    lib = to_np(losses.entmax_alpha_loss(y, z.astype("float32"), alpha))
    np.testing.assert_allclose(lib, ref.entmax_alpha_loss(y, z, alpha), atol=5e-5)


@pytest.mark.parametrize("alpha", [1.3, 1.5, 2.0, 2.6])
def test_true_jacobian_matches_finite_differences(alpha):
    z = np.array([[1.0, -2.0, 0.5, 3.0, 2.6, -0.3], [0.1, 0.2, 0.3, 0.4, -5.0, -0.05]], dtype="float32")
    w = np.random.default_rng(3).normal(size=z.shape)
    fd = central_difference(lambda v: (w * ref.entmax_alpha(v, alpha)).sum(), z, 1e-6)
    layer = ks.EntmaxAlpha(alpha=alpha, fenchel_young_gradient=False)
    for training in (False, True):
        g = grad(lambda v: ops.sum(ops.convert_to_tensor(w, "float32") * layer(v, training=training)), z)
        np.testing.assert_allclose(g, fd, atol=2e-5)


# --------------------------------------------------------------------------- gradients: alpha
@pytest.mark.parametrize("alpha", [1.3, 1.7, 2.5])
@pytest.mark.parametrize("target", ["labels", "smoothed"])
def test_learnable_alpha_gradient_matches_finite_differences(alpha, target):
    """d(matched loss)/d alpha by autodiff == central differences in alpha of the float64 exact loss
    (alpha-entmax recomputed at each alpha, logits fixed)."""
    z = np.array([[1.0, -2.0, 0.5, 3.0, 2.6, -0.3], [0.1, 0.2, 0.3, 0.4, -5.0, -0.05],
                  [2.0, 1.9, 1.8, -1.0, 0.0, 0.5]], dtype="float32")
    y = np.array([4, 3, 0])
    q = one_hot(y, 6)
    eps = 0.0
    if target == "smoothed":
        eps = 0.1
        q = q * (1 - eps) + eps / 6
    head = make_head("entmax_alpha", alpha=alpha, learn_alpha=True)
    loss = head.make_loss(label_smoothing=eps)
    got = grad_wrt_variable(lambda: loss(y, head.layer(z, training=True)), head.layer.alpha_weight)

    def exact(a):
        return ref.entmax_alpha_loss(q, z.astype(np.float64), a).mean()

    h = 1e-5
    want = (exact(alpha + h) - exact(alpha - h)) / (2 * h)
    assert abs(want) > 1e-3  # a real signal, not two zeros agreeing
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("alpha", [1.3, 2.2])
def test_bare_layer_alpha_gradient_is_implicit_derivative(alpha):
    """Without the pairing (true Jacobian) d/dalpha of sum w p matches central differences of the
    float64 map: the Newton-step gradient is exact in alpha too."""
    z = np.array([[1.0, -2.0, 0.5, 3.0, 2.6, -0.3]], dtype="float32")
    w = np.array([[0.3, -1.0, 2.0, 0.5, -0.7, 1.1]])
    layer = ks.EntmaxAlpha(alpha=alpha, learn_alpha=True, fenchel_young_gradient=False)
    got = grad_wrt_variable(lambda: ops.sum(ops.convert_to_tensor(w, "float32") * layer(z)), layer.alpha_weight)
    h = 1e-6
    want = ((w * ref.entmax_alpha(z, alpha + h)).sum() - (w * ref.entmax_alpha(z, alpha - h)).sum()) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)


# --------------------------------------------------------------------------- loss values
@pytest.mark.parametrize("alpha", ALPHAS)
def test_loss_from_output_is_exact_in_support_and_a_lower_bound_outside(alpha):
    z = np.array([[2.0, 1.8, 1.5, -3.0, 0.0]], dtype="float32")
    head = make_head("entmax_alpha", alpha=alpha)
    p = to_np(head.layer(z))
    for label in range(5):
        value = float(to_np(head.loss(np.array([label]), head.layer(z, training=True))))
        exact = float(ref.entmax_alpha_loss(np.array([label]), z, alpha)[0])
        if p[0, label] > 1e-6:
            assert value == pytest.approx(exact, abs=5e-5)
        else:
            assert 0 < value <= exact + 1e-6


def test_loss_reads_alpha_from_the_layer_whose_output_it_gets():
    head = make_head("entmax_alpha", alpha=1.4, learn_alpha=True)
    assert head.loss.alpha == pytest.approx(1.4)  # its alpha on logits (from_logits=True)
    head.layer.alpha_weight.assign(1.9)
    z = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    y = np.array([0, 1, 2])
    p = head.layer(z)
    own_alpha = ks.EntmaxAlphaLoss(alpha=1.9)(y, to_np(p))  # a numpy array carries no layer: alpha 1.9 given
    for loss in (head.loss, ks.EntmaxAlphaLoss(), keras.losses.deserialize(keras.losses.serialize(head.loss))):
        np.testing.assert_allclose(to_np(loss(y, p)), to_np(own_alpha), rtol=1e-6)  # the layer's learned 1.9


def test_clipped_alpha_and_validation():
    layer = ks.EntmaxAlpha(alpha=1.5, learn_alpha=True)
    layer.alpha_weight.assign(0.5)  # an optimizer step past 1: clipped, still a distribution
    assert float(to_np(layer.alpha_value())) == pytest.approx(1.001)
    p = to_np(layer(np.array([[1.0, 2.0, 3.0]], dtype="float32")))
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-6)
    for bad in (1.0, 0.5, math.nan, math.inf, "1.5", True, None, 101.0):
        with pytest.raises(ValueError, match="alpha"):
            ks.get_head("entmax_alpha", alpha=bad)
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="learn_alpha"):
            ks.get_head("entmax_alpha", learn_alpha=bad)
    for bad in (0, 1.5, True, 5000):
        with pytest.raises(ValueError, match="iterations"):
            ks.get_head("entmax_alpha", iterations=bad)
    with pytest.raises(ValueError, match="alpha"):
        ks.EntmaxAlphaLoss(alpha=1.0)


def test_entmax_bisect_accepts_a_tensor_alpha():
    z = np.array([[0.5, 1.0, -1.0]], dtype="float32")
    np.testing.assert_allclose(to_np(entmax_bisect(z, ops.convert_to_tensor(1.5))), ref.entmax15(z), atol=1e-6)


@pytest.mark.parametrize("learn_alpha", [False, True])
def test_fit_trains_alpha_and_keras_file_round_trips(learn_alpha, tmp_path):
    """fit (XLA) moves a learnable alpha; the saved model predicts identically after reloading."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + 2 * (x[:, 1] > 0)
    head = ks.get_head("entmax_alpha", alpha=1.6, learn_alpha=learn_alpha)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, head.layer(keras.layers.Dense(4)(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=head.loss, jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    alpha = float(to_np(head.layer.alpha_value()))
    assert (alpha != pytest.approx(1.6, abs=1e-4)) == learn_alpha
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_np(loaded(x)), to_np(model(x)), atol=1e-7)
    assert float(to_np(loaded.layers[-1].alpha_value())) == pytest.approx(alpha)
    # the reloaded loss reads the trained alpha from the layer's output, as the original does
    np.testing.assert_allclose(to_np(loaded.loss(y, loaded(x))), to_np(head.loss(y, model(x))), rtol=1e-6)
