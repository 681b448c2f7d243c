"""Output heads: one Keras layer per softmax variant, and the registry that names each with its loss.

Imports only Keras, numpy and the package's core (:mod:`keras_softmax.ops`, :mod:`keras_softmax.losses`).
"""

from keras_softmax.heads.adaptive import AdaptiveSoftmax
from keras_softmax.heads.base import Head, NormalizedScoresHead
from keras_softmax.heads.entmax_alpha import EntmaxAlpha, entmax_bisect
from keras_softmax.heads.gumbel import GumbelSoftmax, LogGumbelSoftmax
from keras_softmax.heads.hierarchical import HierarchicalSoftmax, grouped_classes
from keras_softmax.heads.kernels import (
    Base2Softmax,
    ExpSinSoftmax,
    LogTaylorSoftmax,
    NormalCDFSoftmax,
    TaylorSoftmax,
)
from keras_softmax.heads.projection import ProjectionHead
from keras_softmax.heads.registry import (
    HeadSpec,
    HeadWithLoss,
    complete_params,
    describe_heads,
    get_head,
    head_spec,
    list_heads,
    register_head,
    unpaired_params,
)
from keras_softmax.heads.sampled import SampledSoftmax
from keras_softmax.heads.softmax import LogSoftmax, Softmax
from keras_softmax.heads.sparse import Entmax15, FenchelYoungHead, Sparsemax, entmax15, sparsemax

__all__ = [
    "AdaptiveSoftmax", "EntmaxAlpha", "ProjectionHead", "SampledSoftmax", "entmax_bisect",
    "Base2Softmax", "Entmax15", "ExpSinSoftmax", "GumbelSoftmax", "Head", "HeadSpec", "HeadWithLoss",
    "HierarchicalSoftmax", "LogGumbelSoftmax", "LogSoftmax", "LogTaylorSoftmax", "NormalCDFSoftmax",
    "NormalizedScoresHead", "Softmax", "Sparsemax", "TaylorSoftmax", "describe_heads", "entmax15",
    "get_head", "list_heads", "sparsemax", "unpaired_params", "FenchelYoungHead", "complete_params",
    "grouped_classes", "head_spec", "register_head",
]
