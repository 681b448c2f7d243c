"""Training: the resolved config, the run directory, and the ``train`` entry point."""

from keras_softmax.training.config import ConfigError, TrainConfig, resolve
from keras_softmax.training.rundir import RunDirectory, RunDirError


def train(*args, **kwargs):
    """Train into a run directory; see :func:`keras_softmax.training.trainer.train`."""
    from keras_softmax.training.trainer import train as _train

    return _train(*args, **kwargs)


__all__ = ["ConfigError", "RunDirError", "RunDirectory", "TrainConfig", "resolve", "train"]
