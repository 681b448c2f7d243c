"""Data-parallel training over several devices and hosts, through the framework's own machinery.

``devices = 1`` (the default) is the plain one-device path: nothing here is entered and training runs
exactly as it always did. ``devices = N`` (or ``"all"``) replicates the model on N devices and splits
every global batch of ``batch_size`` images into N per-device batches:

- JAX: ``keras.distribution.DataParallel`` over a one-axis ``DeviceMesh``. The train step is one
  jitted program over the global batch (GSPMD): variables are replicated, the batch is sharded and
  XLA inserts the gradient all-reduce. Several processes (hosts) join through
  ``keras.distribution.initialize`` (JAX's distributed runtime, see :func:`initialize`); each feeds
  its own contiguous share of every global batch.
- TensorFlow: ``tf.distribute.MirroredStrategy`` on one host (several processes are not supported:
  Keras 3.15's TensorFlow backend has no ``keras.distribution.initialize``).

BatchNormalization statistics are the *global* batch's on both backends, as in a one-device run:

- JAX: the layer computes its mean and variance over the logical global batch, which XLA reduces
  across devices; moving averages are replicated and identical everywhere.
- TensorFlow: ``MirroredStrategy`` computes them per replica, and the moving averages of a
  ``MirroredVariable`` are then those of the *first replica's shard only*. :func:`scope` switches
  the model's BatchNormalization layers to ``synchronized=True`` for training, and
  :func:`local_copy` switches them back, so that a saved model loads on any backend.

``tests/training/test_distribute.py`` checks both claims on two CPU devices.

>>> placement = plan(config.devices, config.batch_size)           # doctest: +SKIP
>>> with scope(placement):                                         # doctest: +SKIP
...     model = build(); model.compile(...); model.fit(...)
>>> plain = local_copy(model, placement)  # one-device model for evaluation and export
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import keras

from keras_softmax.training.config import ConfigError

#: The environment variables of ``keras.distribution.initialize`` (flags take precedence).
ENV_COORDINATOR = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


def parse_devices(value):
    """``devices`` as an int >= 1 or ``"all"``; ``ConfigError`` otherwise. Accepts ``"2"`` too."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return "all"
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"devices must be a positive integer or \"all\" (got {value!r})")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run trains: how many devices (over how many processes) and how the batch splits."""

    devices: int = 1
    global_batch: int = 0
    platform: str = ""  # "gpu", "cpu", "tpu"; "" when not looked up (the one-device path)
    names: tuple = ()  # the devices, as keras.distribution.list_devices() names them
    num_processes: int = 1
    process_id: int = 0

    @property
    def distributed(self) -> bool:
        return self.devices > 1 or self.num_processes > 1

    @property
    def is_chief(self) -> bool:
        """Process 0 writes the run directory's report and exports."""
        return self.process_id == 0

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.devices

    @property
    def per_process_batch(self) -> int:
        return self.global_batch // self.num_processes

    def describe(self) -> str:
        """``"data parallel over 2 devices (cpu), global batch 64 = 2 × 32"``."""
        line = (f"data parallel over {self.devices} devices ({self.platform}), global batch "
                f"{self.global_batch} = {self.devices} × {self.per_device_batch}")
        if self.num_processes > 1:
            line += f"; process {self.process_id} of {self.num_processes}"
        return line

    def summary(self) -> dict:
        """The report's entries."""
        return {"devices": self.devices, "per_device_batch": self.per_device_batch,
                "num_processes": self.num_processes}


# ---------------------------------------------------------------------------------------------------
# Several processes


