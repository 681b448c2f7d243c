"""Heads that own their projection (adaptive, sampled): the families every head passes, for features.

numpy references (adaptive's log-probabilities written out class by class; sampled softmax's loss
from its definition, and equal to the full cross-entropy when every class is sampled), low precision,
serialization (.keras files of trained models), XLA, and training through ``fit`` with a loss that
reads the layer's weights (gradients reach them on both backends).
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_softmax as ks
from keras_softmax.heads.adaptive import default_cutoffs

from . import references as ref
from .helpers import BACKEND, PROJECTION_HEADS, central_difference, grad, to_np

D = 6  # feature size
N = 23  # classes
#: Parameters per head for the small problems here (non-default, so a dropped one shows).
PARAMS = {
    "adaptive": {"num_classes": N, "cutoffs": [4, 11], "div_value": 2.0,
                 "class_order": [int(c) for c in np.random.default_rng(5).permutation(N)]},
    "sampled": {"num_classes": N, "num_sampled": 5, "sampler": "log_uniform", "seed": 3,
                "class_order": [int(c) for c in np.random.default_rng(6).permutation(N)]},
}


def features(batch=5, scale=1.0, seed=0):
    return (np.random.default_rng(seed).normal(size=(batch, D)) * scale).astype("float32")


def built(name, **overrides):
    head = ks.get_head(name, **{**PARAMS[name], **overrides})
    head.layer.build((None, D))
    # Non-zero biases, so a bias that is dropped or misplaced shows.
    rng = np.random.default_rng(11)
    for weight in head.layer.weights:
        if "bias" in weight.path:
            weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return head


def adaptive_reference(layer, h):
    tails = [(to_np(p), to_np(k), to_np(b))
             for p, k, b in zip(layer.tail_projections, layer.tail_kernels, layer.tail_biases)]
    return ref.adaptive_log(h, to_np(layer.head_kernel), to_np(layer.head_bias), tails, layer.cutoffs,
                            layer.num_classes, layer.class_order)


def reference_log_p(name, layer, h):
    if name == "adaptive":
        return adaptive_reference(layer, h)
    logits = h.astype(np.float64) @ to_np(layer.kernel).T.astype(np.float64) + to_np(layer.bias)
    return ref.log_softmax(logits)


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_contract(name):
    head = ks.get_head(name, num_classes=N)
    assert head.owns_projection and head.layer.owns_projection and head.output_kind == "log_probabilities"
    assert head.num_logits(N) == 0
    with pytest.raises(ValueError, match="num_classes"):
        head.num_logits(N + 1)
    with pytest.raises(ValueError, match="num_classes"):
        ks.get_head(name)  # the weights need the number of classes
    for bad in (1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="num_classes"):
            ks.get_head(name, num_classes=bad)


@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_build_model_adds_no_dense_layer(name):
    model = ks.build_model(name, num_classes=N, widths=(4, 4, 4, 4), augment=False)
    assert "logits" not in [layer.name for layer in model.layers]
    assert model.layers[-1].num_classes == N and model.layers[-2].name == "avg_pool"
    out = model.predict(np.zeros((2, 32, 32, 3), dtype="uint8"), verbose=0)
    assert out.shape == (2, N) and out.dtype == np.float32
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        ks.build_model(ks.get_head(name, num_classes=N + 1), num_classes=N, widths=(4, 4, 4, 4))


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize("name", PROJECTION_HEADS)
@pytest.mark.parametrize("seed", [0, 1])
def test_inference_matches_numpy_reference(name, seed):
    head = built(name)
    h = features(seed=seed, scale=2.0)
    out = to_np(head.layer(h))
    assert out.dtype == np.float32 and out.shape == (5, N)
    np.testing.assert_allclose(out, reference_log_p(name, head.layer, h), atol=2e-5)
    np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("cutoffs", [[], [1], [3, 4, 20], None])
@pytest.mark.parametrize("div_value", [1.0, 4.0, 100.0])
def test_adaptive_cluster_layouts(cutoffs, div_value):
    head = built("adaptive", cutoffs=cutoffs, div_value=div_value, class_order=None)
    h = features(scale=3.0)
    out = to_np(head.layer(h))
    np.testing.assert_allclose(out, adaptive_reference(head.layer, h), atol=2e-5)
    np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(-1), 1.0, atol=1e-5)
    # the training loss is exactly -log p(y) of the inference output, for labels in every cluster
    y = np.arange(N) % N
    hh = features(batch=N, seed=3)
    loss = to_np(head.layer.training_loss(hh, y))
    np.testing.assert_allclose(loss, -adaptive_reference(head.layer, hh)[np.arange(N), y], atol=2e-5)


@pytest.mark.parametrize("options", [
    {"tail_chunks": 1}, {"tail_chunks": 3}, {"tail_chunks": 12},  # one chunk, unequal chunks, more than rows
    {"tail_capacity": 0.2}, {"tail_capacity": 0.5},  # 2 and 5 rows of 10: a tail overflows, all rows
    {"tail_capacity": 0.6},  # 6 rows of 10: every tail fits, the capacity branch
])
def test_adaptive_tail_chunks_is_exact(options):
    """Scoring only the rows that hold members of a tail cluster (whole chunks, or a capacity when it
    holds them all) changes nothing: the same loss and gradients as scoring every row, eagerly and
    compiled (a switch under XLA)."""
    every = built("adaptive")
    some = built("adaptive", **options)
    some.layer.set_weights(every.layer.get_weights())
    (key, value), = options.items()
    assert some.layer.get_config()[key] == value
    h = features(batch=10, seed=12, scale=2.0)
    y = np.array([0, 1, 5, 5, 22, 13, 3, 8, 17, 2])  # mostly head-cluster rows, a few in each tail
    np.testing.assert_allclose(to_np(some.layer.training_loss(h, y)), to_np(every.layer.training_loss(h, y)),
                               atol=1e-6)
    g_every = grad(lambda v: ops.sum(every.layer.training_loss(v, y)), h)
    g_some = grad(lambda v: ops.sum(some.layer.training_loss(v, y)), h)
    np.testing.assert_allclose(g_some, g_every, atol=1e-6)
    if BACKEND in ("jax", "tensorflow"):
        compiled = _xla(lambda v: some.layer.training_loss(v, y))(ops.convert_to_tensor(h))
        np.testing.assert_allclose(to_np(compiled), to_np(every.layer.training_loss(h, y)), atol=1e-5)
    with pytest.raises(ValueError, match="tail_chunks"):
        ks.get_head("adaptive", num_classes=N, tail_chunks=-1)


def _weight_grads(layer, fn) -> list:
    """d fn() / d each trainable weight of ``layer``, by the backend's autodiff."""
    variables = layer.trainable_variables
    if BACKEND == "jax":
        import jax

        def of(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        return [np.asarray(g) for g in jax.grad(of)([v.value for v in variables])]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        return [g.numpy() for g in tape.gradient(value, [v.value for v in variables])]
    pytest.skip(f"no variable gradient helper for {BACKEND}")


# Four tails ([4, 8), [8, 12), [12, 17), [17, 23)), 12 rows, capacity ceil(0.34 * 12) = 5 rows a tail.
CAPACITY_LABELS = {
    "spread, the last tail's rows at the end": [0, 9, 1, 4, 13, 2, 5, 18, 3, 20, 21, 22],
    "a tail with exactly the capacity": [4, 5, 6, 7, 4, 0, 1, 2, 3, 9, 13, 19],
    "a tail one row over it": [17, 18, 19, 20, 21, 22, 0, 1, 2, 3, 9, 13],
    "head rows only": [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
    "every row in tails": [4, 8, 12, 17, 5, 9, 13, 18, 6, 10, 14, 19],
}


@pytest.mark.parametrize("case", list(CAPACITY_LABELS))
def test_adaptive_tail_capacity_has_the_loss_and_every_gradient_of_scoring_every_row(case):
    """The capacity path (one sort, each tail a window of the sorted rows) against scoring every tail
    for every row: the same per-row loss, input gradient and weight gradients, eagerly and compiled."""
    params = dict(cutoffs=[4, 8, 12, 17], class_order=None)
    every = built("adaptive", **params)
    some = built("adaptive", tail_capacity=0.34, **params)
    some.layer.set_weights(every.layer.get_weights())
    assert some.layer.row_counts(12) == [5, 12]
    h = features(batch=12, seed=21, scale=2.0)
    y = np.array(CAPACITY_LABELS[case])
    expected = to_np(every.layer.training_loss(h, y))
    np.testing.assert_allclose(to_np(some.layer.training_loss(h, y)), expected, atol=1e-6)
    np.testing.assert_allclose(grad(lambda v: ops.sum(some.layer.training_loss(v, y)), h),
                               grad(lambda v: ops.sum(every.layer.training_loss(v, y)), h), atol=1e-6)
    x = ops.convert_to_tensor(h)
    for g_some, g_every in zip(_weight_grads(some.layer, lambda: ops.sum(some.layer.training_loss(x, y))),
                               _weight_grads(every.layer, lambda: ops.sum(every.layer.training_loss(x, y)))):
        np.testing.assert_allclose(g_some, g_every, atol=1e-6)
    compiled = _xla(lambda v: some.layer.training_loss(v, y))(x)
    np.testing.assert_allclose(to_np(compiled), expected, atol=1e-5)


def _cond_output_sizes(jaxpr):
    """Element counts of the outputs of every ``cond`` in ``jaxpr`` and the jaxprs nested in it."""
    sizes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            sizes += [math.prod(v.aval.shape) for v in eqn.outvars]
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    sizes += _cond_output_sizes(sub)
    return sizes


@pytest.mark.skipif(BACKEND != "jax", reason="about how JAX differentiates a switch")
@pytest.mark.parametrize("options", [{"tail_capacity": 0.25}, {"tail_chunks": 2}])
def test_adaptive_selective_tails_hand_no_logit_sized_intermediate_to_the_backward_pass(options):
    """JAX differentiates a ``switch`` by having every branch output the intermediates of all branches
    (the untaken ones' as zeros): unless the branches are recomputed in the backward pass, the
    capacity branch writes the every-row branch's ``(B, n)`` tail logits as zeros on every step (a
    third of the step, measured at N = 10^6)."""
    import jax

    batch, d, cutoffs, n = 32, 16, [8, 40], 400
    layer = ks.get_head("adaptive", num_classes=n, cutoffs=cutoffs, div_value=4.0, **options).layer
    layer.build((None, d))
    variables = layer.trainable_variables
    h = np.random.default_rng(3).normal(size=(batch, d)).astype("float32")
    y = np.arange(batch) % 12  # head rows and a few in each tail: either branch may be taken

    def loss(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return ops.sum(layer.training_loss(x, y))

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))([v.value for v in variables], h).jaxpr
    sizes = _cond_output_sizes(jaxpr)
    assert sizes, "expected the selective path's switch in the gradient"
    assert max(sizes) < batch * (n - cutoffs[-1]), "a (batch, last tail) array crosses a switch"


def test_adaptive_tail_capacity_scores_a_share_of_the_rows_when_it_holds_a_clusters_members():
    layer = built("adaptive", tail_capacity=0.25).layer
    assert layer.row_counts(512) == [128, 512] and layer.row_counts(10) == [3, 10]
    assert built("adaptive", tail_capacity=1.0).layer.row_counts(10) == [10]
    assert built("adaptive", tail_chunks=3).layer.row_counts(10) == [0, 4, 8, 10]
    # the labels of the exactness test above: at capacity 0.2 (2 rows) and 0.5 (5 rows) of its batch of
    # 10, one tail's members fit and the other's overflow, so every tail is scored for all rows; at 0.6
    # (6 rows) both fit, so each is scored for 6
    rank_of = np.argsort(PARAMS["adaptive"]["class_order"])
    ranks = rank_of[[0, 1, 5, 5, 22, 13, 3, 8, 17, 2]]
    cutoffs = PARAMS["adaptive"]["cutoffs"]
    members = [int(((ranks >= lo) & (ranks < hi)).sum()) for lo, hi in zip(cutoffs, cutoffs[1:] + [N])]
    assert sorted(members) == [2, 6]
    for capacity in (0.2, 0.5):
        assert min(members) <= math.ceil(capacity * 10) < max(members)
    assert max(members) <= math.ceil(0.6 * 10)
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="tail_capacity must be a fraction of the batch in"):
            ks.get_head("adaptive", num_classes=N, tail_capacity=bad)
    with pytest.raises(ValueError, match="tail_chunks and tail_capacity are two ways"):
        ks.get_head("adaptive", num_classes=N, tail_chunks=2, tail_capacity=0.3)


