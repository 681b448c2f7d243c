"""What a run ran on: backend, device, package versions (recorded in every report)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys


def package_versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for name in ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy", "scikit-learn", "keras-softmax"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def device_description() -> str:
    """A short description of the accelerator the backend computes on (or the CPU)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return f"{device.platform}: {getattr(device, 'device_kind', device)}"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"gpu: {details.get('device_name', gpus[0].name)}"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"gpu: {torch.cuda.get_device_name(0)}"
    except Exception as error:  # a description must never break a run
        return f"unknown ({error.__class__.__name__})"
    return f"cpu: {platform.processor() or platform.machine()}"


def describe() -> dict:
    import keras

    return {"backend": keras.backend.backend(), "device": device_description(), "versions": package_versions()}


def tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def cache_root():
    """Where keras-softmax keeps caches: ``$KERAS_SOFTMAX_CACHE`` or ``~/.cache/keras_softmax``."""
    import os
    from pathlib import Path

    return Path(os.environ.get("KERAS_SOFTMAX_CACHE") or Path.home() / ".cache" / "keras_softmax").expanduser()


def enable_compilation_cache() -> None:
    """JAX: persist compiled XLA programs, so a repeated run skips most of its compilation."""
    import keras

    if keras.backend.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax-compilation"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def on_cpu() -> bool:
    """True when the backend computes on the CPU."""
    return device_description().startswith("cpu")