def cluster_settings(coordinator=None, num_processes=None, process_id=None) -> dict | None:
    """The multi-process settings from the arguments, else the ``KERAS_DISTRIBUTION_*`` variables.

    Returns None when neither names a coordinator (a single-process run).
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = _int_setting(ENV_NUM_PROCESSES, os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = _int_setting(ENV_PROCESS_ID, os.environ[ENV_PROCESS_ID])
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ConfigError(f"--num-processes / --process-id need --coordinator HOST:PORT (or {ENV_COORDINATOR})")
        return None
    if num_processes is None or process_id is None:
        raise ConfigError("--coordinator needs --num-processes and --process-id "
                          f"(or {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID})")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(f"process id {process_id} is not in [0, {num_processes})")
    return {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}


def _int_setting(name, text):
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer (got {text!r})") from None


def initialize(coordinator=None, num_processes=None, process_id=None) -> dict | None:
    """Join the multi-process cluster, if one is named; call before anything touches a device.

    Wraps ``keras.distribution.initialize`` (JAX: ``jax.distributed.initialize``; on CPU the
    processes talk through Gloo). Every process then sees the global device list, and training
    with ``devices = "all"`` spans them all. A no-op (returning None) when no coordinator is given
    by argument or environment.
    """
    settings = cluster_settings(coordinator, num_processes, process_id)
    if settings is None or settings["num_processes"] == 1:
        return settings
    if keras.backend.backend() != "jax":
        raise ConfigError(f"several processes need the JAX backend (KERAS_BACKEND=jax); "
                          f"this is {keras.backend.backend()}")
    address = settings["coordinator"].split(",")[0]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--coordinator must be HOST:PORT (got {address!r})")
    import jax

    if not jax.distributed.is_initialized():  # (asking jax.process_count() would start the backend)
        keras.distribution.initialize(address, settings["num_processes"], settings["process_id"])
    return settings


def process_out(out, placement: Placement | None = None) -> Path:
    """The run directory this process writes: ``out`` for process 0, ``out.process<k>`` for others.

    The other processes keep their own config, history, checkpoints (each resumes from its own)
    and final ``model.keras`` there, beside process 0's, on a shared file system or not; only
    process 0 evaluates, exports and writes the report.
    """
    out = Path(out)
    process_id = _process_info()[1] if placement is None else placement.process_id
    return out if process_id == 0 else out.with_name(f"{out.name}.process{process_id}")


# ---------------------------------------------------------------------------------------------------
# Devices


def _process_info() -> tuple[int, int]:
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count(), jax.process_index()
    return 1, 0


def visible_devices() -> tuple[str, list[str]]:
    """``(platform, names)`` of the devices data parallelism can use: the accelerators, else CPUs.

    JAX: the default backend's devices, global across processes (``cpu:0``, ``cpu:1`` with
    ``XLA_FLAGS=--xla_force_host_platform_device_count=2``). TensorFlow: the logical GPUs, else the
    logical CPUs (``tf.config.set_logical_device_configuration`` splits a CPU).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return devices[0].platform, keras.distribution.list_devices(devices[0].platform)
    if backend == "tensorflow":
        import tensorflow as tf

        for kind in ("GPU", "CPU"):
            devices = tf.config.list_logical_devices(kind)
            if devices:
                return kind.lower(), [d.name for d in devices]
    raise ConfigError(f"devices > 1 needs the JAX or TensorFlow backend (this is {backend})")


def plan(devices, batch_size: int) -> Placement:
    """Check ``devices`` against what is visible and ``batch_size`` against it; one-line errors.

    ``devices = 1`` in a single process looks nothing up (the unchanged one-device path).
    """
    devices = parse_devices(devices)
    num_processes, process_id = _process_info()
    if devices == 1 and num_processes == 1:
        return Placement(devices=1, global_batch=batch_size)
    platform, names = visible_devices()
    count = len(names) if devices == "all" else devices
    if count > len(names):
        raise ConfigError(f"asked for {count} devices but only {len(names)} "
                          f"{'is' if len(names) == 1 else 'are'} visible ({platform})")
    if num_processes > 1 and count != len(names):
        raise ConfigError(f"{num_processes} processes train on every device: use devices = \"all\" "
                          f"(got {devices}; {len(names)} visible)")
    if batch_size % count:
        raise ConfigError(f"batch_size {batch_size} does not divide by {count} devices")
    return Placement(devices=count, global_batch=batch_size, platform=platform, names=tuple(names[:count]),
                     num_processes=num_processes, process_id=process_id)


