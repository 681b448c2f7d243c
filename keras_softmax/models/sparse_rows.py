"""A model that updates a head's class-indexed weights only in the rows a training step read.

Sampled softmax (:class:`keras_softmax.SampledSoftmax`) reads ``R = S + B`` rows of its ``(N, d)``
class kernel per step (``S`` sampled classes, ``B`` labels), so its gradient is zero in all other
rows. Keras still hands the optimizer a dense ``(N, d)`` gradient, and the optimizer rewrites all
``N d`` weights: at ``N = 10^6``, ``d = 640`` that is ~10 GB of memory traffic a step, several times the
cost of the loss itself. :class:`SparseRowsModel` trains such a head sparsely:

* its JAX ``train_step`` differentiates with respect to the rows the step reads: the head adds a zero
  ``delta`` of shape ``(R, d)`` to the rows it gathers (:meth:`RowTap.read`), and the gradient of the
  delta is the gradient of those rows; the kernel itself is not differentiated;
* duplicated row ids are summed (``g_u = sum over occurrences``), then only the ``u`` distinct rows are
  updated, and the optimizer updates every other weight as usual:

  - ``SGD``: ``w_u -= lr g_u``, exactly the dense update (other rows have zero gradient);
  - ``SGD(momentum=mu)``: ``m_u = mu m_u - lr g_u``, ``w_u += m_u`` (Nesterov: ``w_u += mu m_u - lr g_u``);
  - ``Adam``: ``m_u += (1 - b1)(g_u - m_u)``, ``v_u += (1 - b2)(g_u^2 - v_u)``,
    ``w_u -= lr sqrt(1 - b2^t) / (1 - b1^t) m_u / (sqrt(v_u) + eps)``;

  momentum and Adam are *lazy* there (as TensorFlow's sparse momentum and LazyAdam): the slots of a
  row that was not read keep their values instead of decaying;
* anything else — another optimizer, weight decay, gradient clipping, EMA, gradient accumulation, loss
  scaling (float16), ``amsgrad``, or the head's ``row_updates="dense"`` — gets the dense update, exactly
  what ``keras.Model`` does: the row gradients are scattered into a zero ``(N, d)`` gradient.

:meth:`SparseRowsModel.row_update_rule` says which applies. On TensorFlow and PyTorch the model trains
as a plain ``keras.Model`` (dense updates). The model saves and loads like any functional model.

A head opts in with three members: ``row_variables()`` (the class-indexed weights, rows on axis 0),
``rows_read_per_step(batch_size)`` (``R``) and ``row_updates`` (``"sparse"`` or ``"dense"``); it reads
those weights only through ``read_rows(ids)``, which consults the model's :class:`RowTap`.

This module is the JAX trainer's business (like Keras's own ``train_step`` per backend), so its update
arithmetic uses ``jax.numpy`` directly; JAX is imported only inside the JAX training step.
"""

from __future__ import annotations

import contextlib
import warnings

import keras

SPARSE_OPTIMIZERS = ("SGD", "Adam")


class RowTap:
    """The rows a head reads in one traced training step, made differentiable by additive deltas.

    ``read(ids, rows)`` records ``ids`` and returns ``rows[i] + deltas[i]``: the gradient of each delta
    is the gradient of the gathered rows it was added to.
    """

    def __init__(self, deltas):
        self.deltas = list(deltas)
        self.ids = None

    def read(self, ids, rows):
        if self.ids is not None:
            raise RuntimeError("a head read its rows twice in one training step; sparse updates need one read")
        if len(rows) != len(self.deltas):
            raise RuntimeError(f"the head read {len(rows)} row weights, the tap holds {len(self.deltas)}")
        self.ids = ids
        return [row + keras.ops.cast(delta, row.dtype) for row, delta in zip(rows, self.deltas)]


@contextlib.contextmanager
def tapping(head, tap: RowTap):
    """Route ``head.read_rows`` through ``tap`` while a training step is traced."""
    head._row_tap = tap
    try:
        yield tap
    finally:
        head._row_tap = None


