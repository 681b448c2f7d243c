"""Digits with every head, three ways, each way one Keras model of independent branches (one compile).

* the registry's pair (``get_head``),
* the layer and loss written by hand with the constructors the README's Heads table shows,
* a logits model compiled with the head's loss and ``from_logits=True``, the head put on for inference.

Each branch is ``Dense(64, relu) -> [Dense(num_logits)] -> head`` on the same input, with its own
weights and its own loss: the model's loss is the sum, so each branch trains exactly as it would alone
(Adam updates each variable from its own gradient). Used by ``tests/heads/test_composition.py``.
"""

from __future__ import annotations

import keras
import numpy as np

import keras_softmax as ks

NUM_CLASSES = 10
EPOCHS = 4
FINE_TO_COARSE = ks.heads.grouped_classes(NUM_CLASSES)
#: The heads whose bare layer cannot train under its own loss on the layer's output (true Jacobian).
REFUSED_BY_HAND = ("sparsemax", "entmax15", "entmax_alpha")
SEEDED = ("gumbel", "log_gumbel", "sampled")


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], data.target[order].astype("int32")
    return (x[:1280], y[:1280]), (x[1280:], y[1280:])  # 10 full batches of 128


def readme_pair(name: str):
    """The layer and loss of head ``name`` written by hand, as the README's Heads table shows them."""
    layer = {
        "softmax": lambda: ks.Softmax(), "log_softmax": lambda: ks.LogSoftmax(),
        "gumbel": lambda: ks.GumbelSoftmax(seed=0), "log_gumbel": lambda: ks.LogGumbelSoftmax(seed=0),
        "sparsemax": lambda: ks.Sparsemax(), "entmax15": lambda: ks.Entmax15(),
        "taylor": lambda: ks.TaylorSoftmax(), "log_taylor": lambda: ks.LogTaylorSoftmax(),
        "base2": lambda: ks.Base2Softmax(), "exp_sin": lambda: ks.ExpSinSoftmax(),
        "normal_cdf": lambda: ks.NormalCDFSoftmax(),
        "hierarchical": lambda: ks.HierarchicalSoftmax(fine_to_coarse=FINE_TO_COARSE, num_classes=NUM_CLASSES),
        "adaptive": lambda: ks.AdaptiveSoftmax(num_classes=NUM_CLASSES),
        "sampled": lambda: ks.SampledSoftmax(num_classes=NUM_CLASSES, seed=0),
        "entmax_alpha": lambda: ks.EntmaxAlpha(),
    }[name]()
    loss = {
        "softmax": ks.ProbabilityCrossEntropy, "log_softmax": ks.NegativeLogLikelihood,
        "gumbel": ks.ProbabilityCrossEntropy, "log_gumbel": ks.NegativeLogLikelihood,
        "sparsemax": ks.SparsemaxLoss, "entmax15": ks.Entmax15Loss, "taylor": ks.ProbabilityCrossEntropy,
        "log_taylor": ks.NegativeLogLikelihood, "base2": ks.ProbabilityCrossEntropy,
        "exp_sin": ks.ProbabilityCrossEntropy, "normal_cdf": ks.ProbabilityCrossEntropy,
        "hierarchical": ks.NegativeLogLikelihood, "adaptive": ks.AdaptiveSoftmaxLoss,
        "sampled": ks.SampledSoftmaxLoss, "entmax_alpha": ks.EntmaxAlphaLoss,
    }[name]()
    return layer, loss


def registry_head(name: str) -> ks.HeadWithLoss:
    params = ks.complete_params(name, {"seed": 0} if name in SEEDED else {}, NUM_CLASSES,
                                fine_to_coarse=FINE_TO_COARSE)
    return ks.get_head(name, **params)


def branch(inputs, layer, name: str, logits_output=False):
    """One independent branch: (its logits or features, its output)."""
    x = keras.layers.Dense(32, activation="relu", name=f"{name}_hidden")(inputs)
    if not layer.owns_projection:
        x = keras.layers.Dense(layer.num_logits(NUM_CLASSES), dtype="float32", name=f"{name}_logits")(x)
    return x, (x if logits_output else layer(x))


def branches_model(pairs: dict, logits=None, seed=0, run_eagerly=False):
    """One model with a branch per entry of ``pairs`` (name -> (layer, loss): the branch outputs the layer's
    output) and of ``logits`` (the branch outputs its logits, for a ``from_logits`` loss).

    Returns (the compiled training model, the inference model: every branch ending in its head layer).
    """
    logits = logits or {}
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,), name="pixels")
    ends = {name: branch(inputs, layer, name) for name, (layer, _) in pairs.items()}
    ends.update({name: branch(inputs, layer, name, logits_output=True) for name, (layer, _) in logits.items()})
    everything = {**pairs, **logits}
    model = keras.Model(inputs, [ends[name][1] for name in everything])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=[loss for _, loss in everything.values()],
                  run_eagerly=run_eagerly)
    inference = keras.Model(inputs, [ends[name][1] if name in pairs else everything[name][0](ends[name][0])
                                     for name in everything])
    return model, inference


def fit_and_score(pairs: dict, data, logits=None, epochs=EPOCHS, same_start=None) -> dict:
    """Validation accuracy of each branch after ``epochs`` epochs of Adam on digits.

    ``same_start``: branch -> branch whose initial weights (hidden, logits and head layer) it copies, so
    that the two differ only in how head and loss are put together.
    """
    (x, y), (x_val, y_val) = data
    model, inference = branches_model(pairs, logits)
    everything = {**pairs, **(logits or {})}
    for name, reference in (same_start or {}).items():
        for suffix in ("hidden", "logits"):
            try:
                source = model.get_layer(f"{reference}_{suffix}")
            except ValueError:
                continue
            model.get_layer(f"{name}_{suffix}").set_weights(source.get_weights())
        if everything[reference][0].weights:
            everything[name][0].set_weights(everything[reference][0].get_weights())
    model.fit(x, [y] * len(model.outputs), epochs=epochs, batch_size=128, verbose=0)
    outputs = inference(x_val, training=False)
    return {name: float(np.mean(np.argmax(np.asarray(keras.ops.convert_to_numpy(out)), axis=-1) == y_val))
            for name, out in zip([*pairs, *(logits or {})], outputs)}
