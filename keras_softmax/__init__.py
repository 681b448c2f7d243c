"""keras-softmax: softmax-variant output heads for Keras 3, each with its matching loss.

>>> import keras_softmax as ks
>>> ks.list_heads()[:3]
['softmax', 'log_softmax', 'gumbel']
>>> head = ks.get_head("log_gumbel", temperature=3.0)
>>> model = ks.build_model(head="log_gumbel", num_classes=100, head_params={"temperature": 3.0})
"""

from keras_softmax.heads import (
    AdaptiveSoftmax,
    Base2Softmax,
    Entmax15,
    EntmaxAlpha,
    ExpSinSoftmax,
    GumbelSoftmax,
    Head,
    HeadWithLoss,
    HierarchicalSoftmax,
    LogGumbelSoftmax,
    LogSoftmax,
    LogTaylorSoftmax,
    NormalCDFSoftmax,
    ProjectionHead,
    SampledSoftmax,
    Softmax,
    Sparsemax,
    TaylorSoftmax,
    describe_heads,
    get_head,
    list_heads,
)
from keras_softmax.losses import (
    AdaptiveSoftmaxLoss,
    Entmax15Loss,
    EntmaxAlphaLoss,
    FenchelYoungLoss,
    NegativeLogLikelihood,
    ProbabilityCrossEntropy,
    SampledSoftmaxLoss,
    SparsemaxLoss,
)

# The model's layers and initializer and the training metric register themselves with Keras on import,
# so that `keras.saving.load_model` reads a run's model.keras in a fresh process.
from keras_softmax.models import build_model, compile_model  # noqa: E402
from keras_softmax.training import metrics as _metrics  # noqa: E402,F401

__version__ = "0.1.0"


__all__ = [
    "AdaptiveSoftmax", "AdaptiveSoftmaxLoss", "EntmaxAlpha", "EntmaxAlphaLoss", "ProjectionHead",
    "SampledSoftmax", "SampledSoftmaxLoss",
    "Base2Softmax", "Entmax15", "Entmax15Loss", "ExpSinSoftmax", "FenchelYoungLoss", "GumbelSoftmax",
    "Head", "HeadWithLoss", "HierarchicalSoftmax", "LogGumbelSoftmax", "LogSoftmax", "LogTaylorSoftmax",
    "NegativeLogLikelihood", "NormalCDFSoftmax", "ProbabilityCrossEntropy", "Softmax", "Sparsemax",
    "SparsemaxLoss", "TaylorSoftmax", "build_model", "compile_model", "describe_heads", "get_head", "list_heads",
]
