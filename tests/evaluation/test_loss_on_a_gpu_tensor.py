"""evaluate_model reads the head's loss as a backend scalar, not through numpy.

On the GPU machine the torch backend's loss is a CUDA tensor, which ``np.asarray`` refuses ("can't
convert cuda:0 device type tensor to numpy"): the fast preset trained on torch, then failed in its
evaluation with no report. A scalar that refuses numpy conversion stands in for it here.
"""

import types

import keras
import numpy as np

import keras_softmax as ks
from keras_softmax.evaluation.evaluate import evaluate_model


class DeviceScalar:
    """Like a CUDA tensor: ``float()`` works, numpy conversion does not."""

    def __init__(self, value):
        self.value = float(keras.ops.convert_to_numpy(value))

    def __float__(self):
        return self.value

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


def test_loss_of_a_device_tensor_is_read():
    head = ks.get_head("softmax")
    images = keras.Input((2, 2, 1), dtype="uint8")
    outputs = head.layer(keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(images))))
    model = keras.Model(images, outputs)
    x = np.random.default_rng(0).integers(0, 256, size=(6, 2, 2, 1), dtype=np.uint8)
    y = np.arange(6) % 3
    loss = head.loss
    device_head = types.SimpleNamespace(name=head.name, output_kind=head.output_kind,
                                        loss=lambda labels, outputs: DeviceScalar(loss(labels, outputs)))
    dataset = types.SimpleNamespace(split=lambda split: (x, y), class_names=["a", "b", "c"], fine_to_coarse=None)
    report = evaluate_model(model, device_head, dataset, batch_size=3)
    assert report["loss"] == float(keras.ops.convert_to_numpy(loss(y, model.predict(x, verbose=0))))
