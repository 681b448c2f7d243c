"""Two-level hierarchical softmax over fine classes grouped into superclasses."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_softmax.cifar100 import FINE_TO_COARSE
from keras_softmax.heads.base import Head


def _check_fine_to_coarse(fine_to_coarse, num_classes):
    if fine_to_coarse is None:
        if num_classes not in (None, len(FINE_TO_COARSE)):
            raise ValueError(
                f"fine_to_coarse is required when num_classes != {len(FINE_TO_COARSE)} "
                f"(the default is the CIFAR-100 superclass table; got num_classes={num_classes})"
            )
        fine_to_coarse = FINE_TO_COARSE
    groups = [int(g) for g in fine_to_coarse]
    if any(g < 0 for g in groups) or len(groups) < 1:
        raise ValueError("fine_to_coarse must be a non-empty list of superclass indices >= 0")
    num_coarse = max(groups) + 1
    missing = sorted(set(range(num_coarse)) - set(groups))
    if missing:
        raise ValueError(f"fine_to_coarse must use every superclass 0..{num_coarse - 1}; missing {missing}")
    if num_classes is not None and int(num_classes) != len(groups):
        raise ValueError(
            f"num_classes must equal len(fine_to_coarse) = {len(groups)} (got {num_classes})"
        )
    return groups, num_coarse


@keras.saving.register_keras_serializable(package="keras_softmax")
class HierarchicalSoftmax(Head):
    """Hierarchical softmax: ``log p(f) = log p(c(f)) + log p(f | c(f))``.

    The layer consumes ``F + C`` logits (``num_logits(F)``): the first ``F`` score the fine classes,
    the last ``C`` the superclasses. ``log p(c) = log_softmax(z_coarse)_c`` and
    ``log p(f | c) = z_f - logsumexp_{g: c(g) = c} z_g``. The output is the log-probability of each
    fine class (exp sums to 1 over the ``F`` fine classes). Pair it with
    :class:`keras_softmax.NegativeLogLikelihood` on fine labels.

    Args:
        fine_to_coarse: superclass index of each fine class; defaults to the official CIFAR-100 table.
        num_classes: number of fine classes (must equal ``len(fine_to_coarse)``).

    Example:
        >>> head = ks.HierarchicalSoftmax()          # CIFAR-100: 100 fine + 20 coarse logits
        >>> log_p = head(keras.ops.zeros((1, head.num_logits(100))))
    """

    output_kind = "log_probabilities"

    def __init__(self, fine_to_coarse=None, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        self.fine_to_coarse, self.num_coarse = _check_fine_to_coarse(fine_to_coarse, num_classes)
        self.num_fine = len(self.fine_to_coarse)
        self.num_classes = self.num_fine
        membership = np.zeros((self.num_fine, self.num_coarse), dtype="float32")
        membership[np.arange(self.num_fine), self.fine_to_coarse] = 1.0
        self._membership = membership
        self._groups = np.asarray(self.fine_to_coarse, dtype="int32")

    def num_logits(self, num_classes: int) -> int:
        if num_classes != self.num_fine:
            raise ValueError(f"this hierarchical head has {self.num_fine} fine classes, not {num_classes}")
        return self.num_fine + self.num_coarse

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_fine + self.num_coarse:
            raise ValueError(
                f"HierarchicalSoftmax expects {self.num_fine} fine + {self.num_coarse} coarse = "
                f"{self.num_fine + self.num_coarse} logits, got {input_shape[-1]}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_fine,)

    def call(self, z, training=False):
        z = self._float32(z)
        z_fine, z_coarse = z[..., : self.num_fine], z[..., self.num_fine :]
        membership = ops.convert_to_tensor(self._membership)
        groups = ops.convert_to_tensor(self._groups)
        # Per-superclass maximum of the fine logits, for a stable within-group logsumexp.
        in_group = ops.expand_dims(z_fine, -1) * membership + (membership - 1.0) * 3e38
        group_max = ops.stop_gradient(ops.max(in_group, axis=-2))
        shift = ops.take(group_max, groups, axis=-1)
        group_sum = ops.matmul(ops.exp(z_fine - shift), membership)  # >= 1 for every group
        group_lse = ops.log(group_sum) + group_max
        log_p_coarse = ops.log_softmax(z_coarse, axis=-1)
        return (
            ops.take(log_p_coarse, groups, axis=-1)
            + z_fine
            - ops.take(group_lse, groups, axis=-1)
        )

    def get_config(self):
        return {**super().get_config(), "fine_to_coarse": list(self.fine_to_coarse), "num_classes": self.num_fine}
