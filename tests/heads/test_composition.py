"""Issue 25: composing a head and its loss the Keras way, and reloading every head to train on.

* The README's hand-built pairs (constructors only) train as the ``get_head`` pair does, or refuse at
  their first call in one line that names the two correct ways (``CompositionError``).
* A logits model compiled with the head's loss and ``from_logits=True`` (the head on for inference)
  gets, for every head that takes logits, exactly the gradient the pair gives its logits, so it trains
  as the pair does; a digits run checks that it reaches the pair's accuracy.
* A ``.keras`` file holding every head, and the mismatched loss, loads after ``import keras_softmax``
  and trains on with no other call.

Kept cheap (the whole file runs again on each other backend through ``tests/test_backends.py``):
training runs put several independent branches into one Keras model, so each is one compile.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_softmax as ks

from . import composition as comp
from .helpers import grad, to_np

LOGIT_HEADS = [name for name in ks.list_heads() if not ks.heads.head_spec(name).owns_projection]
TRAINABLE_BY_HAND = [name for name in ks.list_heads() if name not in comp.REFUSED_BY_HAND]


def _config(obj):
    config = dict(obj.get_config())
    config.pop("name", None)
    if config.get("hard") is False:
        config.pop("log_straight_through", None)  # acts on hard samples only
    return config


@pytest.fixture(scope="module")
def data():
    return comp.digits()


@pytest.mark.parametrize("name", TRAINABLE_BY_HAND)
def test_a_hand_built_pair_is_the_registry_pair(name):
    """Same layer and loss as ``get_head``'s: it trains exactly as the pair does (the digits run below
    trains the ones whose loss must find its layer by itself)."""
    layer, loss = comp.readme_pair(name)
    head = comp.registry_head(name)
    assert type(layer) is type(head.layer) and type(loss) is type(head.loss)
    assert _config(layer) == _config(head.layer)
    assert _config(loss) == _config(head.loss)


@pytest.mark.parametrize("name", comp.REFUSED_BY_HAND)
def test_a_bare_sparse_layer_under_its_loss_refuses_at_the_first_call_in_one_line(name, data):
    (x, y), _ = data
    layer, loss = comp.readme_pair(name)
    model, _ = comp.branches_model({name: (layer, loss)})
    with pytest.raises(ks.CompositionError) as error:
        model.fit(x[:64], y[:64], epochs=1, batch_size=64, verbose=0)
    message = str(error.value)
    assert "\n" not in message
    assert "get_head" in message and "from_logits=True" in message, message


@pytest.mark.parametrize("name", LOGIT_HEADS)
def test_from_logits_gives_the_logits_the_gradient_of_the_pair(name):
    head = comp.registry_head(name)
    scores_loss = head.make_loss(from_logits=True)
    assert scores_loss.from_logits
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(6, head.num_logits(comp.NUM_CLASSES))) * 3).astype("float32")
    y = rng.integers(0, comp.NUM_CLASSES, size=6)
    # the stochastic heads' pair draws noise in training; compare their noiseless forms
    training = name not in comp.SEEDED
    want = grad(lambda v: head.loss(y, head.layer(v, training=training)), z)
    got = grad(lambda v: scores_loss(y, v), z)
    np.testing.assert_allclose(got, want, atol=2e-5)
    if name not in comp.REFUSED_BY_HAND:  # the softmax family: the same value too
        np.testing.assert_allclose(to_np(scores_loss(y, z)), to_np(head.loss(y, head.layer(z))), rtol=1e-5)


def test_an_output_no_head_made_under_a_fenchel_young_loss_warns_once_in_one_line(data):
    """Keras's own ``activation="sparsemax"`` (true Jacobian) before ``SparsemaxLoss()`` trains silently
    wrong; the loss cannot see where an untagged output came from, so it says so once, at ``fit``."""
    import warnings

    (x, y), _ = data
    inputs = keras.Input((x.shape[1],))
    model = keras.Model(inputs, keras.layers.Dense(comp.NUM_CLASSES, activation="sparsemax")(inputs))
    model.compile("adam", ks.SparsemaxLoss())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x[:128], y[:128], epochs=2, batch_size=64, verbose=0)
        ks.SparsemaxLoss()(y[:4], np.full((4, comp.NUM_CLASSES), 0.1, "float32"))  # numpy values: no warning
    messages = [str(w.message) for w in caught if issubclass(w.category, ks.CompositionWarning)]
    assert len(messages) == 1, messages
    assert "\n" not in messages[0]
    assert "get_head" in messages[0] and "SparsemaxLoss(from_logits=True)" in messages[0], messages[0]


#: The registry's pairs, hand-built pairs and reloaded models never warn (their outputs carry the tag,
#: and Keras's symbolic build of the loss, whose stand-in outputs carry none, is not a call to check).
NEVER_WARNS = pytest.mark.filterwarnings("error::keras_softmax.losses.CompositionWarning")


@NEVER_WARNS
@pytest.mark.slow
def test_digits_hand_built_and_logits_models_reach_the_pair(data):
    """One model, independent branches: the pairs, hand-built pairs whose loss finds its layer by the
    output's tag (adaptive, sampled), and logits models trained with ``from_logits=True``."""
    pairs, hand, logits = {}, {}, {}
    for name in ("sparsemax", "entmax_alpha", "adaptive", "sampled"):
        head = comp.registry_head(name)
        pairs[f"pair_{name}"] = (head.layer, head.loss)
    for name in ("adaptive", "sampled"):
        hand[f"hand_{name}"] = comp.readme_pair(name)
    for name in ("sparsemax", "entmax_alpha"):
        head = comp.registry_head(name)
        logits[f"logits_{name}"] = (head.layer, head.make_loss(from_logits=True))
    same_start = {key: "pair_" + key.split("_", 1)[1] for key in [*hand, *logits]}
    got = comp.fit_and_score({**pairs, **hand}, data, logits=logits, same_start=same_start)
    for key, value in got.items():
        reference = got["pair_" + key.split("_", 1)[1]]
        assert reference > 0.85, (key, got)
        assert value >= reference - 0.02, (key, got)


@NEVER_WARNS
def test_every_head_and_the_mismatched_loss_reload_from_a_keras_file_and_train_on(data, tmp_path):
    (x, y), _ = data
    pairs = {name: (h.layer, h.loss) for name in ks.list_heads() for h in [comp.registry_head(name)]}
    pairs["mismatched"] = (comp.registry_head("softmax").layer, ks.MismatchedCrossEntropy())
    model, _ = comp.branches_model(pairs, run_eagerly=True)
    path = tmp_path / "every_head.keras"
    model.save(path)

    revived = keras.saving.load_model(path)  # no custom_objects, no compile_model
    assert [type(loss) for loss in revived.loss] == [type(loss) for _, loss in pairs.values()]
    for got, want in zip(revived(x[:8]), model(x[:8])):
        np.testing.assert_allclose(to_np(got), to_np(want), atol=1e-5)

    def hidden(m):
        return {name: np.array(m.get_layer(f"{name}_hidden").get_weights()[0]) for name in pairs}

    def projections(m):
        return [np.array(w) for layer in m.layers if isinstance(layer, ks.ProjectionHead) for w in layer.get_weights()]

    before, heads_before = hidden(revived), projections(revived)
    history = revived.fit(x[:64], [y[:64]] * len(pairs), epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    after = hidden(revived)
    for name in pairs:  # every branch's loss sent a gradient back through its head
        assert not np.allclose(before[name], after[name]), name
    heads_after = projections(revived)
    assert len(heads_after) >= 4 and all(not np.allclose(a, b) for a, b in zip(heads_before, heads_after))
