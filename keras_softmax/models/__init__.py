"""Models: the ResNet-12 backbone, in-model preprocessing, and the classifier factory."""

from keras_softmax.models.augment import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    ImageNormalization,
    RandomCropFlip,
)
from keras_softmax.models.dropblock import DropBlock2D
from keras_softmax.models.factory import BACKBONES, build_model, compile_model
from keras_softmax.models.resnet12 import resnet12, resnet12_num_params, residual_stage
from keras_softmax.models.sparse_rows import SparseRowsModel

__all__ = [
    "BACKBONES", "CIFAR100_MEAN", "CIFAR100_STD", "DropBlock2D", "ImageNormalization", "RandomCropFlip",
    "SparseRowsModel", "build_model", "compile_model", "residual_stage", "resnet12", "resnet12_num_params",
]