def dense_fallback_reason(optimizer, head) -> str | None:
    """Why ``optimizer`` must update ``head``'s row variables densely, or ``None`` if it can go sparse."""
    if getattr(head, "row_updates", "dense") != "sparse":
        return f"the head's row_updates is {getattr(head, 'row_updates', 'dense')!r}"
    if keras.backend.backend() != "jax":
        return f"sparse row updates are implemented for the JAX backend (this is {keras.backend.backend()})"
    name = type(optimizer).__name__
    if name not in SPARSE_OPTIMIZERS:
        return f"{name} has no sparse rule here (SGD, SGD with momentum and Adam do)"
    checks = {
        "weight decay": getattr(optimizer, "weight_decay", None),
        "gradient clipping": optimizer.clipnorm or optimizer.global_clipnorm or optimizer.clipvalue,
        "EMA": optimizer.use_ema,
        "gradient accumulation": optimizer.gradient_accumulation_steps,
        "loss scaling": optimizer.loss_scale_factor,
        "amsgrad": getattr(optimizer, "amsgrad", False),
    }
    used = [what for what, value in checks.items() if value]
    if used:
        return f"the optimizer uses {', '.join(used)}"
    return None


def functional_model(inputs, outputs, head_layer, **kwargs) -> keras.Model:
    """``keras.Model(inputs, outputs)``, or a :class:`SparseRowsModel` if ``head_layer`` has row variables."""
    model_class = SparseRowsModel if hasattr(head_layer, "row_variables") else keras.Model
    return model_class(inputs, outputs, **kwargs)


@keras.saving.register_keras_serializable(package="keras_softmax")
class SparseRowsModel(keras.Model):
    """A functional ``keras.Model`` whose last layer's class-indexed weights train sparsely (module docstring).

    ``build_model`` returns one when the head has ``row_variables`` (``sampled``); construct it like
    ``keras.Model(inputs, outputs)``.
    """

    @property
    def row_head(self):
        head = self.layers[-1]
        return head if hasattr(head, "row_variables") else None

    def row_update_rule(self) -> str:
        """``"sparse"`` or ``"dense: <reason>"`` for the compiled optimizer (module docstring)."""
        head = self.row_head
        if head is None:
            return "dense: the last layer has no row variables"
        reason = dense_fallback_reason(self.optimizer, head)
        return "sparse" if reason is None else f"dense: {reason}"

    def train_step(self, *args, **kwargs):
        if keras.backend.backend() != "jax" or self.row_head is None:
            return super().train_step(*args, **kwargs)
        return self._jax_train_step(*args, **kwargs)

    # ------------------------------------------------------------------------------- JAX
    def jax_gradients(self, state, data):
        """Loss and gradients of one training step on JAX, the row variables' by row.

        Returns ``(aux, ids, grads, row_grads)``: Keras's ``compute_loss_and_updates`` aux output, the
        ``(R,)`` row ids read, the gradients of the trainable variables (``None`` for the row
        variables) and one ``(R, ...)`` gradient per row variable.
        """
        import jax
        import jax.numpy as jnp

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        head = self.row_head
        positions = self._row_positions()
        batch_size = jax.tree_util.tree_leaves(x)[0].shape[0]
        rows = head.rows_read_per_step(batch_size)
        deltas = [jnp.zeros((rows,) + tuple(trainable[p].shape[1:]), trainable[p].dtype) for p in positions]

        def loss_fn(differentiated, deltas):
            values = list(differentiated)
            for p in positions:  # the row variables enter undifferentiated: their rows come via the deltas
                values[p] = jax.lax.stop_gradient(trainable[p])
            with tapping(head, RowTap(deltas)) as tap:
                loss, aux = self.compute_loss_and_updates(
                    values, non_trainable, metrics_variables, x, y, sample_weight, training=True,
                    optimizer_variables=optimizer_variables)
            if tap.ids is None:
                raise RuntimeError(f"{type(head).__name__} did not read its rows through read_rows()")
            return loss, (aux, tap.ids)

        (_, (aux, ids)), (grads, row_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            trainable, deltas)
        grads = list(grads)
        for p in positions:
            grads[p] = None  # zeros: never returned, so never written
        return aux, ids, grads, list(row_grads)

    def _row_positions(self):
        return [_index_of(self.trainable_variables, v) for v in self.row_head.row_variables()]

    def _jax_train_step(self, state, data):
        import jax.numpy as jnp

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        head = self.row_head
        positions = self._row_positions()
        aux, ids, grads, row_grads = self.jax_gradients(state, data)
        unscaled_loss, y_pred, non_trainable, metrics_variables = aux

        if dense_fallback_reason(self.optimizer, head) is not None:
            for p, g in zip(positions, row_grads):
                grads[p] = jnp.zeros_like(trainable[p]).at[ids].add(g)
            trainable, optimizer_variables = self.optimizer.stateless_apply(
                optimizer_variables, grads, trainable)
        else:
            learning_rate = _current_learning_rate(self.optimizer, optimizer_variables)
            before = list(optimizer_variables)
            if any(g is not None for g in grads):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
                    trainable, optimizer_variables = self.optimizer.stateless_apply(
                        optimizer_variables, grads, trainable)
                trainable, optimizer_variables = list(trainable), list(optimizer_variables)
            else:  # the row variables are all there is to train: only the step count moves
                trainable, optimizer_variables = list(trainable), list(optimizer_variables)
                step = _index_of(self.optimizer.variables, self.optimizer.iterations)
                optimizer_variables[step] = optimizer_variables[step] + 1
            unique, segment = jnp.unique(ids, size=ids.shape[0], fill_value=trainable[positions[0]].shape[0],
                                         return_inverse=True)
            segment = segment.reshape(-1)
            for p, g in zip(positions, row_grads):
                summed = jnp.zeros_like(g).at[segment].add(g)  # duplicates summed; padding rows stay 0
                _sparse_update(self.optimizer, self.trainable_variables[p], p, unique, summed, learning_rate,
                               before, trainable, optimizer_variables)

        logs, metrics_variables = self._update_metrics_variables(
            metrics_variables, unscaled_loss, x, y, y_pred, sample_weight)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def _index_of(variables, variable) -> int:
    for i, v in enumerate(variables):
        if v is variable:
            return i
    raise ValueError(f"{variable.path} is not a trainable variable of the model")


