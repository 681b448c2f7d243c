"""Gumbel-softmax and log-Gumbel-softmax: noise only in training, seeded, clipped, hard samples."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

import keras_softmax as ks
from keras_softmax.heads import gumbel as gumbel_module

from . import references as ref
from .helpers import grad, make_head, probabilities, to_np

NAMES = ("gumbel", "log_gumbel")
Z = np.array([[1.0, -0.5, 2.0, 0.0, 0.7], [3.0, 3.0, -1.0, 0.5, -2.0]], dtype="float32")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_inference_is_softmax_over_temperature_exactly(name, temperature):
    head = make_head(name, temperature=temperature, seed=1)
    plain = make_head("log_softmax" if name == "log_gumbel" else "softmax", temperature=temperature)
    out = to_np(head.layer(Z))
    np.testing.assert_array_equal(out, to_np(plain.layer(Z)))
    np.testing.assert_array_equal(out, to_np(head.layer(Z, training=False)))  # and again: no noise
    np.testing.assert_allclose(probabilities(head, out), ref.softmax(Z, temperature), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_training_adds_noise_and_calls_differ(name):
    head = make_head(name, seed=3)
    first = to_np(head.layer(Z, training=True))
    second = to_np(head.layer(Z, training=True))
    assert not np.allclose(first, to_np(head.layer(Z)))
    assert not np.allclose(first, second)
    for out in (first, second):
        np.testing.assert_allclose(probabilities(head, out).sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hard", [False, True])
def test_same_seed_same_samples(name, hard):
    a, b, c = (make_head(name, seed=s, hard=hard).layer for s in (7, 7, 8))
    outs_a = [to_np(a(Z, training=True)) for _ in range(3)]
    outs_b = [to_np(b(Z, training=True)) for _ in range(3)]
    for x, y in zip(outs_a, outs_b):
        np.testing.assert_array_equal(x, y)
    if not hard:
        assert not np.allclose(outs_a[0], to_np(c(Z, training=True)))


def test_noise_is_gumbel_distributed():
    """With tau = 1, log_gumbel's output minus z is g - logsumexp(z + g) per row; differences of two
    classes are g_i - g_j, which for independent standard Gumbels is standard logistic."""
    head = make_head("log_gumbel", seed=0)
    z = np.zeros((4000, 2), dtype="float32")
    z[:, 1] = 1.5
    out = to_np(head.layer(z, training=True)).astype(np.float64)
    diff = (out[:, 0] - z[:, 0]) - (out[:, 1] - z[:, 1])
    assert stats.kstest(diff, stats.logistic.cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_uniform_draws_are_clipped_away_from_0_and_1(name, monkeypatch):
    """Replace keras.random.uniform by the worst draws allowed by the bounds the head asks for."""
    requested = {}

    def extreme_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        requested.update(minval=minval, maxval=maxval)
        n = int(np.prod(shape))
        worst = np.where(np.arange(n) % 2 == 0, minval, maxval).astype("float32").reshape(shape)
        return ops.convert_to_tensor(worst)

    monkeypatch.setattr(keras.random, "uniform", extreme_uniform)
    for temperature in (0.05, 1.0):
        for hard in (False, True):
            head = make_head(name, seed=0, temperature=temperature, hard=hard)
            out = to_np(head.layer(Z, training=True))
            assert np.all(np.isfinite(out))
    assert 0.0 < requested["minval"] <= 1e-4
    assert 1.0 - 1e-4 <= requested["maxval"] < 1.0
    # the noise at the bounds, in float32, is finite
    for u in (requested["minval"], requested["maxval"]):
        g = -np.log(-np.log(np.float32(u)))
        assert np.isfinite(g)
    assert gumbel_module.UNIFORM_EPS == requested["minval"]


@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits_with_noise_stay_finite(name):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4]], dtype="float32")
    for temperature in (0.01, 1.0, 100.0):
        out = to_np(make_head(name, seed=0, temperature=temperature).layer(z, training=True))
        assert np.all(np.isfinite(out))


def _hard_samples(name, z, seed, temperature=0.5):
    head = make_head(name, hard=True, seed=seed, temperature=temperature)
    return head, to_np(head.layer(z, training=True))


@pytest.mark.parametrize("name", NAMES)
def test_hard_samples_are_exact_one_hot_following_softmax(name):
    logits = np.array([1.0, 0.0, -1.0, 2.0, 0.5], dtype="float32")
    n = 20_000
    head, out = _hard_samples(name, np.tile(logits, (n, 1)), seed=1234)
    chosen = out.argmax(-1)
    if name == "gumbel":
        # paired with its loss (log_straight_through): 1 and the smallest normal float32 ...
        tiny = np.finfo(np.float32).tiny
        np.testing.assert_array_equal(out, np.where(np.eye(5, dtype=bool)[chosen], 1.0, tiny).astype("float32"))
        assert np.log(out.astype(np.float64)).min() == pytest.approx(np.log(tiny))
        # ... and the bare layer: exactly 0 and 1
        bare = ks.GumbelSoftmax(hard=True, seed=1234, temperature=0.5)
        bare_out = to_np(bare(np.tile(logits, (n, 1)), training=True))
        np.testing.assert_array_equal(bare_out, np.eye(5, dtype="float32")[chosen])
    else:  # 0 for the sampled class, log of the smallest normal float32 elsewhere
        np.testing.assert_array_equal(out.max(-1), 0.0)
        others = np.where(np.eye(5, dtype=bool)[chosen], np.nan, out)
        np.testing.assert_allclose(others[~np.isnan(others)], np.log(np.finfo(np.float32).tiny), rtol=1e-6)
        np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(-1), 1.0, atol=1e-12)
    # hard samples follow softmax(z) whatever the temperature (Gumbel-max trick)
    counts = np.bincount(chosen, minlength=5)
    expected = n * ref.softmax(logits[None])[0]
    assert stats.chisquare(counts, expected).pvalue > 1e-3, (counts, expected)


@pytest.mark.parametrize("name", NAMES)
def test_hard_samples_never_pick_dropped_classes(name):
    z = np.tile(np.arange(10, dtype="float32") * 0.1, (500, 1))
    head = make_head(name, hard=True, seed=5, drop_lowest=0.3)
    chosen = to_np(head.layer(z, training=True)).argmax(-1)
    assert chosen.min() >= 3


BARE = {"gumbel": ks.GumbelSoftmax, "log_gumbel": ks.LogGumbelSoftmax}


@pytest.mark.parametrize("name", NAMES)
def test_bare_straight_through_gradient_is_the_soft_gradient(name):
    """A bare hard layer feeding some other computation (here a linear probe): its output has the
    soft sample's gradient, the textbook straight-through estimator (Jang et al. 2017)."""
    w = np.random.default_rng(0).normal(size=Z.shape).astype("float32")
    hard = BARE[name](hard=True, seed=11, temperature=0.7)
    soft = BARE[name](hard=False, seed=11, temperature=0.7)
    hard_out = to_np(hard(Z, training=True))
    soft_out = to_np(soft(Z, training=True))
    # same noise: the hard sample is the argmax of the soft one
    np.testing.assert_array_equal(hard_out.argmax(-1), soft_out.argmax(-1))
    # fresh layers with the same seed again, now under autodiff
    hard = BARE[name](hard=True, seed=11, temperature=0.7)
    soft = BARE[name](hard=False, seed=11, temperature=0.7)
    wt = ops.convert_to_tensor(w)
    g_hard = grad(lambda v: ops.sum(wt * hard(v, training=True)), Z)
    g_soft = grad(lambda v: ops.sum(wt * soft(v, training=True)), Z)
    assert np.any(g_soft != 0)
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6, atol=1e-7)


