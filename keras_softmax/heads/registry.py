"""The head registry: names (a public interface: CLI ``--head NAME``) to layer and matching loss."""

from __future__ import annotations

import dataclasses
import inspect

import keras

from keras_softmax import losses
from keras_softmax.heads import adaptive, entmax_alpha, gumbel, hierarchical, kernels, sampled, softmax, sparse


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What the registry knows of one head: its layer class, its loss class and a one-line summary."""

    name: str
    layer_class: type
    loss_class: type
    summary: str

    def parameters(self) -> dict:
        """The head's parameters and their defaults when paired with its loss, in signature order.

        These are the layer's own defaults, except where the pairing sets another
        (``layer_class.PAIRED_DEFAULTS``, e.g. ``fenchel_young_gradient=True`` for sparsemax).
        """
        signature = inspect.signature(self.layer_class.__init__)
        return {
            name: self.layer_class.PAIRED_DEFAULTS.get(name, param.default)
            for name, param in signature.parameters.items()
            if name != "self" and param.kind is param.POSITIONAL_OR_KEYWORD
        }


@dataclasses.dataclass(frozen=True)
class HeadWithLoss:
    """A configured head: ``layer`` maps logits to a distribution, ``loss`` matches its output.

    Heads that own their projection (``owns_projection``: adaptive, sampled) map the backbone's
    features instead, and their loss is paired with the layer (it reads the layer's weights); so is
    ``entmax_alpha``'s (it reads alpha). ``loss`` and ``make_loss()`` return paired losses.
    """

    name: str
    layer: keras.layers.Layer
    loss: keras.losses.Loss
    params: dict

    @property
    def output_kind(self) -> str:
        """``"probabilities"`` or ``"log_probabilities"``."""
        return self.layer.output_kind

    @property
    def owns_projection(self) -> bool:
        """True when the layer takes features and holds the classifier weights (no Dense before it)."""
        return bool(getattr(self.layer, "owns_projection", False))

    def num_logits(self, num_classes: int) -> int:
        """How many logits the layer consumes for ``num_classes`` classes (0: it owns its projection)."""
        return self.layer.num_logits(num_classes)

    def make_loss(self, label_smoothing: float = 0.0) -> keras.losses.Loss:
        """A fresh matching loss, optionally with label smoothing, paired with the layer if it needs it."""
        return paired(type(self.loss)(label_smoothing=label_smoothing), self.layer)


def paired(loss, layer):
    """``loss`` bound to ``layer`` when it is a loss that reads its head's weights, else ``loss``."""
    bind = getattr(loss, "bind", None)
    return bind(layer) if callable(bind) else loss


_SPECS = (
    HeadSpec("softmax", softmax.Softmax, losses.ProbabilityCrossEntropy, "softmax(z / T)"),
    HeadSpec("log_softmax", softmax.LogSoftmax, losses.NegativeLogLikelihood, "log softmax(z / T)"),
    HeadSpec("gumbel", gumbel.GumbelSoftmax, losses.ProbabilityCrossEntropy,
             "softmax((z + g) / tau) in training, softmax(z / tau) at inference"),
    HeadSpec("log_gumbel", gumbel.LogGumbelSoftmax, losses.NegativeLogLikelihood,
             "log softmax((z + g) / tau) in training, log softmax(z / tau) at inference"),
    HeadSpec("sparsemax", sparse.Sparsemax, losses.SparsemaxLoss, "Euclidean projection onto the simplex"),
    HeadSpec("entmax15", sparse.Entmax15, losses.Entmax15Loss, "exact 1.5-entmax (sort-based)"),
    HeadSpec("taylor", kernels.TaylorSoftmax, losses.ProbabilityCrossEntropy,
             "p ∝ 1 + z + z^2/2 + ... + z^k/k!"),
    HeadSpec("log_taylor", kernels.LogTaylorSoftmax, losses.NegativeLogLikelihood,
             "log of the Taylor softmax"),
    HeadSpec("base2", kernels.Base2Softmax, losses.ProbabilityCrossEntropy, "p ∝ 2^z"),
    HeadSpec("exp_sin", kernels.ExpSinSoftmax, losses.ProbabilityCrossEntropy, "p ∝ exp(sin z)"),
    HeadSpec("normal_cdf", kernels.NormalCDFSoftmax, losses.ProbabilityCrossEntropy, "p ∝ exp(Phi(z))"),
    HeadSpec("hierarchical", hierarchical.HierarchicalSoftmax, losses.NegativeLogLikelihood,
             "log p(coarse) + log p(fine | coarse)"),
    HeadSpec("adaptive", adaptive.AdaptiveSoftmax, losses.AdaptiveSoftmaxLoss,
             "adaptive softmax: frequent classes in a head, rare ones in cheaper tail clusters (own projection)"),
    HeadSpec("sampled", sampled.SampledSoftmax, losses.SampledSoftmaxLoss,
             "sampled softmax in training, full softmax at inference (own projection)"),
    HeadSpec("entmax_alpha", entmax_alpha.EntmaxAlpha, losses.EntmaxAlphaLoss,
             "alpha-entmax by bisection, alpha fixed or learned"),
)
HEADS = {spec.name: spec for spec in _SPECS}


def list_heads() -> list[str]:
    """The registry names of every head."""
    return list(HEADS)


def head_spec(name: str) -> HeadSpec:
    """The spec of head ``name``; ``ValueError`` listing the valid names if there is none."""
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}") from None


def get_head(name: str, **params) -> HeadWithLoss:
    """Build head ``name`` with ``params`` and its matching loss.

    The pairing applies the layer's ``PAIRED_DEFAULTS`` for parameters not given: the sparse heads
    (sparsemax, entmax15) get ``fenchel_young_gradient=True``, so that ``head.loss`` gives their
    logits exactly ``p - y``. A layer made directly (``ks.Sparsemax()``) keeps its true Jacobian.

    Raises ``ValueError`` for an unknown head, an unknown parameter or an invalid value.

    Example:
        >>> head = get_head("log_gumbel", temperature=3.0)
        >>> head.layer, head.loss
    """
    spec = head_spec(name)
    allowed = spec.parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) or "none"
        raise ValueError(f"head {name!r} has no parameter {unknown[0]!r}; its parameters are: {listed}")
    layer = spec.layer_class(**{**spec.layer_class.PAIRED_DEFAULTS, **params})
    return HeadWithLoss(name=name, layer=layer, loss=paired(spec.loss_class(), layer), params=dict(params))


def unpaired_params(name: str) -> dict:
    """The layer's own defaults for the parameters that pairing with its loss changes.

    For a head used with a loss other than its own (e.g. the original study's mismatched
    cross-entropy): ``get_head(name, **unpaired_params(name))`` gives the layer's true Jacobian.
    """
    spec = head_spec(name)
    signature = inspect.signature(spec.layer_class.__init__)
    return {key: signature.parameters[key].default for key in spec.layer_class.PAIRED_DEFAULTS}


def describe_heads() -> list[dict]:
    """One row per head: name, layer and loss class names, output kind, summary, parameters."""
    rows = []
    for spec in _SPECS:
        rows.append({
            "name": spec.name,
            "layer": spec.layer_class.__name__,
            "loss": spec.loss_class.__name__,
            "output": spec.layer_class.output_kind,
            "input": "features" if getattr(spec.layer_class, "owns_projection", False) else "logits",
            "summary": spec.summary,
            "parameters": spec.parameters(),
        })
    return rows
