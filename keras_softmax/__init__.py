"""keras-softmax: softmax-variant output heads for Keras 3, each with its matching loss.

>>> import keras_softmax as ks
>>> ks.list_heads()[:3]
['softmax', 'log_softmax', 'gumbel']
>>> head = ks.get_head("log_gumbel", temperature=3.0)
>>> model = ks.build_model(head="log_gumbel", num_classes=100, head_params={"temperature": 3.0})
"""

from keras_softmax.heads import (
    Base2Softmax,
    Entmax15,
    ExpSinSoftmax,
    GumbelSoftmax,
    Head,
    HeadWithLoss,
    HierarchicalSoftmax,
    LogGumbelSoftmax,
    LogSoftmax,
    LogTaylorSoftmax,
    NormalCDFSoftmax,
    Softmax,
    Sparsemax,
    TaylorSoftmax,
    describe_heads,
    get_head,
    list_heads,
)
from keras_softmax.losses import (
    Entmax15Loss,
    FenchelYoungLoss,
    NegativeLogLikelihood,
    ProbabilityCrossEntropy,
    SparsemaxLoss,
)

# Imported for their side effect: they register the model's layers and initializer and the training
# metric with Keras, so that `keras.saving.load_model` reads a run's model.keras in a fresh process.
from keras_softmax import models as _models  # noqa: E402,F401
from keras_softmax.training import metrics as _metrics  # noqa: E402,F401

__version__ = "0.1.0"


def build_model(*args, **kwargs):
    """Build a classifier: backbone + Dense logits + head. See :func:`keras_softmax.models.build_model`."""
    from keras_softmax.models import build_model as _build_model

    return _build_model(*args, **kwargs)


def compile_model(*args, **kwargs):
    """Compile a model with its head's matching loss. See :func:`keras_softmax.models.compile_model`."""
    from keras_softmax.models import compile_model as _compile_model

    return _compile_model(*args, **kwargs)


__all__ = [
    "Base2Softmax", "Entmax15", "Entmax15Loss", "ExpSinSoftmax", "FenchelYoungLoss", "GumbelSoftmax",
    "Head", "HeadWithLoss", "HierarchicalSoftmax", "LogGumbelSoftmax", "LogSoftmax", "LogTaylorSoftmax",
    "NegativeLogLikelihood", "NormalCDFSoftmax", "ProbabilityCrossEntropy", "Softmax", "Sparsemax",
    "SparsemaxLoss", "TaylorSoftmax", "build_model", "compile_model", "describe_heads", "get_head", "list_heads",
]
