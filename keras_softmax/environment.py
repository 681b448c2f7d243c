"""What a run ran on: backend, device, package versions (recorded in every report)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import sys

import keras


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
    return {"backend": keras.backend.backend(), "device": device_description(), "versions": package_versions()}


def tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def cache_root():
    """Where keras-softmax keeps caches: ``$KERAS_SOFTMAX_CACHE`` or ``~/.cache/keras_softmax``."""
    from pathlib import Path

    return Path(os.environ.get("KERAS_SOFTMAX_CACHE") or Path.home() / ".cache" / "keras_softmax").expanduser()


def enable_compilation_cache() -> None:
    """JAX: persist compiled XLA programs, so a repeated run skips most of its compilation."""
    if keras.backend.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax-compilation"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


#: XLA options set for the JAX backend unless the user's XLA_FLAGS already name them. Compiling the
#: train step's kernels on every host core cut a cold ResNet-12 compile from 24.5 s to 18.8 s on an
#: H100 (bench/RESULTS.md, "Cold start") without changing the compiled program.
JAX_XLA_FLAGS = {"xla_gpu_force_compilation_parallelism": lambda: str(os.cpu_count() or 1)}


def configure_xla() -> None:
    """Add :data:`JAX_XLA_FLAGS` to ``XLA_FLAGS`` (JAX backend only; before JAX picks a device).

    JAX reads ``XLA_FLAGS`` when its backend starts, so this must run before the first device
    query of the process; later it changes nothing. TensorFlow's XLA is left alone.
    """
    if keras.backend.backend() != "jax":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for name, value in JAX_XLA_FLAGS.items():
        if f"--{name}" not in flags:
            flags = f"{flags} --{name}={value()}"
    os.environ["XLA_FLAGS"] = flags.strip()


def on_cpu() -> bool:
    """True when the backend computes on the CPU."""
    return device_description().startswith("cpu")


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """What the precision choice needs to know of the device: ``platform`` ("cpu", "gpu", "tpu")
    and, for a GPU, its CUDA compute capability (e.g. ``(9, 0)`` for an H100)."""

    platform: str
    compute_capability: tuple | None = None


def accelerator() -> Accelerator:
    """The first device the Keras backend computes on."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            capability = getattr(device, "compute_capability", None)
            return Accelerator(device.platform, _capability(capability))
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return Accelerator("gpu", _capability(details.get("compute_capability")))
            if tf.config.list_physical_devices("TPU"):
                return Accelerator("tpu")
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return Accelerator("gpu", tuple(torch.cuda.get_device_capability(0)))
    except Exception:  # an undetectable device trains in float32, the safe choice
        return Accelerator("unknown")
    return Accelerator("cpu")


def _capability(value) -> tuple | None:
    """``"9.0"`` or ``(9, 0)`` as ``(9, 0)``; None if absent."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(".")
    return tuple(int(v) for v in value)


def auto_precision(device: Accelerator) -> str:
    """The dtype policy ``precision = "auto"`` resolves to on ``device``.

    ``mixed_bfloat16`` where the hardware computes bfloat16 natively (TPUs; NVIDIA GPUs from
    compute capability 8.0, Ampere on), where it doubles throughput at the same accuracy;
    ``float32`` elsewhere (CPUs emulate bfloat16 and get slower; older GPUs lack bf16 units).
    """
    if device.platform == "tpu":
        return "mixed_bfloat16"
    if device.platform in ("gpu", "cuda") and device.compute_capability and device.compute_capability >= (8, 0):
        return "mixed_bfloat16"
    return "float32"


def resolve_precision(requested: str) -> str:
    """``requested`` itself, or for ``"auto"`` the policy :func:`auto_precision` picks here."""
    return auto_precision(accelerator()) if requested == "auto" else requested
