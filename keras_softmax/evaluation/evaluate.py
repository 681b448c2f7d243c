"""Run a trained model over a split and turn its outputs into the report's metrics."""

from __future__ import annotations

import numpy as np

from keras_softmax.evaluation.metrics import compute_metrics


def predict_probabilities(model, images, output_kind: str, *, batch_size: int = 256, tta_flip: bool = False):
    """Class probabilities of ``images`` (uint8, NHWC) at inference, optionally averaged with flips."""
    outputs = [np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype="float64")]
    if tta_flip:
        outputs.append(np.asarray(model.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0),
                                  dtype="float64"))
    probabilities = [np.exp(o) if output_kind == "log_probabilities" else o for o in outputs]
    return np.mean(probabilities, axis=0)


def evaluate_model(model, head, dataset, split: str = "val", *, batch_size: int = 256, tta_flip: bool = False) -> dict:
    """Metrics of ``model`` on ``dataset``'s ``split``, plus the matching loss on that split."""
    images, labels = dataset.split(split)
    probabilities = predict_probabilities(model, images, head.output_kind, batch_size=batch_size, tta_flip=tta_flip)
    metrics = compute_metrics(labels, probabilities, class_names=dataset.class_names)
    outputs = np.log(np.maximum(probabilities, 1e-45)) if head.output_kind == "log_probabilities" else probabilities
    metrics["loss"] = float(np.asarray(head.loss(labels, outputs.astype("float32"))))
    metrics["split"] = split
    metrics["tta_flip"] = bool(tta_flip)
    return metrics
