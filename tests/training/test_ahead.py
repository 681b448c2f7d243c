"""training.ahead: the dataset loading in a thread, and the train and test steps compiled ahead on JAX.

The compiled-ahead programs must be the ones fit runs: the same losses, and fit finds them in the
persistent compilation cache. (The dataset's outline itself: tests/data/test_outline.py.)
"""

from __future__ import annotations

import json
import os
import re
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
    from keras_softmax.training import trainer
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train
    if sys.argv[1].startswith("warm"):  # as on a GPU: the convolutions tuned first, in the same compile thread
        trainer.can_warm_convolutions = lambda placement: True
    config = resolve(None, {"dataset": "digits", "limit": 300, "epochs": 2, "widths": [4, 4, 8, 8],
                            "batch_size": 64, "cutmix": 0.5, "seed": 1, "compile_ahead": sys.argv[1] in ("on", "warm")})
    lines = []
    run = train(config, sys.argv[2], log=lines.append)
    print(json.dumps({"losses": [row["loss"] for row in run.history],
                      "val_losses": [row["val_loss"] for row in run.history],
                      "hits": events.count("/jax/compilation_cache/cache_hits"), "lines": lines}))
""")


@pytest.mark.slow
def test_compiled_ahead_on_jax_fit_loads_the_same_programs(tmp_path):
    results = {}
    for mode in ("on", "off", "warm", "warm-only"):
        env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_SOFTMAX_CACHE": str(tmp_path / f"cache-{mode}"),
               "PYTHONPATH": str(ROOT)}
        process = subprocess.run([sys.executable, "-c", _JAX_RUN, mode, str(tmp_path / f"run-{mode}")],
                                 capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert process.returncode == 0, process.stderr[-3000:]
        results[mode] = json.loads(process.stdout.strip().splitlines()[-1])
    on, off, warm, warm_only = (results[mode] for mode in ("on", "off", "warm", "warm-only"))
    # The same programs: the same numbers, epoch by epoch.
    for ahead in (on, warm, warm_only):
        np.testing.assert_allclose(ahead["losses"], off["losses"], rtol=1e-6)
        np.testing.assert_allclose(ahead["val_losses"], off["val_losses"], rtol=1e-6)
    assert any(line.startswith("train step and test step compiled ahead in ") for line in on["lines"]), on["lines"]
    # One thread, in order: the convolutions at the train batch, then the steps (not the eval-batch
    # convolutions too: the test step compiled ahead tunes its own).
    assert any(line.startswith("convolutions at batch 64 and train step and test step compiled ahead in ")
               for line in warm["lines"]), warm["lines"]
    # Without compile_ahead, fit compiles the steps; the test step's batch gets its convolutions tuned ahead.
    assert any(re.match(r"convolutions at batch 64 and forward convolutions at batch \d+ compiled ahead in ", line)
               for line in warm_only["lines"]), warm_only["lines"]
    assert not any("compiled ahead" in line for line in off["lines"])
    # fit found both steps in the persistent cache the compile ahead filled (a fresh cache: no other hits).
    assert on["hits"] >= off["hits"] + 2, (on["hits"], off["hits"])
    assert warm["hits"] >= off["hits"] + 2, (warm["hits"], off["hits"])


_CONVOLUTIONS = textwrap.dedent("""
    import json, re, sys
    import keras, numpy as np
    from keras_softmax.data.sources import IMAGE_SHAPE, Outline
    from keras_softmax.data import make_batches
    from keras_softmax.training.ahead import convolution_program, lower_steps
    from keras_softmax.training.config import resolve
    from keras_softmax.training.metrics import training_metrics
    from keras_softmax.training.optim import make_optimizer
    from keras_softmax.training.trainer import build_for, training_loss

    settings = json.loads(sys.argv[1])
    config = resolve(None, {"dataset": "digits", "batch_size": 16, "widths": [4, 8, 8, 16], **settings})
    keras.config.set_dtype_policy(config.precision)
    outline = Outline("digits", [str(i) for i in range(10)], 64, 12)
    head, model = build_for(config, outline)
    model.compile(optimizer=make_optimizer(config, 4, model.trainable_variables), loss=training_loss(config, head),
                  metrics=training_metrics(head.output_kind), jit_compile=True)
    batches = [make_batches(np.zeros((size, *IMAGE_SHAPE), np.uint8), np.zeros(size, np.int32), size, shuffle=False,
                            drop_remainder=True, cutmix=config.cutmix if train else 0.0, num_classes=10)[0]
               for size, train in ((16, True), (12, False))]
    steps = lower_steps(model, *batches)
    compute = keras.config.dtype_policy().compute_dtype
    warm = {"train step": convolution_program(IMAGE_SHAPE, config.widths, compute, 16, training=True),
            "test step": convolution_program(IMAGE_SHAPE, config.widths, compute, 12, training=False)}

    def convolutions(lowered):  # each StableHLO convolution without its operand names: what XLA tunes
        return sorted(set(re.findall(r"stablehlo\\.convolution\\(%[^)]*\\)(.*)", lowered.as_text())))

    print(json.dumps({name: [convolutions(steps[name]), convolutions(warm[name])] for name in steps}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    {"precision": "mixed_bfloat16"},
    {"precision": "float32", "augment_policy": "trivial_wide", "cutmix": 0.5, "head": "sparsemax"},
])
def test_warmed_convolutions_are_the_models_own(tmp_path, settings):
    """The program tuned ahead holds exactly the convolutions of the model's train and test steps.

    XLA keys what it learnt when autotuning by the convolution instruction (shapes, types, window,
    dimension numbers), so a warm-up that differs in any of them (a width, the padding, the compute
    type, a missing backward convolution) tunes convolutions nobody runs and leaves the model's own
    to ``fit``: the lists must be equal, not merely overlap.
    """
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_SOFTMAX_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", _CONVOLUTIONS, json.dumps(settings)], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    found = json.loads(process.stdout.strip().splitlines()[-1])
    # Distinct ones at widths 4-8-8-16 (a stage's conv2 and conv3 share one): 11 forward; with the
    # backward convolutions to the kernels and to the inputs, 31.
    assert {step: len(model) for step, (model, _) in found.items()} == {"train step": 31, "test step": 11}
    for step, (model_convolutions, warm_convolutions) in found.items():
        assert model_convolutions == warm_convolutions, step


