"""The whole job behind ``keras-softmax train``: train → evaluate → export → report, in one run directory.

This module sits above :mod:`keras_softmax.training`, :mod:`keras_softmax.evaluation` and
:mod:`keras_softmax.export` and is the only place that joins them, so every import points downward:
``training`` only trains, ``evaluation`` only measures, ``export`` only writes models.

>>> from keras_softmax.job import run_job
>>> from keras_softmax.training import resolve
>>> report = run_job(resolve(None, {"head": "log_gumbel"}), "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import types
from pathlib import Path

import keras
import numpy as np

from keras_softmax import environment
from keras_softmax.data import DATASETS, DatasetError, even_batch_size, load_dataset
from keras_softmax.export import ExportError, load_keras_file, save_keras, save_run_model
from keras_softmax.io import read_json
from keras_softmax.heads import get_head
from keras_softmax.training import distribute
from keras_softmax.training.config import TrainConfig, resolve
from keras_softmax.training.rundir import RunDirectory, RunDirError
from keras_softmax.training.trainer import TrainedRun, head_params_for, train


def import_evaluation() -> None:
    """Import what a run needs only after training: the evaluation and the report, with scikit-learn,
    scipy and matplotlib (~1 s on the 2-core CPU, more from a fresh machine's cold disk). ``run_job``
    does it while the steps compile ahead (``train(while_compiling=...)``), otherwise where it is used;
    the command line keeps Keras from importing scikit-learn and matplotlib before the first compile
    (``keras_softmax_cli.defer_imports``)."""
    import keras_softmax.evaluation.evaluate  # noqa: F401
    import keras_softmax.evaluation.report  # noqa: F401


def run_job(config: TrainConfig | None, out, *, resume: bool = False, overwrite: bool = False,
            log=print) -> dict:
    """Train ``config`` into ``out``, evaluate on the validation split, export, write the report.

    A run with no validation split (``val_split = 0``: every training image trained on, the settings
    chosen on a validation split before) is evaluated on its dataset's test split instead, without a
    temperature fit (a temperature is fit on validation only).

    With ``resume``, continue the unfinished run in ``out`` (``config`` may be None). Returns the
    report (``report.json``'s content). Raises the package's user errors (``RunDirError``,
    ``DatasetError``, ``ConfigError``) before any work where it can.

    Trained on several devices, the model is evaluated and exported as a plain one-device copy,
    the same as after a one-device run. With several processes only process 0 does that; the
    others save their final ``model.keras`` in their own directory (see ``distribute.process_out``)
    and return ``{"process_id": k, "model": path}``.
    """
    trained = train(config, out, resume=resume, overwrite=overwrite, log=log, while_compiling=import_evaluation)
    from keras_softmax.evaluation.evaluate import evaluate_model
    from keras_softmax.evaluation.report import write_report

    config, run_dir = trained.config, trained.run_dir
    model = distribute.local_copy(trained.model, trained.placement)
    if not trained.placement.is_chief:
        save_keras(model, run_dir.model_keras)
        run_dir.drop_checkpoint_weights()
        log(f"process {trained.placement.process_id}: trained; its weights are in {run_dir.model_keras}, "
            f"the report is process 0's")
        return {"process_id": trained.placement.process_id, "model": str(run_dir.model_keras)}
    split = "val" if len(trained.dataset.y_val) else "test"
    log("evaluating on the validation split" if split == "val" else
        "evaluating on the test split (val_split = 0: every training image was trained on)")
    report = evaluate_model(model, trained.head, trained.dataset, split,
                            batch_size=even_batch_size(len(trained.dataset.split(split)[1]), trained.batch_size),
                            tta_flip=config.tta_flip, calibrate=split == "val")
    save_run_model(model, trained.head, trained.dataset, run_dir, log=log)
    report.update(run_summary(trained))
    report["wall_seconds"] = time.perf_counter() - trained.started
    history = {k: [r.get(k) for r in trained.history] for k in ("loss", "val_loss", "accuracy", "val_accuracy")}
    report = write_report(run_dir.path, report, history=history, class_names=trained.dataset.class_names)
    run_dir.drop_checkpoint_weights()
    log(f"done: {split} accuracy {100 * report['accuracy']:.2f}% (top-5 {100 * report['top5_accuracy']:.2f}%) "
        f"after {report['wall_seconds']:.1f}s; report: {Path(run_dir.path) / 'report.md'}")
    return report


def run_summary(trained: TrainedRun) -> dict:
    """Timing, size and provenance entries of the report."""
    config, rows = trained.config, trained.history
    epoch_seconds = [r["epoch_seconds"] for r in rows]
    steady = epoch_seconds[1:] or epoch_seconds
    steady_seconds = statistics.median(steady) if steady else math.nan
    summary = {
        "head": config.head,
        "head_params": dict(config.head_params),
        "dataset": trained.dataset.name,
        "split_sizes": trained.dataset.sizes(),
        "seed": config.seed,
        "labels": config.labels,
        "loss_pairing": config.loss,
        "epochs": len(rows),
        "epoch_seconds": epoch_seconds,
        "steady_epoch_seconds": steady_seconds,
        "compile_seconds": max(0.0, epoch_seconds[0] - steady_seconds) if epoch_seconds else None,
        "train_seconds": trained.train_seconds,
        "images_per_second": (trained.images_per_epoch / steady_seconds
                              if steady_seconds and steady_seconds > 0 else None),
        "num_params": int(trained.model.count_params()),
        "precision": config.precision,
        **trained.placement.summary(),
        "config": config.to_dict(),
    }
    summary.update(environment.describe())
    return summary


def _run_class_names(run: RunDirectory, config: TrainConfig, own_data):
    """The class names the run's model was trained on: ``(names, dataset or None)``.

    From ``model_info.json``; a run written before it existed falls back to loading its own dataset.
    """
    if run.model_info.is_file():
        names = read_json(run.model_info).get("class_names")
        if names:
            return [str(n) for n in names], None
    if own_data is None:
        own_data = load_dataset(config.dataset, val_split=config.val_split, seed=config.seed,
                                limit=config.limit or None, labels=config.labels)
    return [str(n) for n in own_data.class_names], own_data


def evaluate_run(run_dir, *, dataset: str | None = None, split: str = "val", tta_flip: bool | None = None,
                 calibrate: bool = False):
    """Evaluate ``run_dir``'s ``model.keras`` and write ``run_dir/evaluations/<dataset>-<split>/``.

    The validation split is the run's own (same seed and size). With ``calibrate``, the report holds
    ``calibration``: a temperature fit and measured on ``split`` (GUIDE §9; the run's own
    ``report.json`` always has one for the validation split). Returns ``(report, directory)``.
    """
    from keras_softmax.evaluation.evaluate import RestrictedModel, evaluate_model, match_classes
    from keras_softmax.evaluation.report import read_report, write_report

    run = RunDirectory(run_dir)
    if not run.config.is_file():
        raise RunDirError(f"{run.path} is not a run directory (config.toml is missing)")
    if not run.model_keras.is_file():
        raise ExportError(f"no trained model in {run.path} (model.keras is missing)")
    config = resolve(run.config)
    recorded = Path(config.dataset).expanduser()
    if not dataset and config.dataset not in DATASETS and not recorded.is_absolute() and not recorded.exists():
        raise DatasetError(f"dataset path not found: {config.dataset} (the run recorded it relative to the "
                           "directory it was trained in: run this from there, or pass --dataset)")
    data = load_dataset(dataset or config.dataset, val_split=config.val_split, seed=config.seed,
                        limit=config.limit or None, labels=config.labels)
    run_names, run_data = _run_class_names(run, config, data if not dataset else None)
    columns = match_classes(run_names, data.class_names)  # by name; unknown names refused in one line
    subset = columns != list(range(len(run_names)))
    if run_data is None and subset:  # the head as trained: the run's classes, not the dataset's
        info = read_json(run.model_info)
        run_data = types.SimpleNamespace(num_classes=len(run_names), fine_to_coarse=info.get("fine_to_coarse"),
                                         y_train=np.arange(len(run_names)))
    head = get_head(config.head, **head_params_for(config, run_data or data))
    model = load_keras_file(run.model_keras)
    if subset:  # another dataset: score its classes, found by name, as a K-way classifier
        model = RestrictedModel(model, columns, head.output_kind)
        data = dataclasses.replace(data, fine_to_coarse=None)
    tta = config.tta_flip if tta_flip is None else tta_flip
    # a batch that divides the split where one is near: one compiled program for the whole split
    batch_size = even_batch_size(len(data.split(split)[1]), config.batch_size)
    report = evaluate_model(model, head, data, split, batch_size=batch_size, tta_flip=tta, calibrate=calibrate)
    if subset:
        report["classes_scored"] = {"dataset": len(columns), "model": len(run_names),
                                    "rule": "matched by name; the model's probabilities restricted to these "
                                            "classes and renormalised"}
    trained = read_report(run.path) if run.finished else {}
    for key in ("epoch_seconds", "train_seconds", "images_per_second", "num_params", "head", "head_params",
                "seed", "labels", "loss_pairing", "backend", "device", "versions", "compile_seconds", "devices",
                "per_device_batch", "num_processes"):
        if key in trained:
            report.setdefault(key, trained[key])
    report.setdefault("num_params", int(model.count_params()))
    report.setdefault("head", config.head)
    report.setdefault("head_params", dict(config.head_params))
    report.setdefault("seed", config.seed)
    for key in ("epoch_seconds", "train_seconds", "images_per_second"):
        report.setdefault(key, None)
    report["dataset"] = data.name
    report["split_sizes"] = data.sizes()
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(data.name).name)
    where = run.path / "evaluations" / f"{label}-{split}"
    report = write_report(where, report, class_names=data.class_names)
    return report, where
