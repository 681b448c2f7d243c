"""Training-time accuracy: defined in :mod:`keras_softmax.metrics` (the core, so .keras files load)."""

from keras_softmax.metrics import accuracy_metric, label_accuracy

__all__ = ["accuracy_metric", "label_accuracy"]