@pytest.mark.parametrize("chunks", [0, 2])
def test_adaptive_class_block_is_exact(chunks):
    """A tail's logsumexp over blocks of classes, with the gradient that recomputes each block, gives
    the plain loss and gradients: for the features, and (one SGD step under XLA) for every weight.
    Blocks of 3 split both tails (7 and 12 classes) unevenly."""
    plain = built("adaptive", tail_chunks=chunks)
    blocked = built("adaptive", tail_chunks=chunks, class_block=3)
    blocked.layer.set_weights(plain.layer.get_weights())
    assert blocked.layer.get_config()["class_block"] == 3
    h = features(batch=10, seed=12, scale=2.0)
    y = np.array([0, 1, 5, 5, 22, 13, 3, 8, 17, 2])
    np.testing.assert_allclose(to_np(blocked.layer.training_loss(h, y)), to_np(plain.layer.training_loss(h, y)),
                               atol=1e-5)
    g_plain = grad(lambda v: ops.sum(plain.layer.training_loss(v, y)), h)
    g_blocked = grad(lambda v: ops.sum(blocked.layer.training_loss(v, y)), h)
    np.testing.assert_allclose(g_blocked, g_plain, atol=1e-5)
    if chunks:  # the weights' gradients go through the same blockwise function: checked once, below
        return
    weights = []
    for head in (plain, blocked):
        inputs = keras.Input((D,))
        model = keras.Model(inputs, head.layer(inputs))
        ks.compile_model(model, head, optimizer=keras.optimizers.SGD(1.0), jit_compile=BACKEND in ("jax", "tensorflow"))
        model.train_on_batch(h, y)
        weights.append([to_np(w) for w in head.layer.weights])
    for after_plain, after_blocked in zip(*weights):
        np.testing.assert_allclose(after_blocked, after_plain, atol=1e-5)
    with pytest.raises(ValueError, match="class_block"):
        ks.get_head("adaptive", num_classes=N, class_block=-2)


