"""Training configuration: defaults, presets (TOML), overrides, and the resolved ``config.toml``.

Precedence, lowest first: the defaults below, the dataset's built-in preset
(``keras_softmax/presets/<dataset>.toml``), a ``--config`` file, then command-line flags.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
#: "auto": mixed_bfloat16 on accelerators with native bf16, float32 elsewhere (resolved when a run
#: starts; the run's config.toml and report record the resolved policy).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZERS = ("sgd", "adamw", "adam")
#: "onecycle" (Smith & Topin 2019, PyTorch's OneCycleLR defaults): linear warm-up from lr/25 to
#: ``lr`` over the first 30 % of the steps, then cosine decay to lr/(25 * 10^4); ``warmup_epochs``
#: is ignored. PyTorch's version warms up along a cosine and cycles Adam's beta1 as well; this one
#: is Keras's own ``CosineDecay`` with a linear warm-up and leaves the momentum alone.
SCHEDULES = ("cosine", "constant", "onecycle")
#: "fine": the dataset's own classes. "coarse": the superclasses of its fine->coarse map (CIFAR-100's
#: 20), for a flat model of the superclasses; the validation images are the same as with "fine".
LABELS = ("fine", "coarse")


class ConfigError(ValueError):
    """A configuration value or file a user gave is invalid (one-line message)."""


@dataclasses.dataclass
class TrainConfig:
    """Every knob of a training run, with its default."""

    head: str = "log_softmax"
    head_params: dict = dataclasses.field(default_factory=dict)
    dataset: str = "digits"
    val_split: float = 0.1
    limit: int = 0  # 0: use every training image
    seed: int = 0
    epochs: int = 30
    batch_size: int = 128  # the global batch, split evenly over ``devices``
    # Data-parallel devices: 1 (the plain one-device path), N, or "all" (every visible accelerator,
    # or CPU device where there is none; with several processes, every device of every host).
    devices: int | str = 1
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    # Decoupled weight decay, w -= lr * weight_decay * w each step (Keras's convention). With SGD
    # momentum 0.9 it matches a coupled L2 term ten times smaller: 5e-3 here ~ PyTorch's 5e-4.
    weight_decay: float = 5e-3
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    # Clip the gradient to this global L2 norm (all variables together) before each step; 0: off.
    global_clipnorm: float = 0.0
    label_smoothing: float = 0.0
    # "matched": the head's own loss. "mismatched": the original study's error, the head's output fed
    # to a cross-entropy that expects logits (keras_softmax.mismatch), for demonstrations only.
    loss: str = "matched"
    cutmix: float = 0.0
    ema: float = 0.0  # EMA momentum of the weights (0: off)
    widths: list = dataclasses.field(default_factory=lambda: [64, 160, 320, 640])
    augment: bool = True
    # Standardise pixels with the CIFAR-100 channel mean and std (false: pixel / 255 only, as the
    # original study fed them).
    normalize: bool = True
    labels: str = "fine"
    crop_padding: int = 4
    flip: bool = True
    dropout: float = 0.0
    tta_flip: bool = False
    precision: str = "auto"
    jit_compile: bool = True
    steps_per_execution: int = 1
    val_every: int = 1  # validate every N epochs (and always after the last)
    checkpoint_every: int = 1  # checkpoint every N epochs for --resume (0: never)
    compile_cache: bool = True  # JAX: keep compiled programs on disk for later runs

    def validate(self) -> "TrainConfig":
        """Check every value; raise ``ConfigError`` naming the first bad one."""
        _require(isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be a positive integer", self.epochs)
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1,
                 "batch_size must be a positive integer", self.batch_size)
        _require((isinstance(self.devices, int) and not isinstance(self.devices, bool) and self.devices >= 1)
                 or self.devices == "all", 'devices must be a positive integer or "all"', self.devices)
        if isinstance(self.devices, int) and self.batch_size % self.devices:
            raise ConfigError(f"batch_size {self.batch_size} does not divide by {self.devices} devices")
        _require(_positive(self.lr), "lr must be a number > 0", self.lr)
        _require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}", self.precision)
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}", self.optimizer)
        _require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}", self.schedule)
        _require(self.loss in ("matched", "mismatched"), "loss must be matched or mismatched", self.loss)
        _require(self.labels in LABELS, f"labels must be one of {', '.join(LABELS)}", self.labels)
        _require(isinstance(self.global_clipnorm, (int, float)) and not isinstance(self.global_clipnorm, bool)
                 and math.isfinite(self.global_clipnorm) and self.global_clipnorm >= 0,
                 "global_clipnorm must be a number >= 0 (0: no clipping)", self.global_clipnorm)
        for flag in ("normalize", "augment", "flip", "nesterov", "tta_flip", "jit_compile", "compile_cache"):
            _require(isinstance(getattr(self, flag), bool), f"{flag} must be true or false", getattr(self, flag))
        _require(0 <= self.momentum < 1, "momentum must be in [0, 1)", self.momentum)
        _require(self.weight_decay >= 0, "weight_decay must be >= 0", self.weight_decay)
        _require(self.warmup_epochs >= 0, "warmup_epochs must be >= 0", self.warmup_epochs)
        _require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)", self.label_smoothing)
        _require(0 <= self.cutmix <= 1, "cutmix must be a probability in [0, 1]", self.cutmix)
        _require(0 <= self.ema < 1, "ema must be in [0, 1)", self.ema)
        _require(0 <= self.dropout < 1, "dropout must be in [0, 1)", self.dropout)
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed must be a non-negative integer", self.seed)
        _require(isinstance(self.limit, int) and self.limit >= 0, "limit must be a non-negative integer", self.limit)
        _require(_positive(self.val_split), "val_split must be > 0 (a fraction < 1 or a count)", self.val_split)
        _require(isinstance(self.widths, (list, tuple)) and len(self.widths) == 4
                 and all(isinstance(w, int) and w > 0 for w in self.widths),
                 "widths must be four positive integers", self.widths)
        _require(isinstance(self.val_every, int) and self.val_every >= 1, "val_every must be >= 1", self.val_every)
        _require(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0,
                 "checkpoint_every must be >= 0", self.checkpoint_every)
        _require(isinstance(self.steps_per_execution, int) and self.steps_per_execution >= 1,
                 "steps_per_execution must be >= 1", self.steps_per_execution)
        _require(isinstance(self.head_params, dict), "head_params must be a table", self.head_params)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _require(condition: bool, message: str, value) -> None:
    if not condition:
        raise ConfigError(f"{message} (got {value!r})")


FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def read_toml(path) -> dict:
    """Read a preset file; ``ConfigError`` if it is missing, malformed or has unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    data.pop("description", None)
    data.pop("results", None)  # zoo presets may record what they reached
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}; valid settings: {', '.join(FIELDS)}")
    return data