def _per_sample_gradient(name, z, y, **params):
    """d/dz of the summed per-sample matched loss (rows independent: row i is sample i's gradient),
    through a fresh seeded layer in training mode; and the per-sample loss values (same noise)."""
    head = make_head(name, **params)
    loss = type(head.loss)(reduction=None)
    values = to_np(loss(y, head.layer(z, training=True)))
    head = make_head(name, **params)  # a fresh layer with the same seed draws the same noise
    return grad(lambda v: ops.sum(loss(y, head.layer(v, training=True))), z), values


@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("name", NAMES)
def test_hard_sample_with_matched_loss_trains_with_the_soft_samples_gradient(name, temperature):
    """Training with hard=True (as get_head pairs it): the loss value is the hard sample's, the
    gradient w.r.t. the logits is the soft sample's under the same noise, for wrong samples too
    (a plain one-hot gives p_y = 0 there, the floor, and no gradient at all)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 6, size=64)
    g_hard, hard_loss = _per_sample_gradient(name, z, y, hard=True, seed=21, temperature=temperature)
    g_soft, _ = _per_sample_gradient(name, z, y, hard=False, seed=21, temperature=temperature)
    wrong = hard_loss > 1.0  # the hard sample missed the label: -log(floor) or -log(TINY)
    assert 10 <= wrong.sum() <= 60, wrong.sum()
    np.testing.assert_allclose(hard_loss[~wrong], 0.0, atol=1e-6)
    assert np.all(np.abs(g_hard[wrong]).sum(-1) > 1e-3)  # every wrong sample gets a push
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 3.0])
@pytest.mark.parametrize("name", NAMES)
def test_matched_loss_gradient_with_the_noise_on(name, temperature, hard, monkeypatch):
    """With the uniform draws pinned, the training-time gradient of the matched loss (through the
    paired layer, noise on) is that of the float64 reference -log softmax((z + g) / tau)_y:
    (softmax((z + g) / tau) - y) / tau, also for hard samples (straight-through)."""
    u = np.random.default_rng(5).uniform(0.01, 0.99, size=Z.shape).astype("float32")
    monkeypatch.setattr(keras.random, "uniform", lambda shape, **kwargs: ops.convert_to_tensor(u))
    g_noise = -np.log(-np.log(u.astype(np.float64)))
    y = np.array([3, 2])
    head = make_head(name, temperature=temperature, hard=hard, seed=0)
    got = grad(lambda v: head.loss(y, head.layer(v, training=True)) * 2, Z)
    expected = (ref.softmax(Z + g_noise, temperature) - np.eye(5)[y]) / temperature
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # the noise matters: the noiseless gradient is another one
    assert np.abs(expected - (ref.softmax(Z, temperature) - np.eye(5)[y]) / temperature).max() > 1e-2


def test_unseeded_layers_draw_different_noise():
    a, b = ks.GumbelSoftmax(), ks.GumbelSoftmax()
    assert not np.allclose(to_np(a(Z, training=True)), to_np(b(Z, training=True)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", [0.3, 2.0])
def test_training_output_is_softmax_of_perturbed_logits(name, temperature, monkeypatch):
    """With the uniform draws pinned, training gives softmax((z + g) / tau), g = -log(-log U)."""
    u = np.random.default_rng(4).uniform(0.01, 0.99, size=Z.shape).astype("float32")
    monkeypatch.setattr(keras.random, "uniform", lambda shape, **kwargs: ops.convert_to_tensor(u))
    head = make_head(name, temperature=temperature, seed=0)
    g = -np.log(-np.log(u.astype(np.float64)))
    got = probabilities(head, head.layer(Z, training=True))
    np.testing.assert_allclose(got, ref.softmax(Z + g, temperature), atol=1e-6)
    # with drop_lowest the mask comes from the logits, not from the noisy logits
    head = make_head(name, temperature=temperature, seed=0, drop_lowest=0.4)
    got = probabilities(head, head.layer(Z, training=True))
    keep = ref.keep_mask(Z, 0.4)
    want = np.where(keep, np.exp((Z + g) / temperature), 0.0)
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), atol=1e-6)
