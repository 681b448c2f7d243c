"""Scoring a finished study run on the official test split, once: ``runs/<run>/test.json``.

Protocol (GUIDE §9): everything in a study — recipe, grid point, head parameters — is chosen on the
validation split held out from the training images. Only a run that has finished training is scored
on the test split, once, and nothing reads a test figure to choose anything: the report shows the test
columns beside the validation ones, and :func:`keras_softmax.study.results.best_points` reads only
validation figures.

The test images are a class-folder tree or ``.tar.gz`` (``test/<class>/*.jpg``, or ``<class>/*.jpg``),
e.g. ``../shared/data/cifar100-test-jpg.tar.gz``. Class ``i`` is the i-th class of the run's own
training data, matched by folder name, so the labels mean the same in both; a run of the superclass
labels is scored on the superclass of each test image's class.

``test.json`` holds the figures only (no per-image data): ``accuracy``, ``top5_accuracy``,
``precision_macro``, ``recall_macro``, ``f1_macro``, ``nll`` (p floored at 1e-12), ``ece`` (15 bins),
``ece_val_temperature`` (after the temperature fit on the validation split, where the run has one),
the superclass accuracies where the data have a fine→coarse map, ``num_examples``, and the test
archive's name, size and sha256.

    python -m keras_softmax.study.testsplit RUN_DIR TEST_DATASET
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["TEST_FILE", "read_test_images", "score_run", "score_figures"]

TEST_FILE = "test.json"


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_test_images(source, class_names) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 32, 32, 3), labels int32)`` of the test tree ``source``, labelled by
    ``class_names`` (the run's training classes, matched by folder name)."""
    from keras_softmax.data.sources import DatasetError, _decode_all, _list_directory, _read_tar

    path = Path(source).expanduser()
    if path.is_dir():
        members = _list_directory(path)
    elif path.is_file():
        members = _read_tar(path)
    else:
        raise DatasetError(f"test dataset not found: {source}")
    items = []
    for parts, payload in members:
        if len(parts) > 2 and parts[0] == "train":
            continue  # a tree holding both splits: only its test images
        if len(parts) > 2 and parts[0] == "test":
            parts = parts[1:]
        if len(parts) != 2:
            continue
        items.append((parts[0], "/".join(parts), payload))
    if not items:
        raise DatasetError(f"no test images in {source}: expected test/<class>/*.jpg or <class>/*.jpg")
    index = {str(name): i for i, name in enumerate(class_names)}
    unknown = sorted({c for c, _, _ in items} - set(index))
    if unknown:
        raise DatasetError(f"test classes not among the run's classes in {source}: {', '.join(unknown[:5])}")
    items.sort(key=lambda item: item[1])
    images = _decode_all([(f"{source}:{name}", payload) for _, name, payload in items])
    labels = np.array([index[c] for c, _, _ in items], dtype=np.int32)
    return images, labels


def score_figures(labels, probabilities, *, class_names=None, fine_to_coarse=None,
                 temperature: float | None = None) -> dict:
    """The figures of ``test.json`` from the predicted distributions (rows sum to 1)."""
    from keras_softmax.evaluation.calibration import apply_temperature, negative_log_likelihood
    from keras_softmax.evaluation.evaluate import coarse_metrics
    from keras_softmax.evaluation.metrics import compute_metrics, expected_calibration_error

    metrics = compute_metrics(labels, probabilities, class_names=class_names)
    figures = {key: metrics[key] for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro",
                                              "f1_macro", "ece") if key in metrics}
    figures["nll"] = float(negative_log_likelihood(labels, probabilities))
    if temperature:
        figures["ece_val_temperature"] = float(expected_calibration_error(
            labels, apply_temperature(probabilities, temperature)))
    if fine_to_coarse is not None:
        figures.update(coarse_metrics(labels, probabilities, fine_to_coarse))
    figures["num_examples"] = int(len(labels))
    return figures


def score_run(run_dir, test_dataset) -> dict:
    """Score ``run_dir``'s ``model.keras`` on ``test_dataset`` and write ``run_dir/test.json``."""
    import keras

    from keras_softmax import get_head
    from keras_softmax.data import even_batch_size, load_dataset
    from keras_softmax.data.sources import to_coarse
    from keras_softmax.evaluation.calibration import temperature_applicable
    from keras_softmax.evaluation.evaluate import predict_probabilities
    from keras_softmax.io import write_json
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import head_params_for

    run = Path(run_dir)
    if not (run / "report.json").is_file():
        raise SystemExit(f"{run} has not finished training (no report.json): a test figure is only for a "
                         "finished run")
    model_path = run / "model.keras"
    if not model_path.is_file():
        raise SystemExit(f"no trained model in {run} (model.keras is missing): retrain it to score it")
    config = resolve(run / "config.toml")
    data = load_dataset(config.dataset, val_split=config.val_split, seed=config.seed, limit=config.limit or None,
                        labels="fine")
    images, labels = read_test_images(test_dataset, data.class_names)
    data = dataclasses.replace(data, x_test=images, y_test=labels)
    if config.labels == "coarse":
        data = to_coarse(data)
    images, labels = data.split("test")
    head = get_head(config.head, **head_params_for(config, data))
    model = keras.saving.load_model(str(model_path))
    # a batch that divides the 10,000 images where one is near (512 -> 500): one compiled program, not two
    probabilities = predict_probabilities(model, images, head.output_kind,
                                          batch_size=even_batch_size(len(labels), config.batch_size),
                                          tta_flip=config.tta_flip)
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    calibration = report.get("calibration") or {}
    # a run's report of before the rule counted entmax_alpha and drop_lowest may hold a temperature for them
    applicable, _ = temperature_applicable(config.head, head.params.get("drop_lowest", 0.0))
    temperature = calibration.get("temperature") if calibration.get("applicable") and applicable else None
    figures = score_figures(labels, probabilities, class_names=data.class_names, fine_to_coarse=data.fine_to_coarse,
                           temperature=temperature)
    path = Path(test_dataset)
    figures["split"] = "test"
    figures["test_dataset"] = {"name": path.name, "bytes": path.stat().st_size if path.is_file() else None,
                               "sha256": _sha256(path)}
    figures["protocol"] = ("scored once after training finished; chosen on validation, never on this split")
    write_json(run / TEST_FILE, figures)
    return figures


def main(argv=None) -> None:
    """Score one run: ``python -m keras_softmax.study.testsplit RUN_DIR TEST_DATASET`` (a study's own
    scoring process is ``python -m keras_softmax_cli.child score ...``, which also dies with the study)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m keras_softmax.study.testsplit RUN_DIR TEST_DATASET")
    figures = score_run(args[0], args[1])
    print(f"done: test top-1 {100 * figures['accuracy']:.2f}% on {figures['num_examples']} images "
          f"({os.path.basename(args[1])})")


if __name__ == "__main__":
    main()
