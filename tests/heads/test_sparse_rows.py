"""Sparse row updates of the sampled head (keras_softmax.models.sparse_rows).

The reference is Keras's own dense update (the same model with ``row_updates="dense"``): plain SGD must
match it exactly; lazy momentum and Adam must match it whenever every row is read each step, and must
leave the weights and slots of rows that are never read untouched. The sparse path runs on JAX; on
another backend the model trains densely and says so (tests/test_backends.py runs this file on both).
"""

import keras
import numpy as np
import pytest

from keras_softmax.models import SparseRowsModel, build_model
from keras_softmax.scale import build_classifier

from .helpers import BACKEND

N, D, B = 12, 6, 12
JAX_ONLY = pytest.mark.skipif(BACKEND != "jax", reason="sparse row updates are implemented on JAX")
OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.05),
}


def train(optimizer, row_updates, labels, steps=3, num_sampled=5, hidden=4):
    """A tiny sampled-softmax classifier after ``steps`` steps on a fixed batch: (model, weights, slots)."""
    model, loss, _ = build_classifier("sampled", N, D, hidden=hidden, seed=0, head_params={
        "num_sampled": num_sampled, "seed": 1, "row_updates": row_updates})
    model.compile(optimizer=optimizer, loss=loss, jit_compile=BACKEND == "jax")
    x = np.random.default_rng(0).normal(size=(len(labels), D)).astype("float32")
    y = np.asarray(labels, dtype="int32")
    for _ in range(steps):
        model.train_on_batch(x, y)
    weights = {v.path.split("/", 1)[1] if v.path.startswith("sampled_softmax") else v.path: np.asarray(v)
               for v in model.trainable_variables}
    slots = [np.asarray(v) for v in model.optimizer.variables]
    return model, weights, slots


def test_build_model_gives_the_sampled_head_a_sparse_rows_model_and_others_a_plain_one():
    assert type(build_model("sampled", num_classes=10, widths=(4, 4, 4, 4))) is SparseRowsModel
    assert not isinstance(build_model("log_softmax", num_classes=10, widths=(4, 4, 4, 4)), SparseRowsModel)


@JAX_ONLY
def test_sgd_sparse_update_equals_the_dense_update():
    labels = [0, 3, 3, 7, 1, 0, 9, 9, 2, 5, 3, 0]  # repeats: duplicated rows must sum their gradients
    model, sparse, _ = train(OPTIMIZERS["sgd"](), "sparse", labels)
    _, dense, _ = train(OPTIMIZERS["sgd"](), "dense", labels)
    assert model.row_update_rule() == "sparse"
    for path in dense:
        np.testing.assert_allclose(sparse[path], dense[path], rtol=1e-6, atol=1e-7, err_msg=path)
    initial = train(OPTIMIZERS["sgd"](), "sparse", labels, steps=0)[1]
    assert np.abs(sparse["kernel"] - initial["kernel"]).max() > 1e-3  # the kernel did train


@JAX_ONLY
@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_lazy_rules_equal_the_dense_update_when_every_row_is_read(name):
    labels = list(range(N))  # every class is a label: every row is read every step
    _, sparse, sparse_slots = train(OPTIMIZERS[name](), "sparse", labels, steps=4)
    _, dense, dense_slots = train(OPTIMIZERS[name](), "dense", labels, steps=4)
    for path in dense:
        np.testing.assert_allclose(sparse[path], dense[path], rtol=2e-5, atol=2e-6, err_msg=path)
    for a, b in zip(sparse_slots, dense_slots):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@JAX_ONLY
def test_a_model_whose_only_weights_are_rows_trains_and_counts_its_steps():
    labels = list(range(N))
    model, sparse, _ = train(OPTIMIZERS["adam"](), "sparse", labels, steps=3, hidden=0)
    _, dense, _ = train(OPTIMIZERS["adam"](), "dense", labels, steps=3, hidden=0)
    assert int(model.optimizer.iterations) == 3 and len(sparse) == 2
    for path in dense:
        np.testing.assert_allclose(sparse[path], dense[path], rtol=2e-5, atol=2e-6, err_msg=path)


@JAX_ONLY
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_lazy_rules_change_only_the_rows_each_step_reads(name):
    labels = [0, 1, 2] * 4  # each step reads rows 0-2 and one sampled row
    model, _, _ = train(OPTIMIZERS[name](), "sparse", labels, steps=0, num_sampled=1)
    x = np.random.default_rng(0).normal(size=(B, D)).astype("float32")
    kernel = model.layers[-1].kernel
    changed_ever = set()
    for _ in range(5):
        before = np.asarray(kernel).copy()
        slots_before = [np.asarray(v).copy() for v in model.optimizer.variables]
        model.train_on_batch(x, np.asarray(labels))
        changed = set(np.flatnonzero(np.any(np.asarray(kernel) != before, axis=1)).tolist())
        # a dense momentum/Adam step would also move every row read in an earlier step
        assert {0, 1, 2} <= changed and len(changed) <= 4, changed
        unread = [r for r in range(N) if r not in changed]
        for slot_before, slot in zip(slots_before, model.optimizer.variables):
            if slot.shape == (N, D):
                np.testing.assert_array_equal(np.asarray(slot)[unread], slot_before[unread])
        changed_ever |= changed
    assert len(changed_ever) > 4  # different rows were sampled, so laziness was tested


@pytest.mark.parametrize("optimizer, reason", [
    (lambda: keras.optimizers.SGD(0.1, clipnorm=1.0), "gradient clipping"),
    (lambda: keras.optimizers.AdamW(0.01), "AdamW has no sparse rule"),
    (lambda: keras.optimizers.SGD(0.1, weight_decay=1e-4), "weight decay"),
    (lambda: keras.optimizers.Adam(0.01, amsgrad=True), "amsgrad"),
])
def test_other_optimizers_fall_back_to_the_exact_dense_update(optimizer, reason):
    labels = [0, 3, 3, 7, 1, 0, 9, 9, 2, 5, 3, 0]
    model, sparse, _ = train(optimizer(), "sparse", labels, steps=2 if BACKEND == "jax" else 0)
    rule = model.row_update_rule()
    assert rule.startswith("dense: ") and (reason in rule or BACKEND != "jax"), rule
    if BACKEND != "jax":
        return  # one code path (Keras's own train step) either way
    _, dense, _ = train(optimizer(), "dense", labels, steps=2)
    for path in dense:
        np.testing.assert_allclose(sparse[path], dense[path], rtol=1e-6, atol=1e-7, err_msg=path)


def test_non_jax_backends_say_they_train_densely():
    model, _, _ = train(OPTIMIZERS["sgd"](), "sparse", list(range(N)), steps=1)
    if BACKEND == "jax":
        assert model.row_update_rule() == "sparse"
    else:
        assert model.row_update_rule() == f"dense: sparse row updates are implemented for the JAX backend (this is {BACKEND})"


def test_sparse_rows_model_saves_and_loads_as_itself(tmp_path):
    labels = [0, 3, 3, 7, 1, 0, 9, 9, 2, 5, 3, 0]
    model, _, _ = train(OPTIMIZERS["adam"](), "sparse", labels, steps=2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is SparseRowsModel and loaded.layers[-1].row_updates == "sparse"
    x = np.random.default_rng(1).normal(size=(4, D)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)),
                               rtol=1e-6, atol=1e-6)


def test_row_updates_is_checked():
    from keras_softmax import get_head

    with pytest.raises(ValueError, match="row_updates must be 'sparse' or 'dense'"):
        get_head("sampled", num_classes=10, row_updates="lazy")
