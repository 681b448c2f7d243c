"""The head registry: names (a public interface: CLI ``--head NAME``) to layer and matching loss.

Each built-in head registers itself here; a user registers a head of their own the same way, and it
then works everywhere a built-in name does (``get_head``, ``build_model``, the CLI's ``--head``)::

    @ks.register_head("my_head", loss=ks.ProbabilityCrossEntropy, summary="p ∝ ...")
    class MyHead(ks.heads.NormalizedScoresHead):
        def scores(self, z, training=False):
            return ...

The registry holds no pairing state: a head's layer and its loss meet only in the model (the loss
reads the layer's output tag; :mod:`keras_softmax.losses`). What the registry adds is the layer's
``PAIRED_DEFAULTS`` (e.g. the sparse heads' Fenchel-Young gradient) and the completion of a head's
parameters from the problem (:func:`complete_params`, one place for the factory, the trainer and the
benchmarks).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os

import keras

from keras_softmax import losses
from keras_softmax.heads import adaptive, entmax_alpha, gumbel, hierarchical, kernels, sampled, softmax, sparse
from keras_softmax.heads.base import Head
from keras_softmax.names import did_you_mean


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What the registry knows of one head: its layer class, its loss class and a one-line summary."""

    name: str
    layer_class: type
    loss_class: type
    summary: str

    @property
    def owns_projection(self) -> bool:
        """True when the layer takes features and holds the classifier weights (no Dense before it)."""
        return bool(self.layer_class.owns_projection)

    @property
    def output_kind(self) -> str:
        return self.layer_class.output_kind

    def parameters(self) -> dict:
        """The head's parameters and their defaults when paired with its loss, in signature order.

        These are the layer's own defaults, except where the pairing sets another
        (``layer_class.PAIRED_DEFAULTS``, e.g. ``fenchel_young_gradient=True`` for sparsemax). ``axis``
        is not one: a classifier's head normalises over the classes, the last axis.
        """
        signature = inspect.signature(self.layer_class.__init__)
        return {
            name: self.layer_class.PAIRED_DEFAULTS.get(name, param.default)
            for name, param in signature.parameters.items()
            if name not in ("self", "axis") and param.kind is param.POSITIONAL_OR_KEYWORD
        }


