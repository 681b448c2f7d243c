"""Training-time metrics: defined in :mod:`keras_softmax.metrics` (the core, so .keras files load)."""

from keras_softmax.metrics import PROBABILITY_FLOOR, accuracy_metric, label_accuracy, label_nll, nll_metric

__all__ = ["PROBABILITY_FLOOR", "accuracy_metric", "label_accuracy", "label_nll", "nll_metric", "training_metrics"]


def training_metrics(output_kind: str) -> list:
    """What every training run compiles with: ``accuracy`` and the unsmoothed ``nll`` (logs get
    ``accuracy``, ``val_accuracy``, ``nll``, ``val_nll``); ``output_kind`` is the head's."""
    return [accuracy_metric(), nll_metric(output_kind)]