def test_adaptive_default_cutoffs_and_cost():
    assert default_cutoffs(100) == [20]
    assert default_cutoffs(10) == [2]
    assert default_cutoffs(100_000) == [2000, 10000, 50000]
    assert default_cutoffs(1_000_000) == [2000, 10000, 50000]
    layer = ks.AdaptiveSoftmax(num_classes=1_000_000)
    cost = layer.cost(640)
    assert cost["ratio"] > 40  # ~46x fewer multiply-adds than Dense(640 -> 1M)
    for bad in ([5, 3], [0], [N], [2, 2], "3", [1.5]):
        with pytest.raises(ValueError, match="cutoffs"):
            ks.get_head("adaptive", num_classes=N, cutoffs=bad)
    for bad in ([0, 1], list(range(N - 1)), [0] * N, "abc", [0.5] * N):
        with pytest.raises(ValueError, match="class_order"):
            ks.get_head("adaptive", num_classes=N, class_order=bad)
    with pytest.raises(ValueError, match="div_value"):
        ks.get_head("adaptive", num_classes=N, div_value=0.5)


def test_adaptive_identity_class_order_is_none():
    layer = ks.AdaptiveSoftmax(num_classes=5, cutoffs=[2], class_order=[0, 1, 2, 3, 4])
    assert layer.class_order is None and layer.get_config()["class_order"] is None


