"""Adaptive softmax (Grave et al., 2017): cheap training for many classes with a skewed frequency.

Classes are ranked by frequency (``class_order``: the most frequent class first; ``None`` means class
ids are already in that order). ``cutoffs = [c_0, c_1, ...]`` split the ranks into a *head*
``[0, c_0)`` and tail clusters ``[c_0, c_1)``, ``[c_1, c_2)``, ... The head softmax scores the
``c_0`` frequent classes plus one token per tail cluster, from the full ``d``-dimensional features;
tail cluster ``i`` (1-based) scores its classes from a projection of the features down to
``d // div_value**i`` dimensions::

    log p(c) = log p_head(c)                                      c in the head
    log p(c) = log p_head(cluster i) + log p_i(c | cluster i)    c in tail cluster i

Inference returns these exact log-probabilities for all ``N`` classes (``exp`` sums to 1), in class-id
order. Training (see :mod:`keras_softmax.heads.projection`) computes the negative log-likelihood
from the features and labels directly, without assembling the ``(batch, N)`` output.

Cost, honestly: shapes are static (so the step compiles under XLA), so by default each tail cluster
is scored for every row of the batch, not only the rows whose label falls in it (``tail_chunks``
scores only the chunks of rows that hold some, ``tail_capacity`` a fixed share of the rows when it
holds them all, each behind a ``switch``). The training step costs
``B (c_0 d + sum_i n_i d / div^i)`` multiply-adds instead of ``B N d`` for Dense + softmax, and its
weights ``d (c_0 + sum_i n_i / div^i)`` instead of ``N d``: with ``d = 640``, ``div = 4`` and the
default cutoffs that is ~13x fewer multiply-adds and weights at ``N = 10^5`` and ~46x at ``N = 10^6``
(:meth:`AdaptiveSoftmax.cost`). What it does not
remove is the ``O(B N)`` element-wise work on the tail logits (a logsumexp per cluster), which is
cheap next to the ``O(B N d)`` matmul but not free: at ``N = 10^6`` it is most of the step, and
``class_block`` computes it a block of classes at a time so that the whole tail's logits are never
written to memory (:func:`blockwise_logsumexp`). Measured (``bench/RESULTS.md`` §7, one H200, bf16,
``B = 512``, ``d = 640``, ``N = 10^6``, SGD): 1.56x faster than Dense + softmax scoring every row,
3.44x with the default cutoffs and ``tail_capacity=0.3``, 6.52x with six geometric tails
(``cutoffs = [2000 * 3**k for k in range(6)]``) and ``tail_capacity=0.13``.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_softmax.heads.base import check_positive
from keras_softmax.heads.projection import ProjectionHead, check_class_order, labels_to_int


def default_cutoffs(num_classes: int) -> list[int]:
    """Head of ``min(2000, N // 5)`` classes, then clusters 5x larger each, at most 3 cutoffs.

    E.g. N = 100: [20]; N = 100,000: [2000, 10000, 50000]; N = 1,000,000: [2000, 10000, 50000].
    """
    head = max(1, min(2000, num_classes // 5))
    cutoffs = []
    cut = head
    while cut < num_classes and len(cutoffs) < 3:
        cutoffs.append(cut)
        cut *= 5
    return cutoffs


def check_cutoffs(cutoffs, num_classes: int) -> list[int]:
    if cutoffs is None:
        return default_cutoffs(num_classes)
    if isinstance(cutoffs, (str, bytes)) or not hasattr(cutoffs, "__iter__"):
        raise ValueError(f"cutoffs must be a list of increasing integers (got {cutoffs!r})")
    values = list(cutoffs)
    if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in values):
        raise ValueError(f"cutoffs must be integers (got {values!r})")
    values = [int(c) for c in values]
    if any(b <= a for a, b in zip(values, values[1:])) or (values and not 0 < values[0]) or (
        values and values[-1] >= num_classes
    ):
        raise ValueError(
            f"cutoffs must increase strictly within (0, num_classes={num_classes}) (got {values!r})"
        )
    return values


@keras.saving.register_keras_serializable(package="keras_softmax")
class AdaptiveSoftmax(ProjectionHead):
    """Adaptive softmax over ``num_classes`` classes from ``(batch, d)`` features (module docstring).

    Pair it with :class:`keras_softmax.AdaptiveSoftmaxLoss` (``get_head("adaptive")`` does): training
    minimises the exact negative log-likelihood of the adaptive model, computed from the features.

    Args:
        num_classes: number of classes N (``build_model`` and the trainer fill it in).
        cutoffs: increasing ranks splitting head and tail clusters, within (0, N); ``None``: see
            :func:`default_cutoffs`. ``[]`` makes a plain softmax.
        div_value: the projection of tail cluster i has ``max(1, d // div_value**i)`` dimensions.
        class_order: class ids from most to least frequent (the trainer computes it from the
            training labels); ``None``: class ids are already ranked by frequency.
        tail_chunks: 0 (default): the training loss scores every tail cluster for every row. ``k > 0``:
            it splits the batch (members of the cluster first) into ``k`` chunks and scores only the
            chunks that hold rows of that cluster (one ``switch`` per tail on how many), as Grave et
            al. compute each tail only for its own examples: with Zipf labels most rows never touch
            the big tails.
            Exact either way (values and gradients); label smoothing needs every row, so it uses 0.
        tail_capacity: 0 (default): as ``tail_chunks`` says. A fraction ``f`` in (0, 1]: when every
            tail cluster has at most ``K = ceil(f B)`` member rows in the batch, each tail is scored
            for ``K`` rows only (its members, gathered first); else every tail for all ``B`` rows. One
            ``switch`` of two branches for all tails together, because on a GPU each branch choice
            waits for the device (once forward, once backward). With a cluster's share ``s`` of the
            labels, a capacity a few standard deviations above the largest ``s``
            (``f ≈ s + 4 sqrt(s (1 - s) / B)``) takes the ``K``-row branch on nearly every step.
            Exact; not with ``tail_chunks``.
        class_block: 0 (default): a tail's training loss writes its ``(rows, cluster size)`` logits
            whole and differentiates through them. ``k > 0``: a tail larger than ``k`` classes gets its
            logsumexp block by block of ``k`` classes, with a gradient that recomputes each block
            (:func:`blockwise_logsumexp`): the whole logit matrix never exists, in the forward or the
            backward pass. Exact; meant for tails of 10^5-10^6 classes.

    Example:
        >>> head = ks.AdaptiveSoftmax(num_classes=1000, cutoffs=[100, 400])
        >>> log_p = head(keras.ops.ones((2, 64)))     # (2, 1000), exp sums to 1
    """

    def __init__(self, num_classes=None, cutoffs=None, div_value=4.0, class_order=None, tail_chunks=0,
                 class_block=0, tail_capacity=0.0, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        for name, value in (("tail_chunks", tail_chunks), ("class_block", class_block)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (got {value!r})")
        if (isinstance(tail_capacity, bool) or not isinstance(tail_capacity, numbers.Real)
                or not 0.0 <= tail_capacity <= 1.0):
            raise ValueError(f"tail_capacity must be a fraction of the batch in [0, 1] (got {tail_capacity!r})")
        if tail_chunks and tail_capacity:
            raise ValueError("tail_chunks and tail_capacity are two ways to score a tail for fewer rows: "
                             "set one of them")
        self.tail_chunks = int(tail_chunks)
        self.class_block = int(class_block)
        self.tail_capacity = float(tail_capacity)
        self.cutoffs = check_cutoffs(cutoffs, self.num_classes)
        self.div_value = check_positive("div_value", div_value)
        if self.div_value < 1.0:
            raise ValueError(f"div_value must be >= 1 (got {div_value!r})")
        self.class_order, self._rank_of = check_class_order(class_order, self.num_classes)
        self.head_size = (self.cutoffs[0] if self.cutoffs else self.num_classes) + len(self.cutoffs)
        bounds = self.cutoffs + [self.num_classes]
        self.clusters = list(zip(bounds[:-1], bounds[1:]))  # [start, end) of each tail cluster

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError("AdaptiveSoftmax needs a known feature size (last input dimension)")
        self.head_kernel = self.add_weight(shape=(d, self.head_size), initializer="glorot_uniform", name="head_kernel")
        self.head_bias = self.add_weight(shape=(self.head_size,), initializer="zeros", name="head_bias")
        self.tail_projections, self.tail_kernels, self.tail_biases = [], [], []
        for i, (start, end) in enumerate(self.clusters, start=1):
            dim = self.tail_dim(d, i)
            self.tail_projections.append(self.add_weight(
                shape=(d, dim), initializer="glorot_uniform", name=f"tail{i}_projection"))
            self.tail_kernels.append(self.add_weight(
                shape=(dim, end - start), initializer="glorot_uniform", name=f"tail{i}_kernel"))
            self.tail_biases.append(self.add_weight(shape=(end - start,), initializer="zeros", name=f"tail{i}_bias"))

    def tail_dim(self, d: int, i: int) -> int:
        return max(1, int(d // self.div_value**i))

    def _head_logits(self, h):
        return self.project(h, self.head_kernel, self.head_bias)

    def _tail_down(self, h, i):
        return ops.matmul(ops.cast(h, self.compute_dtype), ops.cast(self.tail_projections[i], self.compute_dtype))

    def _tail_logits(self, h, i):
        return self.project(self._tail_down(h, i), self.tail_kernels[i], self.tail_biases[i])

    def _tail_nll(self, h, i, local):
        """``-log p_i(local | cluster i)`` per row: the tail's logsumexp minus the target's logit."""
        kernel, bias = self.tail_kernels[i], self.tail_biases[i]
        if not self.class_block or kernel.shape[1] <= self.class_block:
            logits = self._tail_logits(h, i)
            return ops.logsumexp(logits, axis=-1) - _pick(logits, local)
        down = self._tail_down(h, i)
        # copies pass values, not variables: TensorFlow's custom gradient would want gradients for those
        lse = blockwise_logsumexp(down, ops.copy(kernel), ops.copy(bias), self.class_block, self.compute_dtype)
        # the target's logit from its own kernel column (indexing the logits would need them whole)
        column = ops.cast(ops.transpose(ops.take(kernel, local, axis=1)), self.compute_dtype)  # (rows, dim)
        target = ops.cast(ops.sum(down * column, axis=-1), "float32") + ops.cast(ops.take(bias, local), "float32")
        return lse - target

    def log_probabilities_by_rank(self, h):
        """``(batch, N)`` log-probabilities with classes in rank order (most frequent first)."""
        head = ops.log_softmax(self._head_logits(h), axis=-1)
        first = self.cutoffs[0] if self.cutoffs else self.num_classes
        parts = [head[:, :first]]
        for i in range(len(self.clusters)):
            parts.append(ops.log_softmax(self._tail_logits(h, i), axis=-1) + head[:, first + i : first + i + 1])
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def log_probabilities(self, h):
        out = self.log_probabilities_by_rank(h)
        if self._rank_of is not None:
            out = ops.take(out, ops.convert_to_tensor(self._rank_of), axis=-1)
        return out

    def training_loss(self, h, labels, label_smoothing=0.0):
        """Per-example NLL ``-log p(y)`` of the adaptive model, without the ``(batch, N)`` output.

        With ``label_smoothing`` eps: ``(1 - eps) (-log p(y)) - eps mean_c log p(c)``, exact: the mean of
        the log-probabilities over all classes comes from sums of the cluster logits already computed.
        """
        labels = labels_to_int(labels)
        rank = labels if self._rank_of is None else ops.take(ops.convert_to_tensor(self._rank_of), labels)
        first = self.cutoffs[0] if self.cutoffs else self.num_classes
        if self.cutoffs:
            cluster = ops.sum(ops.cast(ops.expand_dims(rank, -1) >= ops.convert_to_tensor(
                np.asarray(self.cutoffs, dtype="int32")), "int32"), axis=-1)  # 0: head, i: tail i
        else:
            cluster = ops.zeros_like(rank)
        head_target = ops.where(cluster == 0, rank, first + cluster - 1)
        head_logits = self._head_logits(h)
        head_lse = ops.logsumexp(head_logits, axis=-1)
        loss = head_lse - _pick(head_logits, head_target)
        if label_smoothing:  # sum over all classes of log p(c), cluster by cluster
            head_log_p = head_logits - ops.expand_dims(head_lse, -1)
            total = ops.sum(head_log_p[:, :first], axis=-1)
        batch = h.shape[0]
        selective = bool(self.tail_chunks or self.tail_capacity) and not label_smoothing and batch is not None
        if selective and self.tail_capacity and self.clusters:
            return loss + self._tail_nll_within_capacity(h, rank, cluster)
        if not selective and not label_smoothing:
            return loss + self._tail_nll_of_every_row(h, rank, cluster)
        for i, (start, end) in enumerate(self.clusters):
            if selective:
                loss = loss + self._tail_nll_of_members(h, rank, cluster == i + 1, i, start, end)
                continue
            local = ops.clip(rank - start, 0, end - start - 1)
            logits = self._tail_logits(h, i)  # label smoothing needs every logit anyway
            lse = ops.logsumexp(logits, axis=-1)
            nll = lse - _pick(logits, local)
            loss = loss + ops.where(cluster == i + 1, nll, ops.zeros_like(nll))
            n = float(end - start)
            total = total + n * head_log_p[:, first + i] + ops.sum(logits, axis=-1) - n * lse
        if label_smoothing:
            loss = (1.0 - label_smoothing) * loss - label_smoothing * total / float(self.num_classes)
        return loss

    def row_counts(self, batch: int) -> list[int]:
        """The static numbers of rows (members of the cluster sorted first) a tail may be scored for:
        whole chunks with ``tail_chunks``, ``[ceil(f B), B]`` with ``tail_capacity``."""
        if self.tail_capacity:
            return sorted({min(batch, math.ceil(self.tail_capacity * batch)), batch})
        size = -(-batch // self.tail_chunks)  # rows per chunk
        return sorted({min(k * size, batch) for k in range(self.tail_chunks + 1)})

    def _tail_nll_within_capacity(self, h, rank, cluster):
        """``-log p_i(y | cluster i)`` of every row's own tail cluster (0 for head rows), summed over the
        tails: each tail scored for ``K = ceil(f B)`` rows that hold all its members when no tail has
        more than ``K``, else for all ``B`` rows (one ``switch`` for all tails). Exact.

        One sort groups the rows by cluster (head rows first, then tail 1's, ...); tail ``i`` takes
        the ``K`` sorted rows from its first member on (moved back to end at the last row where they
        would run past it), so one gather fetches the rows of every tail and one segment sum returns
        their losses, whatever the number of tails.
        """
        batch = h.shape[0]
        capacity = self.row_counts(batch)[0]
        if capacity >= batch:
            return self._tail_nll_of_every_row(h, rank, cluster)
        positions = ops.arange(batch, dtype="int32")
        order = ops.argsort(cluster * batch + positions)  # by cluster, then row: distinct keys
        tail_ids = ops.expand_dims(ops.arange(1, len(self.clusters) + 1, dtype="int32"), -1)  # (T, 1)
        counts = ops.sum(ops.cast(ops.expand_dims(cluster, 0) == tail_ids, "int32"), axis=1)  # (T,)
        first = ops.sum(ops.cast(ops.expand_dims(cluster, 0) < tail_ids, "int32"), axis=1)  # where each tail starts
        slots = ops.expand_dims(ops.minimum(first, batch - capacity), -1) + ops.arange(capacity, dtype="int32")
        member = (slots >= ops.expand_dims(first, -1)) & (slots < ops.expand_dims(first + counts, -1))  # (T, K)
        rows = ops.take(order, ops.reshape(slots, (-1,)))  # (T K,): tail i's window at [i K, (i + 1) K)

        def within(h, rank, cluster, rows, member):
            picked, picked_rank = ops.take(h, rows, axis=0), ops.take(rank, rows)
            nll = []
            for i, (start, end) in enumerate(self.clusters):
                window = slice(i * capacity, (i + 1) * capacity)
                local = ops.clip(picked_rank[window] - start, 0, end - start - 1)
                nll.append(self._tail_nll(picked[window], i, local))
            nll = ops.concatenate(nll) if len(nll) > 1 else nll[0]
            nll = ops.where(ops.reshape(member, (-1,)), nll, ops.zeros_like(nll))
            return ops.segment_sum(nll, rows, num_segments=batch)  # a row may sit in several windows

        def every_row(h, rank, cluster, rows, member):
            return self._tail_nll_of_every_row(h, rank, cluster)

        overflow = ops.cast(ops.max(counts) > capacity, "int32")
        return ops.switch(overflow, [_recomputed(within), _recomputed(every_row)], h, rank, cluster, rows, member)

    def _tail_nll_of_every_row(self, h, rank, cluster):
        """``-log p_i(y | cluster i)`` of every row's own tail cluster (0 for head rows), each tail
        scored for all rows (static shapes, no branch)."""
        total = ops.zeros_like(ops.cast(rank, "float32"))
        for i, (start, end) in enumerate(self.clusters):
            nll = self._tail_nll(h, i, ops.clip(rank - start, 0, end - start - 1))
            total = total + ops.where(cluster == i + 1, nll, ops.zeros_like(nll))
        return total

    def _tail_nll_of_members(self, h, rank, member, i, start, end):
        """``-log p_i(y | cluster i)`` for the rows in tail cluster ``i`` (0 elsewhere), scoring only as
        many rows as hold its members: rows sorted members-first, then one ``switch`` on the smallest
        of :meth:`row_counts` that holds them all, whose branch scores that many first rows (static
        shapes in every branch). Exact. One branch choice per tail and direction, because on a GPU
        each choice waits for the device to report the count."""
        batch = h.shape[0]
        counts = self.row_counts(batch)
        positions = ops.arange(batch, dtype="int32")
        order = ops.argsort(ops.where(member, positions, positions + batch))  # members first, in row order
        count = ops.sum(ops.cast(member, "int32"))
        needed = ops.sum(ops.cast(ops.convert_to_tensor(np.asarray(counts, dtype="int32")) < count, "int32"))

        def first_rows(rows_scored):
            def branch(h, rank, order):
                if rows_scored == 0:
                    return ops.zeros((batch,), dtype="float32")
                rows = order[:rows_scored]
                local = ops.clip(ops.take(rank, rows) - start, 0, end - start - 1)
                nll = self._tail_nll(ops.take(h, rows, axis=0), i, local)
                if rows_scored < batch:
                    nll = ops.concatenate([nll, ops.zeros((batch - rows_scored,), dtype="float32")])
                return nll

            return branch

        sorted_nll = ops.switch(needed, [_recomputed(first_rows(n)) for n in counts], h, rank, order)
        sorted_nll = ops.where(positions < count, sorted_nll, ops.zeros_like(sorted_nll))
        return ops.take(sorted_nll, ops.argsort(order))  # back to the original row order

    def get_config(self):
        return {**super().get_config(), "cutoffs": list(self.cutoffs), "div_value": self.div_value,
                "class_order": self.class_order, "tail_chunks": self.tail_chunks, "class_block": self.class_block,
                "tail_capacity": self.tail_capacity}

    def cost(self, d: int) -> dict:
        """Multiply-adds per example and weight count of the projection, next to Dense(d -> N)."""
        macs = self.head_size * d + sum(
            d * self.tail_dim(d, i) + self.tail_dim(d, i) * (end - start)
            for i, (start, end) in enumerate(self.clusters, start=1))
        return {"macs_per_example": macs, "dense_macs_per_example": self.num_classes * d,
                "ratio": self.num_classes * d / macs if macs else math.inf}


def blockwise_logsumexp(down, kernel, bias, block: int, dtype="float32"):
    """``logsumexp_c(down @ kernel[:, c] + bias[c])`` per row, ``(rows,)`` float32, in blocks of classes.

    Forward: one pass over blocks of ``block`` columns with a running maximum and a sum rescaled when
    the maximum grows (the logits of one block at a time). Backward: each block's logits are
    recomputed, ``p = exp(z - lse) g``, and ``d down += p kernel_b^T``, ``d kernel_b = down^T p``, ``d bias_b = sum_rows p``. Matmuls run in
    ``dtype`` (the layer's compute dtype), the exponentials in float32.
    """
    n = kernel.shape[1]
    bounds = [(lo, min(lo + block, n)) for lo in range(0, n, block)]

    def block_logits(down, kernel, bias, lo, hi):
        z = ops.matmul(ops.cast(down, dtype), ops.cast(kernel[:, lo:hi], dtype))
        return ops.cast(z, "float32") + ops.cast(bias[lo:hi], "float32")

    @ops.custom_gradient
    def lse_of(down, kernel, bias):
        top = total = None
        for lo, hi in bounds:  # one pass: the sum so far is rescaled whenever the maximum grows
            z = block_logits(down, kernel, bias, lo, hi)
            block_top = ops.max(z, axis=-1)
            if top is None:
                top, total = block_top, ops.sum(ops.exp(z - block_top[:, None]), axis=-1)
                continue
            new_top = ops.maximum(top, block_top)
            total = total * ops.exp(top - new_top) + ops.sum(ops.exp(z - new_top[:, None]), axis=-1)
            top = new_top
        lse = top + ops.log(total)

        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            d_down, d_kernel, d_bias = 0.0, [], []
            for lo, hi in bounds:
                p = ops.exp(block_logits(down, kernel, bias, lo, hi) - lse[:, None]) * g[:, None]
                p_low = ops.cast(p, dtype)
                d_down = d_down + ops.matmul(p_low, ops.transpose(ops.cast(kernel[:, lo:hi], dtype)))
                d_kernel.append(ops.matmul(ops.transpose(ops.cast(down, dtype)), p_low))
                d_bias.append(ops.sum(p, axis=0))
            return (ops.cast(d_down, down.dtype), ops.cast(ops.concatenate(d_kernel, axis=1), kernel.dtype),
                    ops.cast(ops.concatenate(d_bias), bias.dtype))

        return lse, grad

    return lse_of(down, kernel, bias)


def _recomputed(branch):
    """``branch`` with its intermediates recomputed in the backward pass (``keras.remat``), on JAX.

    A ``switch`` differentiated by JAX keeps the intermediates of *every* branch for the backward
    pass, the untaken ones as zeros of their full shape, written on every step: behind the capacity
    branch that was the ``(B, n_i)`` logits of every tail, ~1.7 GB of zeros per step at N = 10^6 (a
    third of the step, measured). A recomputed branch keeps only its inputs. PyTorch runs only the
    taken branch; TensorFlow's ``recompute_grad`` fails inside ``fit``'s gradient tape, so there the
    branch is left as it is.
    """
    return keras.remat(branch) if keras.backend.backend() == "jax" else branch


def _pick(logits, index):
    """``logits[b, index[b]]`` for each row ``b``."""
    return ops.squeeze(ops.take_along_axis(logits, ops.expand_dims(index, -1), axis=-1), -1)
