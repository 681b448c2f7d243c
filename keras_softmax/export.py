"""Export a trained model: ``model.keras``, a TensorFlow SavedModel, or ONNX.

The SavedModel's serving function takes uint8 images ``(N, H, W, 3)`` and returns the head's output
at inference (no training noise). TensorFlow is imported only here and only when exporting to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras

from keras_softmax import environment, io
from keras_softmax.training.rundir import RunDirectory

FORMATS = ("saved_model", "keras", "onnx")


class ExportError(RuntimeError):
    """The export cannot be made here (one-line message)."""


def model_info(head, dataset) -> dict:
    """What a reader of an exported model needs: class names, head, output kind, image shape."""
    return {
        "head": head.name,
        "head_params": head.params,
        "output_kind": head.output_kind,
        "class_names": list(dataset.class_names),
        "image_shape": list(dataset.image_shape),
        "dataset": dataset.name,
    }


def save_keras(model, path) -> Path:
    """Save ``model`` as a ``.keras`` file, atomically."""
    with io.atomic_path(path, suffix=".keras") as tmp:
        model.save(str(tmp))
    return Path(path)


def export_saved_model(model, path, info: dict | None = None) -> Path:
    """Export a TensorFlow SavedModel (``serve``: uint8 images → head output) into ``path``.

    Written into a temporary directory and renamed, so ``path`` is complete or absent.
    """
    if not environment.tensorflow_available():
        raise ExportError("TensorFlow is not installed here; install it and run `keras-softmax export RUN_DIR`")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    if info is not None:
        (tmp / "assets.extra").mkdir(exist_ok=True)
        io.write_json(tmp / "assets.extra" / "model_info.json", info)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def export_onnx(model, path) -> Path:
    # A model loaded from a .keras file has never been called, and Keras then refuses to infer the
    # input signature ("The model provided has never called"): give it the model's input.
    signature = [model.inputs[0]] if len(getattr(model, "inputs", None) or ()) == 1 else None
    try:
        with io.atomic_path(path, suffix=".onnx") as tmp:
            model.export(str(tmp), format="onnx", verbose=False, input_signature=signature)
    except ImportError as error:
        raise ExportError(f"ONNX export needs extra packages: {error}") from None
    return Path(path)


def save_run_model(model, head, dataset, run_dir, log=print) -> None:
    """Write ``model.keras``, ``model_info.json`` and (when TensorFlow is here) ``saved_model/``."""
    info = model_info(head, dataset)
    io.write_json(run_dir.model_info, info)
    save_keras(model, run_dir.model_keras)
    if environment.tensorflow_available():
        export_saved_model(model, run_dir.saved_model, info)
    else:
        log("TensorFlow is not installed: wrote model.keras only; make the SavedModel later with "
            f"`keras-softmax export {run_dir.path}` where TensorFlow is installed")


def export_run(run_dir, fmt: str = "saved_model", log=print) -> Path:
    """Export the finished run in ``run_dir`` to ``fmt`` (one of ``FORMATS``); return the path."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    run = RunDirectory(run_dir)
    if not run.model_keras.is_file():
        raise ExportError(f"no trained model in {run.path} (model.keras is missing)")
    if fmt == "keras":
        return run.model_keras
    model = keras.saving.load_model(str(run.model_keras))
    info = json.loads(run.model_info.read_text()) if run.model_info.is_file() else None
    if fmt == "saved_model":
        return export_saved_model(model, run.saved_model, info)
    return export_onnx(model, run.path / "model.onnx")