def test_sampled_loss_with_every_class_sampled_is_full_cross_entropy():
    """Candidates = every class once, log expected counts 0 (S q = 1): the sampled loss, with the
    accidental hit (the label among the candidates) removed, is exactly -log softmax(z)_y."""
    head = built("sampled", class_order=None)
    h, y = features(batch=7, seed=2, scale=2.0), np.array([0, 5, 22, 3, 3, 11, 17])
    zeros_s, zeros_b = np.zeros(N, "float32"), np.zeros(7, "float32")
    got = to_np(head.layer.sampled_loss(h, y, np.arange(N, dtype="int32"), zeros_s, zeros_b))
    full = -reference_log_p("sampled", head.layer, h)[np.arange(7), y]
    np.testing.assert_allclose(got, full, atol=2e-5)
    # uniform sampler, S = N: log(S q) = log(N / N) = 0 as well
    uniform = ks.SampledSoftmax(num_classes=N, num_sampled=N, sampler="uniform")
    np.testing.assert_allclose(to_np(uniform.log_q(np.arange(N))) + math.log(N), 0.0, atol=1e-6)


def test_sampled_loss_matches_definition_with_duplicates_and_hits():
    head = built("sampled", class_order=None)
    h, y = features(batch=4, seed=4), np.array([1, 2, 2, 9])
    sampled = np.array([2, 2, 7, 1, 20], dtype="int32")  # duplicates, and hits for rows 0-2
    log_s = np.log([0.3, 0.3, 0.9, 2.0, 0.1]).astype("float32")
    log_t = np.log([0.5, 1.5, 1.5, 0.2]).astype("float32")
    kernel, bias = to_np(head.layer.kernel), to_np(head.layer.bias)
    for remove in (True, False):
        layer = head.layer
        layer.remove_accidental_hits = remove
        got = to_np(layer.sampled_loss(h, y, sampled, log_s, log_t))
        want = ref.sampled_softmax_loss(h, y, kernel, bias, sampled, log_s, log_t, remove_accidental_hits=remove)
        np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("sampler", ["uniform", "log_uniform"])
