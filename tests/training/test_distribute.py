"""keras_softmax.training.distribute: device counting, the one-line errors, clusters, BatchNorm."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keras_softmax.training import distribute
from keras_softmax.training.config import ConfigError, resolve

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [b for b in ("jax", "tensorflow") if importlib.util.find_spec(b) is not None]


@pytest.mark.parametrize("value, parsed", [(1, 1), (4, 4), ("2", 2), ("all", "all"), (" ALL ", "all")])
def test_parse_devices(value, parsed):
    assert distribute.parse_devices(value) == parsed


@pytest.mark.parametrize("value", [0, -1, "two", "", 1.5, True, None])
def test_parse_devices_refuses(value):
    with pytest.raises(ConfigError, match='devices must be a positive integer or "all"'):
        distribute.parse_devices(value)


def test_config_key_devices():
    assert resolve(None, {}).devices == 1
    assert resolve(None, {"devices": "all"}).devices == "all"
    with pytest.raises(ConfigError, match="batch_size 30 does not divide by 4 devices"):
        resolve(None, {"devices": 4, "batch_size": 30})
    with pytest.raises(ConfigError, match="devices must be"):
        resolve(None, {"devices": 0})


def test_one_device_looks_nothing_up(monkeypatch):
    """devices = 1 is the old path: no device query, no distribution."""
    monkeypatch.setattr(distribute, "visible_devices", lambda: pytest.fail("looked devices up"))
    placement = distribute.plan(1, 96)
    assert not placement.distributed and placement.is_chief
    assert placement.summary() == {"devices": 1, "per_device_batch": 96, "num_processes": 1}


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(distribute, "visible_devices", lambda: ("gpu", ["gpu:0", "gpu:1"]))


def test_plan_and_its_one_line_errors(two_gpus):
    placement = distribute.plan("all", 64)
    assert (placement.devices, placement.names, placement.per_device_batch) == (2, ("gpu:0", "gpu:1"), 32)
    assert placement.describe() == "data parallel over 2 devices (gpu), global batch 64 = 2 × 32"
    assert placement.summary() == {"devices": 2, "per_device_batch": 32, "num_processes": 1}
    with pytest.raises(ConfigError, match=r"^asked for 4 devices but only 2 are visible \(gpu\)$"):
        distribute.plan(4, 64)
    with pytest.raises(ConfigError, match="^batch_size 31 does not divide by 2 devices$"):
        distribute.plan("all", 31)


def test_cluster_settings(monkeypatch):
    for name in (distribute.ENV_COORDINATOR, distribute.ENV_NUM_PROCESSES, distribute.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert distribute.cluster_settings() is None
    assert distribute.initialize() is None  # nothing named: a no-op
    expected = {"coordinator": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert distribute.cluster_settings("10.0.0.1:1234", 2, 1) == expected
    monkeypatch.setenv(distribute.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(distribute.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(distribute.ENV_PROCESS_ID, "1")
    assert distribute.cluster_settings() == expected
    assert distribute.cluster_settings(process_id=0)["process_id"] == 0  # a flag beats the variable
    with pytest.raises(ConfigError, match=r"process id 2 is not in \[0, 2\)"):
        distribute.cluster_settings(process_id=2)
    monkeypatch.delenv(distribute.ENV_PROCESS_ID)
    with pytest.raises(ConfigError, match="--coordinator needs --num-processes and --process-id"):
        distribute.cluster_settings()


def test_process_out():
    assert distribute.process_out("runs/a", distribute.Placement()) == Path("runs/a")
    other = distribute.Placement(devices=4, global_batch=64, num_processes=2, process_id=1)
    assert distribute.process_out("runs/a", other) == Path("runs/a.process1")
    assert not other.is_chief and other.per_process_batch == 32


BATCH_NORM_SCRIPT = textwrap.dedent("""
    import json, os
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    from keras_softmax.training import distribute

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 3)).astype("float32")
    x[4:] += 5.0  # the second device's half of the batch is shifted
    y = np.zeros(8, "int32")
    placement = distribute.plan(2, 8)
    with distribute.scope(placement):
        keras.utils.set_random_seed(0)
        images = keras.Input((4, 4, 3))
        conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")
        features = keras.layers.BatchNormalization(momentum=0.0, name="bn")(conv(images))
        outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(features))
        model = keras.Model(images, outputs)
        distribute.prepare_model(model, placement)
        model.compile(optimizer=keras.optimizers.SGD(0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    copy = distribute.local_copy(model, placement)
    h = np.asarray(copy.get_layer("conv")(x))
    print(json.dumps({
        "devices": placement.devices,
        "moving_mean": np.asarray(copy.get_layer("bn").moving_mean).tolist(),
        "global_mean": h.mean(axis=(0, 1, 2)).tolist(),
        "first_half_mean": h[:4].mean(axis=(0, 1, 2)).tolist(),
        "synchronized": copy.get_layer("bn").synchronized,
        "copy_config_synchronized": copy.get_layer("bn").get_config()["synchronized"],
    }))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_statistics_are_the_global_batch(backend):
    """Two CPU devices, one step on a batch whose halves differ: the moving mean is the whole batch's.

    JAX: by construction (one program over the global batch). TensorFlow: because the trainer
    synchronises BatchNormalization (MirroredStrategy alone keeps the first replica's statistics).
    The one-device copy for export is not synchronised.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", BATCH_NORM_SCRIPT], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["moving_mean"] == pytest.approx(out["global_mean"], abs=1e-4)
    assert out["moving_mean"] != pytest.approx(out["first_half_mean"], abs=0.1)
    assert out["synchronized"] is False and out["copy_config_synchronized"] is False
