"""Fixtures of the end-to-end tests: a private cache, and tiny trained runs shared across tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from .helpers import TINY, assert_ok, invoke


@dataclasses.dataclass
class Run:
    """A run directory made by ``keras-softmax train`` and what the command printed."""

    path: Path
    stdout: str
    output: str


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Point ``KERAS_SOFTMAX_CACHE`` at a temporary directory for the whole session (not $HOME)."""
    path = tmp_path_factory.mktemp("keras_softmax_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("KERAS_SOFTMAX_CACHE", str(path))
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, cache_dir) -> Run:
    """A finished tiny run: log_softmax on 300 digits, 2 epochs (read-only for the tests).

    It is trained with ``--overwrite`` into a directory that already holds a finished run (a
    ``report.json`` and a plot), which it must replace completely.
    """
    from keras_softmax.training.rundir import RunDirectory

    path = tmp_path_factory.mktemp("runs") / "shared"
    RunDirectory(path).prepare(resume=False, overwrite=False)  # an earlier run claimed it
    (path / "report.json").write_text(json.dumps({"accuracy": 0.5, "head": "softmax"}))
    (path / "plots").mkdir()
    (path / "plots" / "left-over.png").write_bytes(b"from the old run")
    result = assert_ok(invoke("train", "--head", "log_softmax", "--epochs", "2", *TINY, "--out", path,
                              "--overwrite"))
    return Run(path, result.stdout, result.output)


@pytest.fixture(scope="session")
def digit_pngs(tmp_path_factory, shared_run):
    """The first validation images of the shared run as PNG files: ``(paths, images, labels)``."""
    from PIL import Image

    from keras_softmax.data import load_dataset
    from keras_softmax.training.config import resolve

    config = resolve(shared_run.path / "config.toml")
    data = load_dataset(config.dataset, val_split=config.val_split, seed=config.seed, limit=config.limit or None)
    folder = tmp_path_factory.mktemp("images")
    images, labels = data.x_val[:4], data.y_val[:4]
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        paths.append(folder / f"digit{i}-label{label}.png")
        Image.fromarray(np.asarray(image)).save(paths[-1])
    return paths, images, labels
