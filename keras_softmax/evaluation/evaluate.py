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
    metrics["loss"] = float(np.asarray(head.loss(labels, outputs.astype("float32"))))
    metrics["split"] = split
    metrics["tta_flip"] = bool(tta_flip)
    if dataset.fine_to_coarse is not None:
        metrics.update(coarse_metrics(labels, probabilities, dataset.fine_to_coarse))
    if calibrate:
        metrics["calibration"] = calibrate_temperature(labels, probabilities, head=head.name)
    return metrics
