"""Sparse heads: sparsemax (Martins & Astudillo 2016) and exact 1.5-entmax (Peters et al. 2019).

Both are written here from their sort-based closed forms. ``keras.ops.sparsemax`` in Keras 3.15
sums the cumulative sums of the whole support instead of taking the one at the support size, so its
threshold is wrong and its outputs need not sum to 1; the tests guard against that bug here.

Two gradients, one switch (``fenchel_young_gradient``):

* A bare layer (``Sparsemax()``, ``Entmax15()``; the default ``fenchel_young_gradient=False``) is
  an ordinary differentiable map: its gradient is its true Jacobian, in training and at inference.
  It is therefore correct under *any* loss you put after it (cross-entropy, MSE, an attention-style
  weighted sum ``sum_i w_i p_i``, ...). Use it this way inside your own models.
* Training with the head's own Fenchel-Young loss needs the gradient ``p - y`` with respect to the
  logits, which no function of ``p`` alone has: a class outside the support has ``p_y = 0`` and,
  through the Jacobian, gets no push at all. With ``fenchel_young_gradient=True`` the layer passes
  the incoming gradient straight to the logits (forward value still ``p``), in every call whatever
  ``training`` says, and the matching losses (:class:`~keras_softmax.SparsemaxLoss`,
  :class:`~keras_softmax.Entmax15Loss`) return the gradient ``p - y`` with respect to ``p``: the
  logits receive exactly ``p - y``. This straight-through path is right *only* for that pairing (under
  any other loss it hands ``dL/dp`` to the logits, which is not a gradient of anything).

The pairing switches it on, never a bare layer silently: ``keras_softmax.get_head("sparsemax")``,
``build_model`` and the CLI build the layer with ``fenchel_young_gradient=True`` (unless you pass
the parameter yourself), and a run with ``loss = "mismatched"`` builds it with ``False``. The flag
is part of ``get_config``, so ``.keras`` files keep it.

The other correct way, Keras's own: the model outputs the logits and is compiled with
``SparsemaxLoss(from_logits=True)`` (``Entmax15Loss``), the exact Fenchel-Young loss on the scores;
the layer goes on for inference. A bare layer followed by ``SparsemaxLoss()`` is neither: the loss
sees the layer's tag on its output (:func:`keras_softmax.ops.tag_output`) and refuses in one line.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_softmax.heads.base import Head, check_axis
from keras_softmax.ops import along_last_axis, apply_mask, check_bool, entmax15, sparsemax, tag_output

__all__ = ["Entmax15", "FenchelYoungHead", "Sparsemax", "entmax15", "sparsemax"]


class FenchelYoungHead(Head):
    """A head ``p = f(z)`` trainable with the Fenchel-Young loss of ``f`` (see the module docstring).

    Subclasses define the static ``mapping(z)``. ``PAIRED_DEFAULTS`` is what the registry sets when
    it pairs the head with its own loss: the straight-through Fenchel-Young gradient.

    The output is tagged with the layer (:func:`keras_softmax.ops.tag_output`): the Fenchel-Young
    losses read the tag to refuse, at their first call, the output of a bare layer (true Jacobian),
    under which they would train silently wrong (a label outside the support gets no gradient).

    Args:
        fenchel_young_gradient: ``False`` (default): the true Jacobian, correct under any loss.
            ``True``: the logits receive the incoming gradient unchanged, in every call, so that the
            matching Fenchel-Young loss gives them ``p - y``; use it only with that loss.
        axis: the axis to normalise along (default -1), as Keras's ``Softmax``.

    Call arguments:
        z: the logits.
        mask: optional boolean mask broadcastable to ``z``; False entries get probability 0.
    """

    PAIRED_DEFAULTS = {"fenchel_young_gradient": True}

    def __init__(self, fenchel_young_gradient=False, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.fenchel_young_gradient = check_bool("fenchel_young_gradient", fenchel_young_gradient)
        self.axis = check_axis(axis)

    def mapping(self, z):
        """The head along the last axis (float32 logits in, probabilities out)."""
        raise NotImplementedError

    def call(self, z, training=False, mask=None):
        z = apply_mask(self._float32(z), mask)
        p = along_last_axis(self.mapping, z, self.axis)
        if mask is not None:  # exact zeros where masked, also in a row masked everywhere
            p = ops.where(ops.cast(mask, "bool"), p, 0.0)
        if self.fenchel_young_gradient:
            # Value p, gradient the identity: independent of ``training``, so that the matched loss
            # gives p - y in a custom loop or evaluation pass too, not only inside ``fit``.
            p = ops.stop_gradient(p) + (z - ops.stop_gradient(z))
        return tag_output(p, self)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "fenchel_young_gradient": self.fenchel_young_gradient, "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_softmax")
class Sparsemax(FenchelYoungHead):
    """Sparsemax: the Euclidean projection of the logits onto the simplex.

    ``p = argmin_{q in simplex} ||q - z||^2 = max(z - tau, 0)``: exact zeros for low logits.
    On its own the layer has its true Jacobian (right under any loss). To train with the sparsemax
    loss (gradient ``p - y`` w.r.t. the logits) either take the pair from ``get_head("sparsemax")``,
    or have the model output the logits, compile with ``SparsemaxLoss(from_logits=True)`` and put
    this layer on for inference. ``SparsemaxLoss()`` after a bare layer refuses at its first call.

    Args:
        fenchel_young_gradient: ``True`` only together with :class:`~keras_softmax.SparsemaxLoss`:
            the logits then receive the loss's gradient ``p - y``. Default ``False``: true Jacobian.

    Example:
        >>> ks.Sparsemax()(keras.ops.array([[1.0, 2.0, 2.5]]))  # [[0., 0.25, 0.75]]
    """

    def mapping(self, z):
        return sparsemax(z)


@keras.saving.register_keras_serializable(package="keras_softmax")
class Entmax15(FenchelYoungHead):
    """1.5-entmax: ``p = argmax_{q in simplex} <q, z> + H_1.5(q)`` with the Tsallis entropy.

    Closed form ``p_i = max(z_i / 2 - tau, 0) ** 2``; sparse like sparsemax but smoother.
    On its own the layer has its true Jacobian. To train with the 1.5-entmax loss (gradient ``p - y``
    w.r.t. the logits) take the pair from ``get_head("entmax15")``, or train a logits model with
    ``Entmax15Loss(from_logits=True)`` and put this layer on for inference.

    Args:
        fenchel_young_gradient: as for :class:`Sparsemax`, with :class:`~keras_softmax.Entmax15Loss`.

    Example:
        >>> ks.Entmax15()(keras.ops.array([[1.0, 2.0, 3.5]]))
    """

    def mapping(self, z):
        return entmax15(z)
