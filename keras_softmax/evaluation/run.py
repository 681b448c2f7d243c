"""``evaluate_run``: recompute a finished run's report on any dataset and split."""

from __future__ import annotations

from pathlib import Path


def evaluate_run(run_dir, *, dataset: str | None = None, split: str = "val", tta_flip: bool | None = None):
    """Evaluate ``run_dir``'s ``model.keras`` and write ``run_dir/evaluations/<dataset>-<split>/``.

    The validation split is the run's own (same seed and size). Returns ``(report, directory)``.
    """
    import keras

    import keras_softmax  # noqa: F401  registers heads and losses
    from keras_softmax.data import load_dataset
    from keras_softmax.evaluation.evaluate import evaluate_model
    from keras_softmax.evaluation.report import read_report, write_report
    from keras_softmax.export import ExportError
    from keras_softmax.heads import get_head
    from keras_softmax.training.config import resolve
    from keras_softmax.training.rundir import RunDirectory, RunDirError
    from keras_softmax.training.trainer import head_params_for

    run = RunDirectory(run_dir)
    if not run.config.is_file():
        raise RunDirError(f"{run.path} is not a run directory (config.toml is missing)")
    if not run.model_keras.is_file():
        raise ExportError(f"no trained model in {run.path} (model.keras is missing)")
    config = resolve(run.config)
    data = load_dataset(dataset or config.dataset, val_split=config.val_split, seed=config.seed,
                        limit=config.limit or None)
    head = get_head(config.head, **head_params_for(config, data))
    model = keras.saving.load_model(str(run.model_keras))
    tta = config.tta_flip if tta_flip is None else tta_flip
    report = evaluate_model(model, head, data, split, batch_size=config.batch_size, tta_flip=tta)
    trained = read_report(run.path) if run.finished else {}
    for key in ("epoch_seconds", "train_seconds", "images_per_second", "num_params", "head", "head_params",
                "seed", "backend", "device", "versions", "compile_seconds"):
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
