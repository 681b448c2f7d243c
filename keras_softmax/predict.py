"""Classify image files with an exported model (a SavedModel directory, a ``.keras`` file or a run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from keras_softmax.export import load_keras_file
from keras_softmax.io import read_json


class PredictError(ValueError):
    """The model or an image cannot be read (one-line message)."""


@dataclasses.dataclass
class Classifier:
    """A loaded model: ``outputs(images)`` gives the head's output for uint8 images."""

    outputs: object
    info: dict

    @property
    def image_shape(self) -> tuple:
        return tuple(self.info.get("image_shape", (32, 32, 3)))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        out = np.asarray(self.outputs(images), dtype="float64")
        kind = self.info.get("output_kind")
        if kind is None:  # no metadata: log-probabilities are all <= 0 and exp() sums to 1
            kind = "log_probabilities" if np.all(out <= 0) else "probabilities"
        return np.exp(out) if kind == "log_probabilities" else out

    def class_name(self, index: int) -> str:
        names = self.info.get("class_names")
        return names[index] if names and index < len(names) else str(index)


def _read_info(*candidates: Path) -> dict:
    for path in candidates:
        if path.is_file():
            return read_json(path)
    return {}


def load_classifier(model_path) -> Classifier:
    """Load a SavedModel directory, a ``.keras`` file, or a run directory (its ``model.keras``)."""
    path = Path(model_path)
    if not path.exists():
        raise PredictError(f"model not found: {path}")
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            _explain_run_without_model(path)
            raise PredictError(f"{path} is neither a SavedModel directory nor a run directory")
        try:
            import tensorflow as tf
        except ImportError:
            raise PredictError("loading a SavedModel needs TensorFlow; pass the run's model.keras instead") from None
        loaded = tf.saved_model.load(str(path))
        info = _read_info(path / "assets.extra" / "model_info.json", path.parent / "model_info.json")
        return Classifier(outputs=lambda x: loaded.serve(tf.constant(x, dtype=tf.uint8)).numpy(), info=info)
    if path.suffix != ".keras":
        raise PredictError(f"{path}: expected a SavedModel directory, a .keras file or a run directory")
    try:
        model = load_keras_file(path)
    except Exception as error:  # a corrupt or foreign file: say so in one line
        raise PredictError(f"cannot load {path}: {error.__class__.__name__}: {error}") from None
    info = _read_info(path.parent / "model_info.json")
    return Classifier(outputs=lambda x: model.predict(x, verbose=0), info=info)


def _explain_run_without_model(path: Path) -> None:
    """A run directory with no ``model.keras`` yet: say it is unfinished and how to continue it."""
    from keras_softmax.training.rundir import RunDirectory

    run = RunDirectory(path)
    if not run.is_run:
        return
    failed = run.failed
    if failed is not None:
        where = f" at epoch {failed['epoch']}" if failed.get("epoch") else ""
        raise PredictError(f"{path} is a run that failed{where} ({failed.get('reason', 'see failed.json')}) and has "
                           f"no model yet; continue it with: keras-softmax train --resume --out {path}")
    state = run.read_state()
    done = f" after epoch {state['epoch']}" if state else ""
    raise PredictError(f"{path} is an unfinished run (stopped{done}, no model.keras yet); finish it with: "
                       f"keras-softmax train --resume --out {path}")


#: File name endings of the images a folder is searched for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def expand_image_paths(arguments) -> list[tuple[str, str | None]]:
    """Files, folders (their images, recursively, sorted) and globs -> ``[(path, problem or None)]``.

    A name that matches nothing is kept with its problem, so it gets its own line and the others
    are still classified.
    """
    import glob

    found: list[tuple[str, str | None]] = []
    for argument in map(str, arguments):
        path = Path(argument)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                found.append((argument, f"no images in folder {argument} (looked for {', '.join(IMAGE_SUFFIXES)})"))
            found += [(str(p), None) for p in images]
        elif path.exists():
            found.append((argument, None))
        elif glob.has_magic(argument):
            matches = sorted(m for m in glob.glob(argument, recursive=True) if Path(m).is_file())
            if not matches:
                found.append((argument, f"no file matches {argument}"))
            found += [(m, None) for m in matches]
        else:
            found.append((argument, f"image not found: {argument}"))
    return found


def read_image(name, image_shape) -> np.ndarray:
    """One image file as uint8 RGB, resized to ``image_shape[:2]``; ``PredictError`` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    height, width = image_shape[:2]
    try:
        with Image.open(name) as image:
            image = image.convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype="uint8")
    except FileNotFoundError:
        raise PredictError(f"image not found: {name}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise PredictError(f"cannot read image {name}: {reason}") from None


def read_images(paths, image_shape) -> np.ndarray:
    """Read image files as uint8 RGB, resized to ``image_shape[:2]`` (``PredictError`` at the first bad one)."""
    return np.stack([read_image(name, image_shape) for name in paths])


def predict_files(model_path, image_paths, top_k: int = 5) -> list[dict]:
    """Top-``k`` classes of each image: ``[{"image", "predictions": [{"class", "index", "probability"}]}]``.

    ``image_paths`` may name files, folders and globs. An image that cannot be read gets
    ``{"image", "error"}`` instead of predictions; the others are still classified.
    """
    if top_k < 1:
        raise PredictError(f"top-k must be >= 1 (got {top_k})")
    classifier = load_classifier(model_path)
    results: list[dict] = []
    good: list[tuple[int, np.ndarray]] = []
    for name, problem in expand_image_paths(image_paths):
        if problem is None:
            try:
                good.append((len(results), read_image(name, classifier.image_shape)))
            except PredictError as error:
                problem = str(error)
        results.append({"image": str(name), "error": problem} if problem else {"image": str(name)})
    if good:
        probabilities = classifier.probabilities(np.stack([image for _, image in good]))
        for (index, _), row in zip(good, probabilities):
            order = np.argsort(-row)[:top_k]
            results[index]["predictions"] = [
                {"class": classifier.class_name(int(i)), "index": int(i), "probability": float(row[i])}
                for i in order
            ]
    return results