def test_training_loss_uses_the_log_expected_count_correction(sampler, monkeypatch):
    """training_loss = sampled_loss with log(S q(c)) for the drawn and the true classes (q over
    frequency ranks, class_order mapping ranks to class ids)."""
    head = built("sampled", sampler=sampler)
    layer = head.layer
    ranks = np.array([0, 3, 3, 17, 22], dtype="int32")
    monkeypatch.setattr(type(layer), "sample_ranks", lambda self: ops.convert_to_tensor(ranks))
    h, y = features(batch=4, seed=5), np.array([4, 0, 13, 22])
    order = np.asarray(PARAMS["sampled"]["class_order"])
    rank_of = np.argsort(order)

    def log_q(r):
        r = np.asarray(r, dtype=np.float64)
        if sampler == "uniform":
            return np.full(r.shape, -math.log(N))
        return np.log((np.log(r + 2) - np.log(r + 1)) / np.log(N + 1))

    s = layer.num_sampled
    want = ref.sampled_softmax_loss(h, y, to_np(layer.kernel), to_np(layer.bias), order[ranks],
                                    math.log(s) + log_q(ranks), math.log(s) + log_q(rank_of[y]))
    np.testing.assert_allclose(to_np(layer.training_loss(h, y)), want, atol=2e-5)


def test_samplers_draw_from_their_proposal():
    n, draws = 50, 400
    for sampler in ("uniform", "log_uniform"):
        layer = ks.SampledSoftmax(num_classes=n, num_sampled=draws, sampler=sampler, seed=0)
        counts = np.zeros(n)
        for _ in range(10):
            ranks = to_np(layer.sample_ranks())
            assert ranks.dtype == np.int32 and ranks.min() >= 0 and ranks.max() < n
            counts += np.bincount(ranks, minlength=n)
        q = np.exp(to_np(layer.log_q(np.arange(n))).astype(np.float64))
        np.testing.assert_allclose(q.sum(), 1.0, atol=1e-5)
        expected = q * draws * 10
        # a loose chi-square check (49 degrees of freedom: mean 49, sd ~10)
        assert ((counts - expected) ** 2 / expected).sum() < 110, sampler
    first, second = to_np(layer.sample_ranks()), to_np(layer.sample_ranks())
    assert not np.array_equal(first, second)  # the seed state advances


def test_sampled_validation():
    for params, needle in [({"num_sampled": 0}, "num_sampled"), ({"num_sampled": 2.0}, "num_sampled"),
                           ({"sampler": "zipf"}, "sampler"), ({"remove_accidental_hits": 1}, "remove_accidental"),
                           ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=needle):
            ks.get_head("sampled", num_classes=N, **params)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_training_loss_gradient_matches_finite_differences(name, monkeypatch):
    """d(training loss)/d features by autodiff == central differences of the float64 reference."""
    head = built(name)
    layer = head.layer
    h, y = features(batch=3, seed=8).astype(np.float64), np.array([2, 11, 20])
    if name == "adaptive":
        def reference(v):
            return -adaptive_reference(layer, v)[np.arange(3), y].sum()
    else:
        ranks = np.array([0, 11, 5, 5, 19], dtype="int32")
        monkeypatch.setattr(type(layer), "sample_ranks", lambda self: ops.convert_to_tensor(ranks))
        order = np.asarray(PARAMS["sampled"]["class_order"])
        rank_of = np.argsort(order)

        def log_expected(r):  # log(S q(r)), log-uniform proposal, S = 5
            return math.log(5) + np.log((np.log(r + 2.0) - np.log(r + 1.0)) / np.log(N + 1))

        def reference(v):
            return ref.sampled_softmax_loss(v, y, to_np(layer.kernel), to_np(layer.bias), order[ranks],
                                            log_expected(ranks), log_expected(rank_of[y])).sum()

    fd = central_difference(reference, h, 1e-6)
    g = grad(lambda v: ops.sum(layer.training_loss(v, y)), h.astype("float32"))
    np.testing.assert_allclose(g, fd, atol=2e-5)