def dataset_preset(dataset: str) -> dict:
    """The built-in defaults for ``dataset`` ("digits", "cifar100", or a path: the folder preset)."""
    key = dataset if dataset in ("digits", "cifar100") else "folder"
    path = PRESETS_DIR / f"{key}.toml"
    return read_toml(path) if path.is_file() else {}


def resolve(config_file=None, overrides: dict | None = None) -> TrainConfig:
    """Merge defaults < dataset preset < ``config_file`` < ``overrides`` into a validated config.

    ``head_params`` tables merge key by key; every other setting replaces the lower one.
    """
    from_file = read_toml(config_file) if config_file else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    dataset = overrides.get("dataset", from_file.get("dataset", TrainConfig.dataset))
    layers = [dataset_preset(dataset), from_file, overrides]
    merged: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "head_params":
                merged["head_params"] = {**merged.get("head_params", {}), **value}
            else:
                merged[key] = value
    if "head" in overrides and "head" in from_file and overrides["head"] != from_file["head"]:
        # Parameters of the preset's head need not exist on another head.
        merged["head_params"] = dict(overrides.get("head_params", {}))
    if isinstance(merged.get("widths"), tuple):
        merged["widths"] = list(merged["widths"])
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; valid settings: {', '.join(FIELDS)}")
    try:
        config = TrainConfig(**merged)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    return config.validate()


def to_toml(config: TrainConfig) -> str:
    """``config`` as TOML with every setting written out (``head_params`` as a table at the end)."""
    lines = []
    data = config.to_dict()
    head_params = data.pop("head_params")
    for key, value in data.items():
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    lines.append("[head_params]")
    for key, value in head_params.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise ConfigError("TOML has no null; leave the setting out instead")
    raise ConfigError(f"cannot write {type(value).__name__} to TOML")


def parse_head_param(text: str):
    """Parse ``KEY=VALUE`` from ``--head-param``; the value is read as a TOML value when it can be."""
    if "=" not in text:
        raise ConfigError(f"--head-param expects KEY=VALUE (got {text!r})")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--head-param expects KEY=VALUE (got {text!r})")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value
