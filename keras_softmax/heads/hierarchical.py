"""Two-level hierarchical softmax over fine classes grouped into superclasses."""

from __future__ import annotations

import math
import operator

import keras
import numpy as np
from keras import ops

from keras_softmax.cifar100 import FINE_TO_COARSE
from keras_softmax.heads.base import Head
from keras_softmax.ops import tag_output


def grouped_classes(num_classes: int) -> list[int]:
    """A superclass map for ``num_classes`` classes without one: about sqrt(N) groups of consecutive ids.

    The CIFAR-100 table for 100 classes. Used where a problem has no superclasses of its own (the
    benchmarks' synthetic tasks, the examples).
    """
    if num_classes == len(FINE_TO_COARSE):
        return list(FINE_TO_COARSE)
    groups = max(2, int(round(math.sqrt(num_classes))))
    return [i * groups // num_classes for i in range(num_classes)]


def _check_fine_to_coarse(fine_to_coarse, num_classes):
    if fine_to_coarse is None:
        if num_classes not in (None, len(FINE_TO_COARSE)):
            raise ValueError(
                f"fine_to_coarse is required when num_classes != {len(FINE_TO_COARSE)} "
                f"(the default is the CIFAR-100 superclass table; got num_classes={num_classes})"
            )
        fine_to_coarse = FINE_TO_COARSE
    if isinstance(fine_to_coarse, (str, bytes)) or not hasattr(fine_to_coarse, "__iter__"):
        raise ValueError(f"fine_to_coarse must be a list of superclass indices (got {fine_to_coarse!r})")
    try:
        groups = [operator.index(g) for g in fine_to_coarse]
    except TypeError:
        raise ValueError(
            f"fine_to_coarse must hold integer superclass indices (got {list(fine_to_coarse)!r})"
        ) from None
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
        self._groups = np.asarray(self.fine_to_coarse, dtype="int32")

    @classmethod
    def complete_params(cls, params, num_classes=None, *, fine_to_coarse=None, labels=None):
        """``num_classes``, and the dataset's superclass map ``fine_to_coarse`` where it has one."""
        params = dict(params)
        if num_classes is not None:
            params.setdefault("num_classes", int(num_classes))
        if fine_to_coarse is not None:
            params.setdefault("fine_to_coarse", list(fine_to_coarse))
        return params

    def log_probabilities(self, z, training=False):
        """The layer's output (log-probabilities of the fine classes): what ``from_logits=True`` losses use."""
        return self.call(z)

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
        groups = ops.convert_to_tensor(self._groups)
        # Segment ops run over the fine classes, so bring them to the front: (F, rows).
        fine = ops.transpose(ops.reshape(z_fine, (-1, self.num_fine)))
        # Per-superclass maximum, for a stable within-group logsumexp. Memory and time are
        # O(rows * (F + C)), so the head scales to 100k classes.
        group_max = ops.stop_gradient(ops.segment_max(fine, groups, num_segments=self.num_coarse))
        # Subtract the group maximum before anything else: adding it back to log(group_sum) first
        # (z_f - (log S + m)) would round log S to the ulp of m, ~5e-4 for logits of 1e4.
        centred = fine - ops.take(group_max, groups, axis=0)
        group_sum = ops.segment_sum(ops.exp(centred), groups, num_segments=self.num_coarse)  # >= 1
        log_p_fine_given_coarse = centred - ops.take(ops.log(group_sum), groups, axis=0)
        log_p_fine_given_coarse = ops.reshape(ops.transpose(log_p_fine_given_coarse), ops.shape(z_fine))
        log_p_coarse = ops.log_softmax(z_coarse, axis=-1)
        return tag_output(ops.take(log_p_coarse, groups, axis=-1) + log_p_fine_given_coarse, self)

    def get_config(self):
        return {**super().get_config(), "fine_to_coarse": list(self.fine_to_coarse), "num_classes": self.num_fine}
