"""Weight initializers drawn on the host with numpy.

Keras's own random initializers run as backend ops; on JAX each distinct weight shape compiles its
own small XLA program (a truncated normal costs ~0.4 s to compile), which made building the
ResNet-12 take 7-11 s. Drawing the same distribution with numpy takes milliseconds and is seeded by
``keras.utils.set_random_seed`` (which seeds numpy's global generator) or by ``seed``.
"""

from __future__ import annotations

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_softmax")
class HostHeNormal(keras.initializers.Initializer):
    """He-normal (Keras's ``he_normal``): truncated normal at 2 std, std ``sqrt(2 / fan_in)``.

    Args:
        seed: int seed; ``None`` draws from numpy's global generator.
    """

    #: std of a standard normal truncated to [-2, 2]; dividing by it restores the target variance.
    TRUNCATED_STD = 0.87962566103423978

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        fan_in = math.prod(shape[:-1]) if len(shape) > 1 else shape[0]
        std = math.sqrt(2.0 / max(1, fan_in)) / self.TRUNCATED_STD
        rng = np.random.default_rng(self.seed) if self.seed is not None else np.random
        values = rng.standard_normal(size=shape)
        outside = np.abs(values) > 2.0
        while outside.any():  # resample until every draw lies in [-2, 2]
            values[outside] = rng.standard_normal(size=int(outside.sum()))
            outside = np.abs(values) > 2.0
        return keras.ops.convert_to_tensor((values * std).astype(keras.backend.standardize_dtype(dtype or "float32")))

    def get_config(self):
        return {"seed": self.seed}
