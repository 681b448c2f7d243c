"""Classify image files with an exported SavedModel, using plain TensorFlow (no keras-softmax import).

    python examples/classify_with_saved_model.py runs/<run>/saved_model image1.jpg [image2.png ...]

The serving function takes uint8 images (N, 32, 32, 3) and returns the head's output: probabilities,
or log-probabilities for log heads (``assets.extra/model_info.json`` says which, and holds the class
names).
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image


def main(saved_model: str, *images: str) -> None:
    info_path = Path(saved_model) / "assets.extra" / "model_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    height, width = info.get("image_shape", [32, 32, 3])[:2]
    batch = np.stack([
        np.asarray(Image.open(name).convert("RGB").resize((width, height)), dtype="uint8") for name in images
    ])
    model = tf.saved_model.load(saved_model)
    outputs = model.serve(tf.constant(batch)).numpy()
    if info.get("output_kind") == "log_probabilities":
        outputs = np.exp(outputs)
    names = info.get("class_names") or [str(i) for i in range(outputs.shape[-1])]
    for name, row in zip(images, outputs):
        best = np.argsort(-row)[:3]
        print(name + ": " + ", ".join(f"{names[i]} {row[i]:.1%}" for i in best))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], *sys.argv[2:])
