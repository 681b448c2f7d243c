"""Sampled softmax (Jean et al., 2015): train on the target and a few sampled classes.

The layer owns a ``(N, d)`` class-embedding kernel and a bias (see
:mod:`keras_softmax.heads.projection`). At inference it returns the full ``log_softmax(h W^T + b)``.
In training the paired loss scores only the true class and ``S = num_sampled`` classes drawn, *with
replacement* and shared by the whole batch, from a proposal ``q``:

    s_j = h . w_j + b_j - log(S q(j))        (log of the expected count of j among the S draws)
    loss = -s_y + log(exp(s_y) + sum_{k=1..S} exp(s_{c_k}))

Sampled classes equal to the row's label ("accidental hits") are removed (their score set to a large
negative number) when ``remove_accidental_hits`` (default). This is TensorFlow's
``tf.nn.sampled_softmax_loss`` with ``unique=False``, written with ``keras.ops``/``keras.random`` so it
runs on every backend and compiles under XLA (static shapes: S is fixed).

Samplers (``q`` over frequency ranks; ``class_order`` maps ranks to class ids, ``None``: class ``r`` has
rank ``r``):

* ``"uniform"``: ``q(r) = 1 / N``.
* ``"log_uniform"``: Zipfian ``q(r) = (log(r + 2) - log(r + 1)) / log(N + 1)``, drawn by inverse CDF
  ``r = floor(exp(u log(N + 1))) - 1`` (TensorFlow's ``log_uniform_candidate_sampler``); right when
  class frequencies fall off like a power law and classes are ranked by frequency.

With ``S`` draws covering every class once and ``log(S q) = 0`` the loss is the full cross-entropy
(``sampled_softmax_loss`` with explicit candidates; tested). Cost per step: ``B (S + 1) d`` multiply-adds
instead of ``B N d``; the kernel's gradient touches ``S + B`` rows, and in a model from ``build_model``
on JAX only those rows are updated (``row_updates``; :mod:`keras_softmax.models.sparse_rows`): a plain
``keras.Model`` would have its optimizer rewrite all ``N d`` weights every step.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.base import MASKED_LOGIT
from keras_softmax.heads.projection import ProjectionHead, check_class_order, labels_to_int

SAMPLERS = ("uniform", "log_uniform")


@keras.saving.register_keras_serializable(package="keras_softmax")
class SampledSoftmax(ProjectionHead):
    """Sampled softmax over ``num_classes`` classes from ``(batch, d)`` features (module docstring).

    Pair it with :class:`keras_softmax.SampledSoftmaxLoss` (``get_head("sampled")`` does).

    Args:
        num_classes: number of classes N (``build_model`` and the trainer fill it in).
        num_sampled: classes S drawn per training step (with replacement, shared by the batch).
        sampler: ``"uniform"`` or ``"log_uniform"`` (module docstring).
        remove_accidental_hits: drop sampled classes equal to the row's label.
        class_order: class ids from most to least frequent (for ``log_uniform``; the trainer computes
            it from the training labels); ``None``: class ids are already ranked by frequency.
        seed: int seed of the sampler (``None``: random).
        row_updates: ``"sparse"``: in a model from ``build_model`` (a
            :class:`keras_softmax.models.SparseRowsModel`) on JAX, a training step updates only the
            kernel and bias rows it read (exact for SGD, lazy for momentum and Adam; see that module);
            ``"dense"``: every row, as a plain ``keras.Model`` does.

    Example:
        >>> head = ks.SampledSoftmax(num_classes=100_000, num_sampled=2048, sampler="log_uniform")
        >>> log_p = head(keras.ops.ones((2, 64)))     # inference: (2, 100000), exp sums to 1
    """

    _row_tap = None  # set by SparseRowsModel while it traces a training step

    def __init__(self, num_classes=None, num_sampled=1024, sampler="uniform", remove_accidental_hits=True,
                 class_order=None, seed=None, row_updates="sparse", **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        if isinstance(num_sampled, bool) or not isinstance(num_sampled, numbers.Integral) or num_sampled < 1:
            raise ValueError(f"num_sampled must be a positive integer (got {num_sampled!r})")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
        if not isinstance(remove_accidental_hits, bool):
            raise ValueError(f"remove_accidental_hits must be True or False (got {remove_accidental_hits!r})")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (got {seed!r})")
        self.num_sampled = int(num_sampled)
        self.sampler = sampler
        self.remove_accidental_hits = remove_accidental_hits
        self.class_order, self._rank_of = check_class_order(class_order, self.num_classes)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        if row_updates not in ("sparse", "dense"):
            raise ValueError(f"row_updates must be 'sparse' or 'dense' (got {row_updates!r})")
        self.row_updates = row_updates

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError("SampledSoftmax needs a known feature size (last input dimension)")
        # (N, d): one row per class, so sampling gathers contiguous rows.
        self.kernel = self.add_weight(shape=(self.num_classes, d), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.num_classes,), initializer="zeros", name="bias")

    def logits(self, h):
        """All ``(batch, N)`` logits ``h W^T + b`` (float32)."""
        return self.project(h, ops.transpose(self.kernel), self.bias)

    def log_probabilities(self, h):
        return ops.log_softmax(self.logits(h), axis=-1)

    # ------------------------------------------------------------------ sampling
    def log_q(self, rank):
        """log of the proposal probability of the classes at frequency rank ``rank`` (float32)."""
        if self.sampler == "uniform":
            return ops.full(ops.shape(rank), -math.log(self.num_classes), dtype="float32")
        # log(r + 2) - log(r + 1) as log1p(1 / (r + 1)): the difference would cancel in float32.
        r = ops.cast(rank, "float32")
        return ops.log(ops.log1p(1.0 / (r + 1.0))) - math.log(math.log(self.num_classes + 1.0))

    def sample_ranks(self):
        """``num_sampled`` frequency ranks drawn with replacement from the proposal (int32)."""
        shape = (self.num_sampled,)
        if self.sampler == "uniform":
            return keras.random.randint(shape, 0, self.num_classes, dtype="int32", seed=self.seed_generator)
        u = keras.random.uniform(shape, seed=self.seed_generator)
        r = ops.floor(ops.exp(u * math.log(self.num_classes + 1.0))) - 1.0
        return ops.cast(ops.clip(r, 0.0, self.num_classes - 1.0), "int32")

    # ------------------------------------------------------------------ rows read in training
    def row_variables(self):
        """The class-indexed weights (rows on axis 0) that a training step reads only in part."""
        return [self.kernel, self.bias]

    def rows_read_per_step(self, batch_size: int) -> int:
        """Rows of the kernel a training step reads: the sampled classes, then the labels."""
        return self.num_sampled + int(batch_size)

    def read_rows(self, ids):
        """Kernel rows ``(R, d)`` and bias entries ``(R,)`` of class ids ``ids`` (through the model's
        row tap while a sparse training step is traced)."""
        rows = [ops.take(self.kernel, ids, axis=0), ops.take(self.bias, ids, axis=0)]
        return rows if self._row_tap is None else self._row_tap.read(ids, rows)

    def _rank(self, labels):
        return labels if self._rank_of is None else ops.take(ops.convert_to_tensor(self._rank_of), labels)

    def _class_of(self, ranks):
        if self.class_order is None:
            return ranks
        return ops.take(ops.convert_to_tensor(np.asarray(self.class_order, dtype="int32")), ranks)

    def training_loss(self, h, labels, label_smoothing=0.0):
        """Per-example sampled softmax loss for a fresh draw of ``num_sampled`` classes."""
        if label_smoothing:
            raise ValueError("sampled softmax has no label smoothing (the mean log-probability over all "
                             "classes is what sampling avoids): label_smoothing must be 0")
        labels = labels_to_int(labels)
        ranks = self.sample_ranks()
        log_expected = math.log(self.num_sampled)
        return self.sampled_loss(h, labels, self._class_of(ranks), log_expected + self.log_q(ranks),
                                 log_expected + self.log_q(self._rank(labels)))

    def sampled_loss(self, h, labels, sampled, sampled_log_expected, true_log_expected):
        """The loss for given sampled class ids ``(S,)`` and log expected counts ``(S,)``, ``(batch,)``.

        With ``sampled = arange(N)`` and both log expected counts 0 this is the full cross-entropy.
        """
        dtype = self.compute_dtype
        labels = labels_to_int(labels)
        h = ops.cast(h, dtype)
        # Gather first, then cast: only S + B rows of the float32 kernel are read, in one read.
        sampled = ops.cast(sampled, "int32")
        num = sampled.shape[0]
        kernel_rows, bias_rows = self.read_rows(ops.concatenate([sampled, labels]))
        w_sampled, w_true = ops.cast(kernel_rows[:num], dtype), ops.cast(kernel_rows[num:], dtype)  # (S|B, d)
        b_sampled, b_true = ops.cast(bias_rows[:num], "float32"), ops.cast(bias_rows[num:], "float32")
        sampled_logits = ops.cast(ops.matmul(h, ops.transpose(w_sampled)), "float32") + b_sampled
        sampled_logits = sampled_logits - ops.cast(sampled_log_expected, "float32")
        true_logits = ops.sum(ops.cast(h, "float32") * ops.cast(w_true, "float32"), axis=-1) + b_true
        true_logits = true_logits - ops.cast(true_log_expected, "float32")
        if self.remove_accidental_hits:
            hits = ops.expand_dims(labels, -1) == ops.expand_dims(sampled, 0)
            sampled_logits = ops.where(hits, ops.full_like(sampled_logits, MASKED_LOGIT), sampled_logits)
        all_logits = ops.concatenate([ops.expand_dims(true_logits, -1), sampled_logits], axis=-1)
        return ops.logsumexp(all_logits, axis=-1) - true_logits

    def get_config(self):
        return {**super().get_config(), "num_sampled": self.num_sampled, "sampler": self.sampler,
                "remove_accidental_hits": self.remove_accidental_hits, "class_order": self.class_order,
                "seed": self.seed, "row_updates": self.row_updates}
