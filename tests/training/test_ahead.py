"""training.ahead: the dataset loading in a thread, and the train and test steps compiled ahead on JAX.

The compiled-ahead programs must be the ones fit runs: the same losses, and fit finds them in the
persistent compilation cache. (The dataset's outline itself: tests/data/test_outline.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from PIL import Image

from keras_softmax.data import DatasetError, load_dataset
from keras_softmax.data.sources import outline_of
from keras_softmax.training.ahead import BackgroundLoad

ROOT = Path(__file__).resolve().parents[2]


def _folders(root, classes=("a", "b", "c"), per_class=3):
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (32, 32), (80 * i, 20 * j, 0)).save(root / name / f"{j}.png")
    return root


def test_background_load_gives_outline_then_dataset_and_reraises_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    loading = BackgroundLoad(load_dataset, source=_folders(tmp_path / "tree"), val_split=3, seed=1)
    outline = loading.outline()
    data = loading.result()
    assert outline == outline_of(data) and (outline.num_train, outline.num_val) == (6, 3)

    missing = BackgroundLoad(load_dataset, source=tmp_path / "nowhere", val_split=3)
    with pytest.raises(DatasetError, match="dataset path not found"):
        missing.outline()
    with pytest.raises(DatasetError, match="dataset path not found"):
        missing.result()

    bad = _folders(tmp_path / "bad")
    (bad / "a" / "0.png").write_bytes(b"not an image")
    broken = BackgroundLoad(load_dataset, source=bad, val_split=3)
    assert broken.outline().num_classes == 3  # listed fine: the bad image shows when it decodes
    with pytest.raises(DatasetError, match="cannot decode image"):
        broken.result()


_JAX_RUN = textwrap.dedent("""
    import json, os, sys
    import jax
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train
    config = resolve(None, {"dataset": "digits", "limit": 300, "epochs": 2, "widths": [4, 4, 8, 8],
                            "batch_size": 64, "cutmix": 0.5, "seed": 1, "compile_ahead": sys.argv[1] == "on"})
    lines = []
    run = train(config, sys.argv[2], log=lines.append)
    print(json.dumps({"losses": [row["loss"] for row in run.history],
                      "val_losses": [row["val_loss"] for row in run.history],
                      "hits": events.count("/jax/compilation_cache/cache_hits"), "lines": lines}))
""")


@pytest.mark.slow
def test_compiled_ahead_on_jax_fit_loads_the_same_programs(tmp_path):
    results = {}
    for mode in ("on", "off"):
        env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_SOFTMAX_CACHE": str(tmp_path / f"cache-{mode}"),
               "PYTHONPATH": str(ROOT)}
        process = subprocess.run([sys.executable, "-c", _JAX_RUN, mode, str(tmp_path / f"run-{mode}")],
                                 capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert process.returncode == 0, process.stderr[-3000:]
        results[mode] = json.loads(process.stdout.strip().splitlines()[-1])
    on, off = results["on"], results["off"]
    # The same programs: the same numbers, epoch by epoch.
    np.testing.assert_allclose(on["losses"], off["losses"], rtol=1e-6)
    np.testing.assert_allclose(on["val_losses"], off["val_losses"], rtol=1e-6)
    assert any(line.startswith("train step and test step compiled ahead in ") for line in on["lines"]), on["lines"]
    assert not any("compiled ahead" in line for line in off["lines"])
    # fit found both steps in the persistent cache the compile ahead filled (a fresh cache: no other hits).
    assert on["hits"] >= off["hits"] + 2, (on["hits"], off["hits"])
