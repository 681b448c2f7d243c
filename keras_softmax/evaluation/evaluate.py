"""Run a trained model over a split and turn its outputs into the report's metrics."""

from __future__ import annotations

import numpy as np

from keras_softmax.evaluation.calibration import calibrate as calibrate_temperature
from keras_softmax.evaluation.metrics import compute_metrics


def predict_probabilities(model, images, output_kind: str, *, batch_size: int = 256, tta_flip: bool = False):
    """Class probabilities of ``images`` (uint8, NHWC) at inference, optionally averaged with flips."""
    outputs = [np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype="float64")]
    if tta_flip:
        outputs.append(np.asarray(model.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0),
                                  dtype="float64"))
    probabilities = [np.exp(o) if output_kind == "log_probabilities" else o for o in outputs]
    return np.mean(probabilities, axis=0)


def coarse_metrics(labels, probabilities, fine_to_coarse) -> dict:
    """Superclass accuracy of a fine-class model, two ways.

    ``coarse_accuracy``: the probabilities summed within each superclass, then argmax (for the
    hierarchical head this is its own p(coarse)). ``coarse_accuracy_mapped``: the superclass of the
    predicted fine class.
    """
    table = np.asarray(fine_to_coarse, dtype=np.int64)
    coarse_true = table[np.asarray(labels, dtype=np.int64)]
    summed = np.zeros((len(table), int(table.max()) + 1))
    summed[np.arange(len(table)), table] = 1.0
    coarse_pred = (np.asarray(probabilities) @ summed).argmax(axis=1)
    mapped_pred = table[np.asarray(probabilities).argmax(axis=1)]
    return {"coarse_accuracy": float(np.mean(coarse_pred == coarse_true)),
            "coarse_accuracy_mapped": float(np.mean(mapped_pred == coarse_true)),
            "fine_to_coarse": table.tolist()}


def evaluate_model(model, head, dataset, split: str = "val", *, batch_size: int = 256, tta_flip: bool = False,
                   calibrate: bool = False) -> dict:
    """Metrics of ``model`` on ``dataset``'s ``split``, plus the matching loss on that split.

    Where the dataset has a fine->coarse map, also the superclass accuracy (:func:`coarse_metrics`)
    and the map itself. With ``calibrate``, ``calibration``: a temperature fit on this split
    (:func:`keras_softmax.evaluation.calibration.calibrate`).
    """
    images, labels = dataset.split(split)
    probabilities = predict_probabilities(model, images, head.output_kind, batch_size=batch_size, tta_flip=tta_flip)
    metrics = compute_metrics(labels, probabilities, class_names=dataset.class_names)
    outputs = np.log(np.maximum(probabilities, 1e-45)) if head.output_kind == "log_probabilities" else probabilities
    # float() reads a scalar of any backend; np.asarray refuses a torch tensor on a GPU
    metrics["loss"] = float(head.loss(labels, outputs.astype("float32")))
    metrics["split"] = split
    metrics["tta_flip"] = bool(tta_flip)
    if dataset.fine_to_coarse is not None:
        metrics.update(coarse_metrics(labels, probabilities, dataset.fine_to_coarse))
    if calibrate:
        metrics["calibration"] = calibrate_temperature(labels, probabilities, head=head.name,
                                                       drop_lowest=head.params.get("drop_lowest", 0.0))
    return metrics


class ClassMismatch(ValueError):
    """A dataset's class names are not all classes of the model (one-line message)."""


def match_classes(model_names, data_names) -> list[int]:
    """For each class of the data, the index of the model's class of the same name.

    Classes are matched by name, never by position: a dataset with a subset of the model's classes
    (in any order) is fine; a class the model does not know is refused, all of them named in one line.
    """
    index = {str(name): i for i, name in enumerate(model_names)}
    unknown = [str(name) for name in data_names if str(name) not in index]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        known = ", ".join(map(str, list(model_names)[:10])) + (", ..." if len(model_names) > 10 else "")
        raise ClassMismatch(f"{len(unknown)} of the dataset's {len(data_names)} classes are not classes of the model "
                            f"({shown}); the model's classes are {known}; classes are matched by folder name")
    return [index[str(name)] for name in data_names]


class RestrictedModel:
    """A model whose output is restricted to some of its classes and renormalised over them.

    Scoring a model on a dataset that holds a subset of its classes (by name) is then the usual
    K-way evaluation of those classes (as ImageNet-A/-R are scored with ImageNet models): the
    probabilities of the shared classes, in the dataset's class order, divided by their sum
    (log heads: minus their logsumexp). With all classes it only reorders the columns.
    """

    def __init__(self, model, columns, output_kind: str):
        self.model, self.columns, self.output_kind = model, np.asarray(columns, dtype=np.int64), output_kind

    def predict(self, images, **kwargs):
        out = np.asarray(self.model.predict(images, **kwargs), dtype="float64")[:, self.columns]
        if self.output_kind == "log_probabilities":
            top = out.max(axis=1, keepdims=True)
            return out - (top + np.log(np.exp(out - top).sum(axis=1, keepdims=True)))
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-300)

    def count_params(self) -> int:
        return self.model.count_params()
