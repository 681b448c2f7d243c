"""keras-softmax: softmax-variant output heads for Keras 3, each with its matching loss.

>>> import keras_softmax as ks
>>> ks.list_heads()[:3]
['softmax', 'log_softmax', 'gumbel']
>>> head = ks.get_head("log_gumbel", temperature=3.0)
>>> model = ks.build_model(head="log_gumbel", num_classes=100, head_params={"temperature": 3.0})

The package needs Keras and numpy only (and the backend you use): importing it loads the core
(:mod:`keras_softmax.ops`, :mod:`keras_softmax.losses`, :mod:`keras_softmax.heads`,
:mod:`keras_softmax.metrics`) and the model factory, whose layers register themselves with Keras so
that ``keras.saving.load_model`` reads any model the package made. The harness (training, evaluation,
the CLI) is imported only where it is used.
"""

from keras_softmax import metrics as _metrics  # noqa: F401 - registers label_accuracy for .keras files
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
    complete_params,
    describe_heads,
    get_head,
    list_heads,
    register_head,
)
from keras_softmax.losses import (
    AdaptiveSoftmaxLoss,
    CompositionError,
    CompositionWarning,
    Entmax15Loss,
    EntmaxAlphaLoss,
    FenchelYoungLoss,
    MismatchedCrossEntropy,
    NegativeLogLikelihood,
    ProbabilityCrossEntropy,
    SampledSoftmaxLoss,
    SparsemaxLoss,
)

# The model's layers and initializer register themselves with Keras on import, so that
# `keras.saving.load_model` reads a run's model.keras in a fresh process.
from keras_softmax.models import build_model, compile_model  # noqa: E402

__version__ = "0.1.0"


__all__ = [
    "AdaptiveSoftmax", "AdaptiveSoftmaxLoss", "EntmaxAlpha", "EntmaxAlphaLoss", "ProjectionHead",
    "SampledSoftmax", "SampledSoftmaxLoss",
    "Base2Softmax", "CompositionError", "CompositionWarning", "Entmax15", "Entmax15Loss", "ExpSinSoftmax", "FenchelYoungLoss",
    "GumbelSoftmax", "Head", "HeadWithLoss", "HierarchicalSoftmax", "LogGumbelSoftmax", "LogSoftmax",
    "LogTaylorSoftmax", "MismatchedCrossEntropy", "NegativeLogLikelihood", "NormalCDFSoftmax",
    "ProbabilityCrossEntropy", "Softmax", "Sparsemax", "SparsemaxLoss", "TaylorSoftmax", "build_model",
    "compile_model", "complete_params", "describe_heads", "get_head", "list_heads", "register_head",
]