@dataclasses.dataclass(frozen=True)
class HeadWithLoss:
    """A configured head: ``layer`` maps logits to a distribution, ``loss`` matches its output.

    Heads that own their projection (``owns_projection``: adaptive, sampled) map the backbone's
    features instead; their loss finds the layer through the layer's output, so ``loss`` and
    ``make_loss()`` are plain losses, as a hand-made one is.
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
        return bool(self.layer.owns_projection)

    def num_logits(self, num_classes: int) -> int:
        """How many logits the layer consumes for ``num_classes`` classes (0: it owns its projection)."""
        return self.layer.num_logits(num_classes)

    def make_loss(self, label_smoothing: float = 0.0, from_logits: bool = False) -> keras.losses.Loss:
        """A fresh matching loss, optionally with label smoothing.

        ``from_logits=True``: the loss for a model that outputs the logits this head's layer takes
        (the layer then goes on for inference only): exact for this head, e.g.
        ``SparsemaxLoss(from_logits=True)`` or ``ProbabilityCrossEntropy(from_logits=True, head=layer)``.
        ``ValueError`` for a head that owns its projection (it takes features, not logits).
        """
        return _make_loss(type(self.loss), self.layer, label_smoothing, from_logits)


def _make_loss(loss_class, layer, label_smoothing=0.0, from_logits=False):
    kwargs = {"label_smoothing": label_smoothing}
    if from_logits:
        if layer.owns_projection:
            raise ValueError(f"{type(layer).__name__} owns its projection: it takes features, not logits, "
                             "so there is no from_logits loss for it")
        kwargs["from_logits"] = True
        if issubclass(loss_class, losses._LogSpaceLoss):
            kwargs["head"] = layer
    if issubclass(loss_class, losses.EntmaxAlphaLoss):
        # alpha for the loss on logits; on the layer's output it reads the layer's (learned) alpha
        kwargs["alpha"] = layer.alpha
    return loss_class(**kwargs)


def paired(loss, layer):
    """``loss`` itself: kept for callers of the former pairing step (losses now find their layer)."""
    return loss


HEADS: dict[str, HeadSpec] = {}


def register_head(name: str, layer_class: type | None = None, loss=None, summary: str = "", *,
                  replace: bool = False):
    """Register head ``name``: its layer class (a :class:`keras_softmax.heads.Head`) and matching loss class.

    Use it as a function, ``register_head("my_head", MyHead, loss=ks.NegativeLogLikelihood)``, or as a
    class decorator, ``@register_head("my_head", loss=...)``. The layer class is also registered with
    Keras's serialization (package ``keras_softmax``) so that ``.keras`` files of it load. The CLI sees
    heads registered by a module it imports: ``KERAS_SOFTMAX_PLUGINS=my_module`` (comma-separated).

    Raises ``ValueError`` for a name taken (unless ``replace``), a layer class that is not a ``Head``
    or a loss class that is not a ``keras.losses.Loss`` taking ``label_smoothing=``.
    """
    def register(cls):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a head name must be an identifier such as 'my_head' (got {name!r})")
        if name in HEADS and not replace:
            raise ValueError(f"head {name!r} is registered already (pass replace=True to replace it)")
        if not (isinstance(cls, type) and issubclass(cls, Head)):
            raise ValueError(f"a head's layer class must subclass keras_softmax.heads.Head (got {cls!r})")
        if not (isinstance(loss, type) and issubclass(loss, keras.losses.Loss)):
            raise ValueError(f"loss must be a keras.losses.Loss subclass (got {loss!r})")
        params = inspect.signature(loss.__init__).parameters
        if "label_smoothing" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise ValueError(f"loss {loss.__name__} must take label_smoothing= (get_head, build_model and the CLI "
                             "pass it): subclass keras_softmax.ProbabilityCrossEntropy or NegativeLogLikelihood, "
                             "or add the argument")
        registered = keras.saving.get_registered_object(f"keras_softmax>{cls.__name__}")
        if registered is None:
            keras.saving.register_keras_serializable(package="keras_softmax")(cls)
        HEADS[name] = HeadSpec(name, cls, loss, summary or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return register if layer_class is None else register(layer_class)


for _name, _layer, _loss, _summary in (
    ("softmax", softmax.Softmax, losses.ProbabilityCrossEntropy, "softmax(z / T)"),
    ("log_softmax", softmax.LogSoftmax, losses.NegativeLogLikelihood, "log softmax(z / T)"),
    ("gumbel", gumbel.GumbelSoftmax, losses.ProbabilityCrossEntropy,
     "softmax((z + g) / tau) in training, softmax(z / tau) at inference"),
    ("log_gumbel", gumbel.LogGumbelSoftmax, losses.NegativeLogLikelihood,
     "log softmax((z + g) / tau) in training, log softmax(z / tau) at inference"),
    ("sparsemax", sparse.Sparsemax, losses.SparsemaxLoss, "Euclidean projection onto the simplex"),
    ("entmax15", sparse.Entmax15, losses.Entmax15Loss, "exact 1.5-entmax (sort-based)"),
    ("taylor", kernels.TaylorSoftmax, losses.ProbabilityCrossEntropy, "p ∝ 1 + z + z^2/2 + ... + z^k/k!"),
    ("log_taylor", kernels.LogTaylorSoftmax, losses.NegativeLogLikelihood, "log of the Taylor softmax"),
    ("base2", kernels.Base2Softmax, losses.ProbabilityCrossEntropy, "p ∝ 2^z"),
    ("exp_sin", kernels.ExpSinSoftmax, losses.ProbabilityCrossEntropy, "p ∝ exp(sin z)"),
    ("normal_cdf", kernels.NormalCDFSoftmax, losses.ProbabilityCrossEntropy, "p ∝ exp(Phi(z))"),
    ("hierarchical", hierarchical.HierarchicalSoftmax, losses.NegativeLogLikelihood,
     "log p(coarse) + log p(fine | coarse)"),
    ("adaptive", adaptive.AdaptiveSoftmax, losses.AdaptiveSoftmaxLoss,
     "adaptive softmax: frequent classes in a head, rare ones in cheaper tail clusters (own projection)"),
    ("sampled", sampled.SampledSoftmax, losses.SampledSoftmaxLoss,
     "sampled softmax in training, full softmax at inference (own projection)"),
    ("entmax_alpha", entmax_alpha.EntmaxAlpha, losses.EntmaxAlphaLoss,
     "alpha-entmax by bisection, alpha fixed or learned"),
):
    register_head(_name, _layer, loss=_loss, summary=_summary)


#: Modules that register heads of their own, imported on the first look-up of a name (comma-separated).
PLUGINS_VARIABLE = "KERAS_SOFTMAX_PLUGINS"
_plugins_loaded = False


def load_plugins() -> None:
    """Import the modules named in ``$KERAS_SOFTMAX_PLUGINS`` (once), so that the heads they register
    are known wherever a name is looked up: ``get_head``, ``build_model``, the CLI's ``--head``."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"{PLUGINS_VARIABLE} names module {module!r}, which does not import: {error}") from None


