"""Output heads: one Keras layer per softmax variant, and the registry that pairs each with its loss."""

from keras_softmax.heads.adaptive import AdaptiveSoftmax
from keras_softmax.heads.base import Head, NormalizedScoresHead
from keras_softmax.heads.entmax_alpha import EntmaxAlpha, entmax_bisect
from keras_softmax.heads.gumbel import GumbelSoftmax, LogGumbelSoftmax
from keras_softmax.heads.hierarchical import HierarchicalSoftmax
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
    describe_heads,
    get_head,
    list_heads,
    unpaired_params,
)
from keras_softmax.heads.sampled import SampledSoftmax
from keras_softmax.heads.softmax import LogSoftmax, Softmax
from keras_softmax.heads.sparse import Entmax15, Sparsemax, entmax15, sparsemax

__all__ = [
    "AdaptiveSoftmax", "EntmaxAlpha", "ProjectionHead", "SampledSoftmax", "entmax_bisect",
    "Base2Softmax", "Entmax15", "ExpSinSoftmax", "GumbelSoftmax", "Head", "HeadSpec", "HeadWithLoss",
    "HierarchicalSoftmax", "LogGumbelSoftmax", "LogSoftmax", "LogTaylorSoftmax", "NormalCDFSoftmax",
    "NormalizedScoresHead", "Softmax", "Sparsemax", "TaylorSoftmax", "describe_heads", "entmax15",
    "get_head", "list_heads", "sparsemax", "unpaired_params",
]
