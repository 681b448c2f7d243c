"""Put a keras-softmax head on your own Keras model, with the loss that matches it.

    python examples/head_in_your_model.py [HEAD]

Trains a small MLP on scikit-learn's digits with the chosen head (default: sparsemax) for a few
epochs on the CPU and prints its validation accuracy.
"""

import sys

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_softmax as ks


def main(head_name: str = "sparsemax") -> float:
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, digits.target, test_size=0.2, random_state=0,
                                                      stratify=digits.target)
    head = ks.get_head(head_name)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(128, activation="relu")(inputs)
    logits = keras.layers.Dense(head.num_logits(10), dtype="float32", name="logits")(hidden)
    model = keras.Model(inputs, head.layer(logits))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=head.loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=0)
    outputs = model.predict(x_val, verbose=0)
    accuracy = float(np.mean(np.argmax(outputs, axis=-1) == y_val))
    print(f"{head_name}: validation accuracy {accuracy:.2%}; first row of outputs: {np.round(outputs[0], 3)}")
    return accuracy


if __name__ == "__main__":
    main(*sys.argv[1:2])
