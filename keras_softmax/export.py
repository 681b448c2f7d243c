"""Export a trained model: ``model.keras``, a TensorFlow SavedModel, or ONNX.

The SavedModel's serving function takes uint8 images ``(N, H, W, 3)`` and returns the head's output
at inference (no training noise). TensorFlow is imported only here and only when exporting to it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import keras

from keras_softmax import environment, io
from keras_softmax.models.walk import all_layers
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


def export_saved_model(model, path, info: dict | None = None, keras_file=None) -> Path:
    """Export a TensorFlow SavedModel (``serve``: uint8 images → head output) into ``path``.

    Written into a temporary directory and renamed, so ``path`` is complete or absent. On the PyTorch
    backend Keras can only export through ``torch_xla``; there the SavedModel is made from
    ``keras_file`` (the model's ``.keras`` file, which is the same on every backend) by a
    TensorFlow-backend subprocess, and without ``keras_file`` it is an :class:`ExportError`.
    """
    if not environment.tensorflow_available():
        raise ExportError("TensorFlow is not installed here; install it and run `keras-softmax export RUN_DIR`")
    if keras.backend.backend() == "torch":
        if keras_file is None:
            raise ExportError("a SavedModel cannot be exported from the torch backend in-process; save the "
                              "model as .keras and export that file (`keras-softmax export RUN_DIR`)")
        return _export_in_tensorflow("saved_model", keras_file, path, info)
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


#: What ``model.export(format="onnx")`` imports on each backend (module name, distribution).
ONNX_CONVERTERS = {
    "tensorflow": [("onnx", "onnx"), ("tf2onnx", "tf2onnx")],
    "jax": [("onnx", "onnx"), ("jax2onnx", "jax2onnx")],
    "torch": [("onnx", "onnx"), ("onnxscript", "onnxscript")],
}
INSTALL_ONNX = "pip install 'keras-softmax[onnx]'"


def missing_onnx_packages(backend: str | None = None) -> list[str]:
    """The distributions ONNX export needs on ``backend`` (default: the current one) that are absent."""
    import importlib.util

    needs = ONNX_CONVERTERS.get(backend or keras.backend.backend(), [("onnx", "onnx")])
    return [dist for module, dist in needs if importlib.util.find_spec(module) is None]


def export_onnx(model, path, keras_file=None) -> Path:
    """Export ``model``'s inference function (uint8 images → head output) as an ONNX file at ``path``.

    TensorFlow converts with tf2onnx, JAX with jax2onnx (the ``onnx`` extra). jax2onnx writes a 2-D
    max-pool as a 4-D ONNX ``MaxPool`` that onnxruntime cannot run ("Unsupported pooling size"), so on
    JAX each max-pool that tiles its input (the ResNet-12's 2x2, stride 2) is exported as the same
    maximum written as a reshape and a reduction (:func:`onnx_ready`); the model itself is unchanged.
    On PyTorch, with ``keras_file`` given and TensorFlow installed, the file is converted by a
    TensorFlow-backend subprocess (tf2onnx), the same graph as on TensorFlow.
    """
    backend = keras.backend.backend()
    if backend == "torch" and keras_file is not None and environment.tensorflow_available():
        return _export_in_tensorflow("onnx", keras_file, path)
    missing = missing_onnx_packages(backend)
    if missing:
        raise ExportError(f"ONNX export needs extra packages ({', '.join(missing)} on the {backend} backend): "
                          f"{INSTALL_ONNX}")
    # A model loaded from a .keras file has never been called, and Keras then refuses to infer the
    # input signature ("The model provided has never called"): give it the model's input.
    signature = [model.inputs[0]] if len(getattr(model, "inputs", None) or ()) == 1 else None
    if backend == "jax":
        model = onnx_ready(model)
    lean = backend == "jax" and _jax2onnx_lax_plugins_only()
    try:
        try:
            with io.atomic_path(path, suffix=".onnx") as tmp:
                model.export(str(tmp), format="onnx", verbose=False, input_signature=signature)
        except Exception:
            if not lean:
                raise
            _jax2onnx_all_plugins()  # a primitive outside jax2onnx's jax plugins: load them all, once more
            with io.atomic_path(path, suffix=".onnx") as tmp:
                model.export(str(tmp), format="onnx", verbose=False, input_signature=signature)
    except ImportError as error:
        raise ExportError(f"ONNX export needs extra packages ({error}): {INSTALL_ONNX}") from None
    return Path(path)


def _jax2onnx_lax_plugins_only() -> bool:
    """Load only jax2onnx's plugins for JAX's own primitives; True if that was done here.

    jax2onnx's first conversion imports every plugin it ships, flax, equinox and model examples
    included, and those compile dozens of JAX programs as they import: about 30 s of CPU before a
    Keras model (which lowers to ``jax.lax``/``jax.numpy`` primitives only) is converted. Loading
    the ``jax`` plugin tree alone made a ResNet-12 export about five times faster. If jax2onnx's
    layout is not the one this knows, nothing is done and jax2onnx loads everything itself.
    """
    try:
        from jax2onnx.plugins import plugin_system
    except ImportError:
        return False
    root = Path(plugin_system.__file__).parent / "jax"
    if (getattr(plugin_system, "_already_imported_plugins", True) or not hasattr(plugin_system, "_import_tree")
            or not root.is_dir()):
        return False
    plugin_system._import_tree(root, "jax2onnx.plugins.jax")
    plugin_system._already_imported_plugins = True
    return True


def _jax2onnx_all_plugins() -> None:
    from jax2onnx.plugins import plugin_system

    plugin_system._already_imported_plugins = False
    plugin_system.import_all_plugins()


class _TiledMaxPool(keras.layers.Layer):
    """``MaxPooling2D(pool, strides=pool, padding="valid")`` (channels last) as a reshape and a max.

    The same function as the layer it replaces (the maximum of each non-overlapping window; trailing
    rows and columns that fill no window are dropped), written without ``reduce_window``. Used only
    to export (:func:`onnx_ready`), never saved.
    """

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size)

    def call(self, x):
        ph, pw = self.pool_size
        _, height, width, channels = x.shape
        rows, cols = height // ph, width // pw
        x = x[:, : rows * ph, : cols * pw, :]
        x = keras.ops.reshape(x, (-1, rows, ph, cols, pw, channels))
        return keras.ops.max(x, axis=(2, 4))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // self.pool_size[0], width // self.pool_size[1], channels)


def _tiles(layer) -> bool:
    return (isinstance(layer, keras.layers.MaxPooling2D) and tuple(layer.strides) == tuple(layer.pool_size)
            and layer.padding == "valid" and layer.data_format == "channels_last"
            and None not in tuple(layer.input.shape)[1:])


def onnx_ready(model):
    """``model`` with every tiling ``MaxPooling2D`` replaced by :class:`_TiledMaxPool` (shared weights).

    Every other layer is the model's own object, so the copy computes the same function. A model
    that is not functional, or has no such pool, is returned as it is.
    """
    if not isinstance(model, keras.Model) or not any(_tiles(layer) for layer in all_layers(model)):
        return model

    def swap(layer):
        return _TiledMaxPool(layer.pool_size, name=layer.name) if _tiles(layer) else layer

    try:
        return keras.models.clone_model(model, clone_function=swap, recursive=True)
    except Exception:  # subclassed models cannot be cloned; export them as they are
        return model


def _export_in_tensorflow(fmt: str, keras_file, path, info: dict | None = None) -> Path:
    """Export ``keras_file`` to ``fmt`` in a subprocess on the TensorFlow backend; return ``path``.

    A ``.keras`` file holds the same weights and config on every backend, so this is how the torch
    backend (whose own SavedModel export needs ``torch_xla``) gets a SavedModel and an ONNX file.
    """
    import os
    import subprocess
    import sys
    import tempfile

    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory() as scratch:
        info_file = Path(scratch) / "info.json"
        if info is not None:
            io.write_json(info_file, info)
        args = [sys.executable, "-c", "from keras_softmax.export import _export_file; _export_file()",
                fmt, str(keras_file), str(path), str(info_file) if info is not None else ""]
        result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
        raise ExportError(f"{fmt} export on the TensorFlow backend failed: {lines[-1] if lines else result.returncode}")
    return Path(path)


def _export_file() -> None:
    """Subprocess entry of :func:`_export_in_tensorflow`: ``FORMAT KERAS_FILE PATH [INFO_JSON]``."""
    import sys

    import keras_softmax  # noqa: F401 - registers the package's layers, losses and metrics

    fmt, keras_file, path, info_file = sys.argv[1:5]
    model = load_keras_file(keras_file, compile=False)
    info = json.loads(Path(info_file).read_text()) if info_file else None
    try:
        if fmt == "saved_model":
            export_saved_model(model, path, info)
        else:
            export_onnx(model, path)
    except ExportError as error:
        sys.exit(str(error))


def save_run_model(model, head, dataset, run_dir, log=print) -> None:
    """Write ``model.keras``, ``model_info.json`` and (when TensorFlow is here) ``saved_model/``.

    The SavedModel is a convenience beside ``model.keras``: when it cannot be made here, this says so
    in one line and returns (the run's report is still written); ``keras-softmax export RUN_DIR``
    makes it later.
    """
    info = model_info(head, dataset)
    io.write_json(run_dir.model_info, info)
    save_keras(model, run_dir.model_keras)
    if not environment.tensorflow_available():
        log("TensorFlow is not installed: wrote model.keras only; make the SavedModel later with "
            f"`keras-softmax export {run_dir.path}` where TensorFlow is installed")
        return
    try:
        export_saved_model(model, run_dir.saved_model, info, keras_file=run_dir.model_keras)
    except Exception as error:  # noqa: BLE001 - the trained model is safe in model.keras
        message = " ".join(str(error).split()) or error.__class__.__name__
        log(f"could not write saved_model/ on the {keras.backend.backend()} backend "
            f"({error.__class__.__name__}: {message[:200]}); model.keras is written: export it later with "
            f"`keras-softmax export {run_dir.path}`")


def load_keras_file(path, **kwargs):
    """``keras.saving.load_model`` of a ``.keras`` file; one that is not a zip archive (truncated or
    overwritten) is said to be corrupt, where Keras would call it "not found"."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ExportError(f"{path} is not a valid .keras file (truncated or corrupt); retrain the run or restore "
                          "the file")
    return keras.saving.load_model(str(path), **kwargs)


def export_run(run_dir, fmt: str = "saved_model", log=print) -> Path:
    """Export the finished run in ``run_dir`` to ``fmt`` (one of ``FORMATS``); return the path."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    run = RunDirectory(run_dir)
    if not run.model_keras.is_file():
        raise ExportError(f"no trained model in {run.path} (model.keras is missing)")
    if fmt == "keras":
        return run.model_keras
    model = load_keras_file(run.model_keras, compile=False)
    info = json.loads(run.model_info.read_text()) if run.model_info.is_file() else None
    if fmt == "saved_model":
        return export_saved_model(model, run.saved_model, info, keras_file=run.model_keras)
    return export_onnx(model, run.path / "model.onnx", keras_file=run.model_keras)
