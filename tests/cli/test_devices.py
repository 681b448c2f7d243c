"""``train --devices``: data-parallel training on two CPU devices, end to end, and several processes.

JAX exposes two CPU devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``; TensorFlow
two logical CPUs with ``tf.config.set_logical_device_configuration`` before it starts. Every run is
a real process (the device count is fixed when the backend starts), bounded by a timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile

import keras
import numpy as np
import pytest

from .helpers import assert_ok, assert_user_error, invoke, subprocess_env

HAS_JAX = importlib.util.find_spec("jax") is not None
TWO_CPUS = "--xla_force_host_platform_device_count=2"
EPOCHS = 4
# 720 train / 81 val digits (81 is odd: the last evaluation batch is padded for two devices), a tiny
# ResNet-12, XLA on (on JAX, op-by-op execution over two devices is far slower than compiling).
ARGS = ["--head", "log_softmax", "--epochs", str(EPOCHS), "--set", "widths=[4, 8, 8, 8]", "--set", "limit=801",
        "--val-split", "81", "--batch-size", "32", "--seed", "3", "--set", "checkpoint_every=1"]
OUTPUT_TIMEOUT = 300
# The JAX runs see no TensorFlow, like the GPU machines (model.keras only, no SavedModel: the export
# is the one-device path, tested elsewhere), which also spares each process TensorFlow's import.
WITHOUT_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None\n"
JAX_CLI = WITHOUT_TENSORFLOW + "from keras_softmax.cli import main\nmain(sys.argv[1:])\n"


def jax_cli(*args) -> list[str]:
    """``keras-softmax ARGS`` as a process without TensorFlow."""
    return [sys.executable, "-c", JAX_CLI, *[str(a) for a in args]]


def jax_env(cache_dir, devices: int | None = 2) -> dict:
    env = {**subprocess_env(cache_dir), "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def run(args, env, cwd, timeout=OUTPUT_TIMEOUT):
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def report_of(path) -> dict:
    return json.loads((path / "report.json").read_text())


def test_device_errors_are_one_line(tmp_path):
    """This test process has one CPU device on the TensorFlow backend (or JAX without the flag)."""
    out = tmp_path / "run"
    assert_user_error(invoke("train", "--devices", "3", "--batch-size", "32", "--out", out),
                      "batch_size 32 does not divide by 3 devices")
    assert_user_error(invoke("train", "--devices", "2", "--batch-size", "32", "--out", out),
                      "asked for 2 devices but only 1 is visible (cpu)")
    assert_user_error(invoke("train", "--devices", "two", "--out", out), 'devices must be a positive integer or "all"')
    assert_user_error(invoke("train", "--set", "devices=0", "--out", out), "devices must be")
    assert_user_error(invoke("train", "--coordinator", "127.0.0.1:1234", "--out", out),
                      "--coordinator needs --num-processes and --process-id")
    assert_user_error(invoke("train", "--num-processes", "2", "--process-id", "1", "--out", out),
                      "need --coordinator HOST:PORT")
    assert_user_error(invoke("train", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2",
                             "--out", out), "process id 2 is not in [0, 2)")
    if keras.backend.backend() != "jax":  # (on JAX this would wait for the other process)
        assert_user_error(invoke("train", "--coordinator", "127.0.0.1:1234", "--num-processes", "2",
                                 "--process-id", "0", "--out", out), "several processes need the JAX backend")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="needs JAX")
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_two_devices_jax_end_to_end(tmp_path, cache_dir):
    """Train on two JAX CPU devices, kill it, resume it; the model reloads on one device and on
    TensorFlow; a one-device run of the same seed and global batch reaches the same accuracy."""
    out = tmp_path / "two"
    state_file = out / "checkpoints" / "state.json"
    env = jax_env(cache_dir)
    with (tmp_path / "first.log").open("w") as log:
        process = subprocess.Popen(jax_cli("train", *ARGS, "--devices", "2", "--out", out), cwd=tmp_path,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + OUTPUT_TIMEOUT
        while not state_file.is_file():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint (exit {process.poll()}):\n{(tmp_path / 'first.log').read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    first = (tmp_path / "first.log").read_text()
    assert "data parallel over 2 devices (cpu), global batch 32 = 2 × 16" in first, first[-3000:]
    assert not (out / "report.json").exists(), "finished before the kill"
    killed_after = json.loads(state_file.read_text())["epoch"]
    assert 1 <= killed_after < EPOCHS

    resumed = run(jax_cli("train", "--resume", "--out", out), env, tmp_path)
    assert f"resuming {out} after epoch {killed_after}/{EPOCHS}" in resumed.stdout
    assert "data parallel over 2 devices (cpu), global batch 32 = 2 × 16" in resumed.stdout
    report = report_of(out)
    assert (report["devices"], report["per_device_batch"], report["num_processes"]) == (2, 16, 1)
    assert report["epochs"] == EPOCHS and report["split_sizes"] == {"train": 720, "val": 81, "test": 0}
    assert "devices = 2" in (out / "config.toml").read_text().splitlines()
    assert "TensorFlow is not installed: wrote model.keras only" in resumed.stdout
    with zipfile.ZipFile(out / "model.keras") as archive:  # compiled as a one-device run's model
        compiled = json.loads(archive.read("config.json"))["compile_config"]
    assert compiled["metrics"] and compiled["weighted_metrics"] is None
    history = (out / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(1, EPOCHS + 1)]
    # val_accuracy during fit counts the 81 images, not the padded copy: a whole number of 81ths.
    last_val_accuracy = float(history[-1].split(",")[4])
    assert round(last_val_accuracy * 81, 3) == round(last_val_accuracy * 81)

    # A fresh process with one device: the saved model reloads on JAX without the flag and
    # predicts what the report says; the same config (seed, global batch) on one device learns as much.
    script = WITHOUT_TENSORFLOW + textwrap.dedent(f"""
        import dataclasses, json, jax
        from keras_softmax.job import evaluate_run
        from keras_softmax.training import resolve, train

        assert jax.device_count() == 1
        report, _ = evaluate_run({str(out)!r})
        config = dataclasses.replace(resolve({str(out / "config.toml")!r}), devices=1)
        trained = train(config, {str(tmp_path / "one")!r}, log=lambda line: None)
        print(json.dumps({{"confusion_matrix": report["confusion_matrix"], "devices": trained.placement.devices,
                          "per_device_batch": trained.placement.per_device_batch,
                          "accuracy": trained.history[-1]["val_accuracy"]}}))
    """)
    one = json.loads(run([sys.executable, "-c", script], jax_env(cache_dir, None), tmp_path).stdout.splitlines()[-1])
    assert one["confusion_matrix"] == report["confusion_matrix"]
    assert (one["devices"], one["per_device_batch"]) == (1, 32)
    print(f"two devices {report['accuracy']:.4f}, one device {one['accuracy']:.4f}")
    assert report["accuracy"] > 0.5 and one["accuracy"] > 0.5  # both learn ...
    assert abs(report["accuracy"] - one["accuracy"]) <= 0.08  # ... about as much

    # And on this process's backend (TensorFlow by default), one CPU device.
    evaluated = assert_ok(invoke("evaluate", out))
    assert "val accuracy" in evaluated.stdout
    again = json.loads((out / "evaluations" / "digits-val" / "report.json").read_text())
    assert abs(again["accuracy"] - report["accuracy"]) <= 1 / 81 + 1e-9


TF_TWO_CPUS = (
    "import sys, tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "from keras_softmax.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow")
def test_two_devices_tensorflow(tmp_path, cache_dir):
    """MirroredStrategy over two logical CPUs (BatchNorm synchronisation: tests/training)."""
    out = tmp_path / "run"
    env = {**subprocess_env(cache_dir), "KERAS_BACKEND": "tensorflow"}
    result = run([sys.executable, "-c", TF_TWO_CPUS, "train", "--head", "log_softmax", "--epochs", "1",
                  "--set", "widths=[4, 8, 8, 8]", "--set", "limit=300", "--val-split", "31", "--batch-size", "32",
                  "--set", "jit_compile=false", "--devices", "all", "--out", out], env, tmp_path)
    assert "data parallel over 2 devices (cpu), global batch 32 = 2 × 16" in result.stdout
    report = report_of(out)
    assert (report["devices"], report["per_device_batch"], report["backend"]) == (2, 16, "tensorflow")
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="needs JAX")
def test_two_processes_on_localhost(tmp_path, cache_dir):
    """keras.distribution.initialize over loopback: two JAX processes with one CPU device each
    train one epoch together and end with identical weights; only process 0 writes the report.

    The Gumbel noise, the crop/flip augmentation and CutMix (drawn per global batch, then split
    between the processes) must agree across processes for the weights to match.
    """
    out = tmp_path / "run"
    port = _free_port()
    args = ["--head", "log_gumbel", "--set", "cutmix=0.5", "--epochs", "1", "--set", "widths=[4, 8, 8, 8]", "--set", "limit=300",
            "--val-split", "31", "--batch-size", "32", "--devices", "all", "--out", out]
    processes, logs = [], []
    for process_id in range(2):
        env = {**jax_env(cache_dir, None), "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
        logs.append((tmp_path / f"process{process_id}.log").open("w"))
        processes.append(subprocess.Popen(jax_cli("train", *args, "--process-id", process_id), cwd=tmp_path,
                                          env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
    try:
        for process in processes:
            process.wait(timeout=OUTPUT_TIMEOUT)
    finally:
        for process, log in zip(processes, logs):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
            log.close()
    outputs = [(tmp_path / f"process{k}.log").read_text() for k in range(2)]
    for k, (process, text) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"process {k} exited {process.returncode}:\n{text[-3000:]}"
        assert f"data parallel over 2 devices (cpu), global batch 32 = 2 × 16; process {k} of 2" in text

    report = report_of(out)
    assert (report["devices"], report["per_device_batch"], report["num_processes"]) == (2, 16, 2)
    side = tmp_path / "run.process1"
    assert (side / "model.keras").is_file() and not (side / "report.json").exists()
    assert not list((side / "checkpoints").glob("*.weights.h5"))

    import keras_softmax  # noqa: F401  (registers the package's layers for loading)

    models = [keras.saving.load_model(str(path / "model.keras")) for path in (out, side)]
    weights = [m.get_weights() + [np.asarray(v) for v in m.optimizer.variables] for m in models]
    assert len(weights[0]) == len(weights[1]) > len(models[0].weights)
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
