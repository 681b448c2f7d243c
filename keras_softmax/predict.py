"""Classify image files with an exported model (a SavedModel directory, a ``.keras`` file or a run)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np


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
            return json.loads(path.read_text(encoding="utf-8"))
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
        model = keras.saving.load_model(str(path))
    except Exception as error:  # a corrupt or foreign file: say so in one line
        raise PredictError(f"cannot load {path}: {error.__class__.__name__}: {error}") from None
    info = _read_info(path.parent / "model_info.json")
    return Classifier(outputs=lambda x: model.predict(x, verbose=0), info=info)


def read_images(paths, image_shape) -> np.ndarray:
    """Read image files as uint8 RGB, resized to ``image_shape[:2]``."""
    from PIL import Image, UnidentifiedImageError

    height, width = image_shape[:2]
    images = []
    for name in paths:
        try:
            with Image.open(name) as image:
                image = image.convert("RGB")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                images.append(np.asarray(image, dtype="uint8"))
        except FileNotFoundError:
            raise PredictError(f"image not found: {name}") from None
        except (UnidentifiedImageError, OSError) as error:
            raise PredictError(f"cannot read image {name}: {error}") from None
    return np.stack(images)


def predict_files(model_path, image_paths, top_k: int = 5) -> list[dict]:
    """Top-``k`` classes of each image: ``[{"image", "predictions": [{"class", "index", "probability"}]}]``."""
    if top_k < 1:
        raise PredictError(f"top-k must be >= 1 (got {top_k})")
    classifier = load_classifier(model_path)
    images = read_images(image_paths, classifier.image_shape)
    probabilities = classifier.probabilities(images)
    results = []
    for name, row in zip(image_paths, probabilities):
        order = np.argsort(-row)[:top_k]
        results.append({
            "image": str(name),
            "predictions": [
                {"class": classifier.class_name(int(i)), "index": int(i), "probability": float(row[i])}
                for i in order
            ],
        })
    return results
