"""Data: load a dataset as uint8 arrays (:mod:`.sources`), then batch it for Keras (:mod:`.pipeline`).

>>> from keras_softmax.data import load_dataset, make_batches
>>> data = load_dataset("digits")
>>> train = make_batches(*data.split("train"), 128, shuffle=True)
"""

from keras_softmax.data.pipeline import even_batch_size, make_batches
from keras_softmax.data.sources import DATASETS, Dataset, DatasetError, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetError", "even_batch_size", "load_dataset", "make_batches"]