# --------------------------------------------------------------------------- low precision
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_low_precision_policies_give_finite_float32_output(name, policy):
    keras.config.set_dtype_policy(policy)  # the conftest fixture restores float32
    head = ks.get_head(name, **PARAMS[name])
    layer = head.layer
    assert layer.compute_dtype != "float32" and layer.variable_dtype == "float32"
    layer.build((None, D))
    # weights of +-25 with features of ~+-50: logits of magnitude up to ~1e4 (adaptive's tail
    # down-projections get +-0.5, so that the reduced features stay small and the tail logits too)
    for weight in layer.trainable_weights:
        sign = np.where(np.arange(math.prod(weight.shape)).reshape(weight.shape) % 2, 1.0, -1.0)
        weight.assign(((0.5 if "projection" in weight.path else 25.0) * sign).astype("float32"))
    h = np.concatenate([features(scale=20.0), np.zeros((1, D), "float32")])
    for dtype in ("float32", policy.split("_")[1]):
        out = layer(ops.cast(h, dtype))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        out = to_np(out)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(-1), 1.0, atol=1e-4)
    y = np.arange(6) % N
    loss = to_np(head.loss(y, layer(h, training=True)))
    assert np.isfinite(loss)
    g = grad(lambda v: head.loss(y, layer(v, training=True)), h)
    assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------- training
def small_model(name, **overrides):
    head = ks.get_head(name, **{**PARAMS[name], **overrides})
    inputs = keras.Input((D,))
    model = keras.Model(inputs, head.layer(keras.layers.Dense(D, activation="tanh")(inputs)))
    return head, model


def toy_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    y = (np.abs(x[:, 0] * 7 + x[:, 1] * 5).astype("int64") % N).astype("int32")
    return x, y


@pytest.mark.parametrize("name", PROJECTION_HEADS + ("adaptive-chunks",))
def test_fit_updates_the_layer_weights_and_keras_file_round_trips(name, tmp_path):
    """The loss reads the layer's weights: under fit (XLA) they move on both backends; the sampler's
    seed state advances; training accuracy is NaN (not measured), validation accuracy exact; the
    saved model predicts identically, evaluates identically and trains on with nothing else called
    (issue 25: the loss finds its layer through the layer's output; no compile_model after loading)."""
    name, _, chunks = name.partition("-")
    head, model = small_model(name, **({"tail_chunks": 2} if chunks else {}))
    ks.compile_model(model, head, optimizer=keras.optimizers.SGD(0.3), jit_compile=True)
    x, y = toy_data()
    layer = head.layer
    before = {w.path: to_np(w).copy() for w in layer.weights}
    history = model.fit(x, y, batch_size=32, epochs=3, validation_data=(x, y), verbose=0).history
    after = {w.path: to_np(w) for w in layer.weights}
    for path in before:
        if "seed_generator" in path:
            assert not np.array_equal(before[path], after[path]), "the sampler drew the same classes every step"
        else:
            assert np.abs(before[path] - after[path]).max() > 0, f"{path} did not change"
    # It learns: the exact objective (full NLL, val_loss) falls. The sampled loss itself is an estimate
    # from 5 classes drawn afresh each step, so its epoch means need not fall (on torch they rise here
    # while val_loss falls as on JAX: 3.18 -> 3.09); adaptive's training loss is the exact NLL.
    assert history["val_loss"][-1] < history["val_loss"][0]
    if name != "sampled":
        assert history["loss"][-1] < history["loss"][0]
    assert all(math.isnan(a) for a in history["accuracy"])
    predictions = model.predict(x, verbose=0)
    assert history["val_accuracy"][-1] == pytest.approx(np.mean(predictions.argmax(-1) == y), abs=1e-6)
    assert history["val_loss"][-1] == pytest.approx(-np.mean(predictions[np.arange(len(y)), y]), rel=1e-4)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), predictions, atol=1e-6)
    assert loaded.layers[-1].get_config() == layer.get_config()
    assert type(loaded.loss) is type(head.loss)
    if chunks:  # the reloaded model's evaluate and fit are adaptive's own case; under XLA on TensorFlow the
        return  # chunked tails' two more compilations cost ~30 s of the suite's 20-minute budget
    assert loaded.evaluate(x, y, verbose=0)[0] == pytest.approx(history["val_loss"][-1], rel=1e-4)
    revived = loaded.layers[-1]
    before = {w.path: to_np(w).copy() for w in revived.weights if "seed_generator" not in w.path}
    more = loaded.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert np.isfinite(more["loss"]).all()
    for w in revived.weights:
        if w.path in before:
            assert np.abs(before[w.path] - to_np(w)).max() > 0, f"{w.path} did not change after reloading"


