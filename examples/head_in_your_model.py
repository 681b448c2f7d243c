"""Put a keras-softmax head on your own Keras model, with the loss that matches it.

    python examples/head_in_your_model.py [HEAD] [--from-logits]

Trains a small MLP on scikit-learn's digits with the chosen head (default: sparsemax) for a few
epochs on the CPU and prints its validation accuracy. Works for every name ``keras-softmax heads``
lists. Two ways to compose a head and its loss (README, "Heads"):

* pattern A (default): the model outputs the head's distribution and is compiled with ``head.loss``
  from ``ks.get_head``;
* pattern B (``--from-logits``): the model outputs the logits and is compiled with the head's loss
  with ``from_logits=True``; the head layer goes on the logits for inference.

Heads that own their projection (adaptive, sampled) take the hidden features instead of logits, and
have no pattern B.
"""

import sys

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_softmax as ks

NUM_CLASSES = 10


def main(head_name: str = "sparsemax", from_logits: bool = False) -> float:
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, digits.target, test_size=0.2, random_state=0,
                                                      stratify=digits.target)
    # num_classes for the heads that need it (adaptive, sampled, hierarchical), class_order from the
    # labels, and a superclass map for hierarchical (digits has none: groups of consecutive classes).
    params = ks.complete_params(head_name, {}, NUM_CLASSES, labels=y_train,
                                fine_to_coarse=ks.heads.grouped_classes(NUM_CLASSES))
    head = ks.get_head(head_name, **params)

    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(128, activation="relu")(inputs)
    if head.owns_projection:  # adaptive, sampled: the head holds the classifier weights itself
        scores = hidden
    else:
        scores = keras.layers.Dense(head.num_logits(NUM_CLASSES), dtype="float32", name="logits")(hidden)
    outputs = head.layer(scores)

    if from_logits:  # pattern B: train the logits, add the head for inference
        model = keras.Model(inputs, scores)
        loss = head.make_loss(from_logits=True)  # e.g. ks.SparsemaxLoss(from_logits=True)
        inference = keras.Model(inputs, outputs)
    else:  # pattern A: the registry's pair
        model = inference = keras.Model(inputs, outputs)
        loss = head.loss
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=0)
    predictions = inference.predict(x_val, verbose=0)
    accuracy = float(np.mean(np.argmax(predictions, axis=-1) == y_val))
    way = "from_logits" if from_logits else "pair"
    print(f"{head_name} ({way}): validation accuracy {accuracy:.2%}; "
          f"first row of outputs: {np.round(predictions[0], 3)}")
    return accuracy


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(*names[:1], from_logits="--from-logits" in sys.argv)