def list_heads() -> list[str]:
    """The registry names of every head (built-in first, then those registered since)."""
    load_plugins()
    return list(HEADS)


def head_spec(name: str) -> HeadSpec:
    """The spec of head ``name``; ``ValueError`` listing the valid names if there is none."""
    load_plugins()
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown head {name!r}{did_you_mean(name, HEADS)}; "
                         f"choose one of: {', '.join(HEADS)}") from None


def complete_params(name: str, params=None, num_classes=None, *, fine_to_coarse=None, labels=None) -> dict:
    """Head ``name``'s parameters ``params`` completed for the problem: the one place that does it.

    The layer class decides (``Head.complete_params``): heads that own their projection get
    ``num_classes`` (and ``class_order``, most frequent first, from the training ``labels``);
    hierarchical gets ``num_classes`` and the dataset's ``fine_to_coarse``. Given values are kept.
    """
    spec = head_spec(name)
    return spec.layer_class.complete_params(dict(params or {}), num_classes, fine_to_coarse=fine_to_coarse,
                                            labels=labels)


def get_head(name: str, **params) -> HeadWithLoss:
    """Build head ``name`` with ``params`` and its matching loss.

    The pairing applies the layer's ``PAIRED_DEFAULTS`` for parameters not given: the sparse heads
    (sparsemax, entmax15, entmax_alpha) get ``fenchel_young_gradient=True``, so that ``head.loss``
    gives their logits exactly ``p - y``. A layer made directly (``ks.Sparsemax()``) keeps its true
    Jacobian (and ``SparsemaxLoss()`` refuses its output; ``SparsemaxLoss(from_logits=True)`` on the
    logits is the other correct way).

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
        raise ValueError(f"head {name!r} has no parameter {unknown[0]!r}{did_you_mean(unknown[0], allowed)}; "
                         f"its parameters are: {listed}")
    layer = spec.layer_class(**{**spec.layer_class.PAIRED_DEFAULTS, **params})
    return HeadWithLoss(name=name, layer=layer, loss=_make_loss(spec.loss_class, layer), params=dict(params))


def unpaired_params(name: str) -> dict:
    """The layer's own defaults for the parameters that pairing with its loss changes.

    For a head used with a loss other than its own (e.g. the original study's mismatched
    cross-entropy): ``get_head(name, **unpaired_params(name))`` gives the layer's true Jacobian.
    """
    spec = head_spec(name)
    signature = inspect.signature(spec.layer_class.__init__)
    return {key: signature.parameters[key].default for key in spec.layer_class.PAIRED_DEFAULTS}


def head_of_layer(layer) -> HeadSpec | None:
    """The spec whose layer class is exactly ``type(layer)``, or None."""
    for spec in HEADS.values():
        if type(layer) is spec.layer_class:
            return spec
    return None


def describe_heads() -> list[dict]:
    """One row per head: name, layer and loss class names, output kind, summary, parameters."""
    load_plugins()
    return [{
        "name": spec.name,
        "layer": spec.layer_class.__name__,
        "loss": spec.loss_class.__name__,
        "output": spec.output_kind,
        "input": "features" if spec.owns_projection else "logits",
        "summary": spec.summary,
        "parameters": spec.parameters(),
    } for spec in HEADS.values()]