def _current_learning_rate(optimizer, optimizer_variables):
    """The learning rate of this step (schedules read the iteration count before it is incremented)."""
    mapping = list(zip(optimizer.variables, optimizer_variables))
    with keras.StatelessScope(state_mapping=mapping):
        return keras.ops.convert_to_tensor(optimizer.learning_rate, "float32")


def _sparse_update(optimizer, variable, position, unique, grad, learning_rate, before, trainable, slots):
    """Apply the optimizer's lazy rule (module docstring) to rows ``unique`` of trainable[position].

    ``unique`` is padded with the out-of-range id N: those rows are read as 0 and their writes dropped.
    ``before`` holds the optimizer variables at the start of the step (for the iteration count).
    """
    import jax.numpy as jnp

    def gather(table):
        return jnp.take(table, unique, axis=0, mode="fill", fill_value=0)

    def scatter(table, values):
        return table.at[unique].set(values.astype(table.dtype), mode="drop")

    def slot(slot_variables):
        return _index_of(optimizer.variables, slot_variables[optimizer._get_variable_index(variable)])

    weights = trainable[position]
    dtype = weights.dtype
    lr = learning_rate.astype(dtype)
    g = grad.astype(dtype)
    w = gather(weights)
    name = type(optimizer).__name__
    if name == "SGD" and not optimizer.momentum:
        w = w - lr * g
    elif name == "SGD":
        i = slot(optimizer.momentums)
        mu = jnp.asarray(optimizer.momentum, dtype)
        m = mu * gather(slots[i]) - lr * g
        slots[i] = scatter(slots[i], m)
        w = w + (mu * m - lr * g if optimizer.nesterov else m)
    else:  # Adam
        step = (before[_index_of(optimizer.variables, optimizer.iterations)] + 1).astype(dtype)
        b1, b2 = jnp.asarray(optimizer.beta_1, dtype), jnp.asarray(optimizer.beta_2, dtype)
        i, j = slot(optimizer._momentums), slot(optimizer._velocities)
        m = gather(slots[i]) + (g - gather(slots[i])) * (1 - b1)
        v = gather(slots[j]) + (jnp.square(g) - gather(slots[j])) * (1 - b2)
        slots[i], slots[j] = scatter(slots[i], m), scatter(slots[j], v)
        alpha = lr * jnp.sqrt(1 - b2**step) / (1 - b1**step)
        w = w - m * alpha / (jnp.sqrt(v) + optimizer.epsilon)
    trainable[position] = scatter(weights, w)