_WHILE_COMPILING = textwrap.dedent("""
    import json, sys, time
    from keras_softmax.training import ahead
    from keras_softmax.training.config import resolve
    from keras_softmax.training.trainer import train

    add = ahead.Compiling.add
    def slow_add(self, name, compile_program):  # a compile that outlasts the data and the model, as on a GPU
        add(self, name, lambda: (time.sleep(1.0), compile_program())[1])
    ahead.Compiling.add = slow_add
    calls = {}
    for compile_ahead in (True, False):
        seen = []
        config = resolve(None, {"dataset": "digits", "limit": 200, "epochs": 1, "widths": [4, 4, 8, 8],
                                "batch_size": 50, "seed": 0, "compile_ahead": compile_ahead})
        train(config, f"{sys.argv[1]}/{compile_ahead}", log=lambda line: None,
              while_compiling=lambda: seen.append(ahead.compiling_in_background()))
        calls[str(compile_ahead)] = seen
    print(json.dumps(calls))
""")


@pytest.mark.slow
def test_while_compiling_runs_once_in_the_wait_for_the_programs_compiled_ahead(tmp_path):
    """train(while_compiling=f) calls f while the steps still compile ahead, and not when nothing does."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_SOFTMAX_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", _WHILE_COMPILING, str(tmp_path)], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    calls = json.loads(process.stdout.strip().splitlines()[-1])
    assert calls == {"True": [True], "False": []}
