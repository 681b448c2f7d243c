"""A tiny class-folder dataset for the end-to-end study tests: three classes of 32×32 images whose mean
brightness tells them apart, so that one epoch of a tiny network learns something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("apple", "bee", "cat")


def write_class_images(root: Path, counts=(("train", 24), ("test", 6))) -> Path:
    """``root/<split>/<class>/<k>.png`` for each ``(split, images per class)`` of ``counts``; returns ``root``."""
    rng = np.random.default_rng(0)
    for split, count in counts:
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = np.clip(rng.normal(60 + 70 * c, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    return root
