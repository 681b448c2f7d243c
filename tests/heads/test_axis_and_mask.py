"""Heads that normalise along one axis take ``axis`` and a ``mask``, as Keras's ``Softmax`` does (issue 25),
so that they drop into attention; a mask entry False gets probability 0."""

import keras
import numpy as np
import pytest

import keras_softmax as ks

from .helpers import to_np

ONE_AXIS = {
    "softmax": lambda **kw: ks.Softmax(temperature=2.0, **kw),
    "log_softmax": lambda **kw: ks.LogSoftmax(**kw),
    "taylor": lambda **kw: ks.TaylorSoftmax(order=4, **kw),
    "base2": lambda **kw: ks.Base2Softmax(**kw),
    "sparsemax": lambda **kw: ks.Sparsemax(**kw),
    "entmax15": lambda **kw: ks.Entmax15(**kw),
    "entmax_alpha": lambda **kw: ks.EntmaxAlpha(alpha=1.3, **kw),
    "gumbel": lambda **kw: ks.GumbelSoftmax(**kw),
}
Z = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32") * 2


def probabilities(layer, out):
    out = to_np(out)
    return np.exp(out) if layer.output_kind == "log_probabilities" else out


@pytest.mark.parametrize("name", ONE_AXIS)
def test_axis_normalises_along_that_axis(name):
    along_1 = ONE_AXIS[name](axis=1)
    last = ONE_AXIS[name]()
    got = probabilities(along_1, along_1(Z))
    want = np.moveaxis(probabilities(last, last(np.moveaxis(Z, 1, -1))), -1, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert type(along_1).from_config(along_1.get_config()).axis == 1


@pytest.mark.parametrize("name", ONE_AXIS)
def test_mask_gives_masked_entries_probability_zero(name):
    layer = ONE_AXIS[name]()
    mask = np.ones((2, 5, 3), dtype=bool)
    mask[:, :, 0] = False
    p = probabilities(layer, layer(Z, mask=mask))
    assert np.all(p[..., 0] < 1e-30)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)


def test_a_sparse_head_as_attention_weights():
    """Scaled dot-product attention with sparsemax weights over the keys, keys masked by padding."""
    q = keras.Input((4, 8))
    k = keras.Input((6, 8))
    pad = keras.Input((1, 6), dtype="bool")
    scores = keras.ops.einsum("bqd,bkd->bqk", q, k)
    weights = ks.Sparsemax(axis=-1)(scores, mask=pad)
    model = keras.Model([q, k, pad], weights)
    rng = np.random.default_rng(1)
    mask = np.ones((2, 1, 6), dtype=bool)
    mask[:, :, 4:] = False
    w = to_np(model([rng.normal(size=(2, 4, 8)).astype("float32"), rng.normal(size=(2, 6, 8)).astype("float32"),
                     mask]))
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[..., 4:] == 0.0)