@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_config_round_trip(name):
    head = built(name)
    config = head.layer.get_config()
    for key, value in PARAMS[name].items():
        assert config[key] == value
    clone = type(head.layer).from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head.layer))
    assert type(revived) is type(head.layer) and revived.get_config() == config
    loss = head.loss
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    revived_loss = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived_loss) is type(loss) and revived_loss.get_config() == loss.get_config()


def test_adaptive_label_smoothing_is_exact():
    """(1 - eps) (-log p_y) - eps mean_c log p_c, from the features, equals the same of the output."""
    head = built("adaptive")
    h, y = features(batch=6, seed=9, scale=2.0), np.array([0, 3, 7, 12, 19, 22])
    eps = 0.2
    loss = head.make_loss(label_smoothing=eps)
    log_p = adaptive_reference(head.layer, h)
    want = (1 - eps) * -log_p[np.arange(6), y] - eps * log_p.mean(-1)
    got = to_np(ks.AdaptiveSoftmaxLoss(label_smoothing=eps, reduction=None)(y, head.layer(h, training=True)))
    np.testing.assert_allclose(got, want, atol=3e-5)
    assert float(to_np(loss(y, head.layer(h, training=True)))) == pytest.approx(want.mean(), abs=3e-5)
    # evaluation (log-probabilities in) gives the same smoothed loss
    assert float(to_np(loss(y, head.layer(h)))) == pytest.approx(want.mean(), abs=3e-5)


def test_projection_losses_refuse_smoothing_distributions_and_a_packet_without_its_layer():
    with pytest.raises(ValueError, match="label_smoothing"):
        ks.SampledSoftmaxLoss(label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        built("sampled").layer.training_loss(features(), np.zeros(5), label_smoothing=0.1)
    head = built("adaptive")
    packet = head.layer(features(), training=True)
    assert tuple(packet.shape) == (5, 1, D)
    with pytest.raises(ValueError, match="distributions"):
        head.loss(np.full((5, N), 1.0 / N, "float32"), packet)
    # a hand-made loss finds the layer through its output (no pairing step) ...
    np.testing.assert_allclose(to_np(ks.AdaptiveSoftmaxLoss()(np.zeros(5), packet)),
                               to_np(head.loss(np.zeros(5), packet)), rtol=1e-6)
    # ... and refuses, in one line, a packet that lost it (here: converted to numpy)
    with pytest.raises(ks.CompositionError, match="head layer") as error:
        ks.AdaptiveSoftmaxLoss()(np.zeros(5), to_np(packet))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="from_logits"):
        ks.SampledSoftmaxLoss(from_logits=True)


# --------------------------------------------------------------------------- XLA
def _xla(fn):
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, reduce_retracing=True)


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="XLA via jax or tf")
@pytest.mark.parametrize("name", PROJECTION_HEADS)
def test_inference_and_training_loss_compile(name):
    head = built(name)
    layer = head.layer
    h = features(scale=2.0)
    h[0] = 1e3
    y = np.array([0, 4, 11, 22, 7], dtype="int32")
    eager = to_np(layer(h))
    compiled = to_np(_xla(lambda v: layer(v, training=False))(ops.convert_to_tensor(h)))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)
    if name == "adaptive":
        eager_loss = to_np(layer.training_loss(h, y))
        compiled_loss = to_np(_xla(lambda v: layer.training_loss(v, y))(ops.convert_to_tensor(h)))
        np.testing.assert_allclose(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    # the full train step under XLA is covered by the fit test above (jit_compile=True)
