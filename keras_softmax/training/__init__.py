"""Training: the resolved config, the run directory, and ``train`` (data → model → fit).

Evaluating, exporting and reporting a trained model is :func:`keras_softmax.job.run_job`.
"""

from keras_softmax.training.callbacks import TrainingDiverged
from keras_softmax.training.config import ConfigError, TrainConfig, resolve
from keras_softmax.training.rundir import RunDirectory, RunDirError


def train(*args, **kwargs):
    """Train into a run directory; see :func:`keras_softmax.training.trainer.train`.

    Imported on first use: ``keras_softmax`` imports this package (for the training metric) before
    the data and model modules that the trainer needs exist.
    """
    from keras_softmax.training.trainer import train as _train

    return _train(*args, **kwargs)


__all__ = ["ConfigError", "RunDirError", "RunDirectory", "TrainConfig", "TrainingDiverged", "resolve", "train"]