def plan_for(config, out, *, resume: bool = False) -> Placement:
    """:func:`plan` for ``config``, or when resuming for the config saved in the run directory."""
    if resume:
        from keras_softmax.training.config import resolve

        saved = process_out(out) / "config.toml"
        if not saved.is_file():  # nothing to distribute: the trainer reports the missing run
            return Placement(process_id=_process_info()[1])
        config = resolve(saved)
    return plan(config.devices, config.batch_size)


# ---------------------------------------------------------------------------------------------------
# Training inside the distribution, and a plain model after it


@contextlib.contextmanager
def scope(placement: Placement):
    """Build, compile and fit the model inside this block; a no-op for one device.

    JAX: ``keras.distribution.DataParallel`` (``auto_shard_dataset=False``: the batches given to
    ``fit`` are already this process's share, see :func:`batch_options`). TensorFlow:
    ``MirroredStrategy.scope()``.
    """
    if not placement.distributed:
        yield
        return
    if keras.backend.backend() == "jax":
        distribution = keras.distribution.DataParallel(devices=list(placement.names), auto_shard_dataset=False)
        with distribution.scope():
            yield
        return
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(list(placement.names))
    with strategy.scope():
        yield


def prepare_model(model, placement: Placement):
    """Before compiling: on TensorFlow with several devices, synchronise BatchNormalization."""
    if placement.distributed and keras.backend.backend() == "tensorflow":
        _set_synchronized(model, True)
    return model


def _set_synchronized(model, value: bool) -> None:
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = value


def batch_options(placement: Placement, *, training: bool) -> dict:
    """Extra ``make_batches`` arguments for this placement (none for the one-device path).

    Evaluation batches are padded to a multiple of the device count with zero-weight copies, so
    that every batch splits evenly (XLA shards only evenly; Keras's TensorFlow trainer fails on an
    uneven first batch). On JAX each process feeds its contiguous share of every global batch.
    """
    if not placement.distributed:
        return {}
    options = {} if training else {"pad_to": placement.devices}
    if keras.backend.backend() == "jax" and placement.num_processes > 1:
        options["shard"] = (placement.process_id, placement.num_processes)
    return options


def metrics_argument(placement: Placement, metrics: list) -> dict:
    """``model.compile``'s ``metrics=...``, or ``weighted_metrics=...`` where evaluation batches are padded.

    Keras applies sample weights to ``weighted_metrics`` only, so the zero-weight copies of
    :func:`batch_options` leave ``val_accuracy`` exact. (``val_loss``, a mean over the padded batch,
    is then low by at most ``(devices - 1) / N`` of itself; the report's loss is computed apart.)
    """
    if batch_options(placement, training=False).get("pad_to", 1) > 1:
        return {"weighted_metrics": metrics}
    return {"metrics": metrics}


def local_copy(model, placement: Placement):
    """``model`` itself for one device; otherwise a plain copy on one device, outside any distribution.

    The copy has the same weights, compile settings and optimizer state, so that evaluation, export
    and ``model.keras`` are what a one-device run gives: nothing of the distribution is left in it
    (its BatchNormalization layers are not ``synchronized``, its metrics are plain ``metrics``), and
    it loads on one device, on a CPU, on any backend.
    """
    if not placement.distributed:
        return model
    _set_synchronized(model, False)
    copy = keras.models.clone_model(model)  # (Keras compiles the clone like the model)
    copy.set_weights(model.get_weights())  # replicated values: readable on every process
    if model.compiled:
        config = model.get_compile_config()
        if config.get("weighted_metrics") and not config.get("metrics"):  # see metrics_argument
            config["metrics"], config["weighted_metrics"] = config["weighted_metrics"], None
            copy.compile_from_config(config)
        if model.optimizer is not None and model.optimizer.built:
            copy.optimizer.build(copy.trainable_variables)
            for target, source in zip(copy.optimizer.variables, model.optimizer.variables):
                target.assign(keras.ops.convert_to_numpy(source))
    return copy
