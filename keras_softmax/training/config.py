"""Training configuration: defaults, presets (TOML), overrides, and the resolved ``config.toml``.

Precedence, lowest first: the defaults below, the dataset's built-in preset
(``keras_softmax/presets/<dataset>.toml``), a ``--config`` file, then command-line flags.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from pathlib import Path
from typing import Callable

from keras_softmax.names import did_you_mean

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
#: ``swa_batchnorm``'s recomputing passes -> what the model's augmentation does to the training images in
#: the pass (keras_softmax.training.batchnorm.recompute_batchnorm_statistics's ``augmentation``).
BATCHNORM_PASSES = {"recompute": "training", "recompute_crop_flip": "crop_flip", "recompute_plain": "none"}


def first_averaged_epoch(swa_start: float, epochs: int) -> int | None:
    """The first epoch (1-based) whose end is averaged: ceil(swa_start · epochs); None when off.

    The same epoch is where ``sam_start`` switches SAM on (its first step), so that with
    ``swa_start = sam_start`` SAM and the averaging cover the same epochs.
    """
    if not swa_start:
        return None
    # (- 1e-9: 0.7 * 10 is 7.000000000000001 in floating point, and must give epoch 7)
    return min(epochs, max(1, math.ceil(swa_start * epochs - 1e-9)))


def first_sam_epoch(config: "TrainConfig") -> int:
    """The first epoch (0-based, as Keras counts) that trains with SAM: epoch ceil(sam_start · epochs) (1-based)."""
    first = first_averaged_epoch(config.sam_start, config.epochs)
    return 0 if first is None else first - 1


class ConfigError(ValueError):
    """A configuration value or file a user gave is invalid (one-line message)."""


# --- what each setting accepts -------------------------------------------------------------------
#
# Every setting of ``TrainConfig`` is declared with ``setting(default, RULE)``: its type and range sit
# next to its default, and ``validate()`` checks each value against its rule before anything runs
# (a wrong one is one ``ConfigError`` line: the setting, what it expects, what it got). A new setting
# needs nothing else; ``tests/training/test_config.py`` checks that every field has a rule.

@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting accepts: ``expects`` says it in words, ``check`` decides."""

    expects: str
    check: Callable[[object], bool]

    def __call__(self, value) -> bool:
        try:
            return bool(self.check(value))
        except (TypeError, ValueError):  # a comparison of the wrong type is simply "no"
            return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(minimum: int = 0) -> Rule:
    """A whole number >= ``minimum``."""
    words = {0: "an integer >= 0", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    return Rule(words, lambda v: _is_int(v) and v >= minimum)


def number(low: float = 0.0, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           words: str | None = None) -> Rule:
    """A finite number in the interval ``low``..``high`` (``None``: unbounded above)."""
    if words is None:
        if high is None:
            words = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            words = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(v):
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    return Rule(words, check)


def choice(*options: str) -> Rule:
    return Rule(f"one of {', '.join(options)}", lambda v: isinstance(v, str) and v in options)


def text() -> Rule:
    return Rule("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def table() -> Rule:
    return Rule("a table of KEY = VALUE", lambda v: isinstance(v, dict))


def positive_ints(count: int) -> Rule:
    count_words = {2: "two", 3: "three", 4: "four"}.get(count, str(count))
    return Rule(f"{count_words} positive integers, e.g. [64, 160, 320, 640]",
                lambda v: isinstance(v, (list, tuple)) and len(v) == count and all(_is_int(w) and w > 0 for w in v))


def setting(default, rule: Rule):
    """A dataclass field with its default and the rule its value must pass."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


DEVICES = Rule('a positive integer or "all"', lambda v: (_is_int(v) and v >= 1) or v == "all")
# 0: no validation split; the run trains on every training image and reports on the dataset's test split
VAL_SPLIT = Rule("0 (train on every training image), a fraction in (0, 1) or a whole number of images >= 1",
                 lambda v: _is_number(v) and ((0 <= v < 1) or (_is_int(v) and v >= 1)
                                              or (isinstance(v, float) and v >= 1 and v == int(v))))


@dataclasses.dataclass
class TrainConfig:
    """Every knob of a training run: its default and what it accepts (``setting(default, rule)``)."""

    head: str = setting("log_softmax", text())
    head_params: dict = setting({}, table())
    dataset: str = setting("digits", text())
    val_split: float = setting(0.1, VAL_SPLIT)
    limit: int = setting(0, integer(0))  # 0: use every training image
    seed: int = setting(0, integer(0))
    epochs: int = setting(30, integer(1))
    batch_size: int = setting(128, integer(1))  # the global batch, split evenly over ``devices``
    # Data-parallel devices: 1 (the plain one-device path), N, or "all" (every visible accelerator,
    # or CPU device where there is none; with several processes, every device of every host).
    devices: int | str = setting(1, DEVICES)
    optimizer: str = setting("sgd", choice(*OPTIMIZERS))
    lr: float = setting(0.1, number(0, low_open=True))
    momentum: float = setting(0.9, number(0, 1, high_open=True))
    nesterov: bool = setting(True, flag())
    # Decoupled weight decay, w -= lr * weight_decay * w each step (Keras's convention). With SGD
    # momentum 0.9 it matches a coupled L2 term ten times smaller: 5e-3 here ~ PyTorch's 5e-4.
    weight_decay: float = setting(5e-3, number(0))
    schedule: str = setting("cosine", choice(*SCHEDULES))
    warmup_epochs: float = setting(1.0, number(0))
    # Sharpness-aware minimization (keras_softmax.training.sharpness_aware; JAX only): each step's gradient
    # is taken at the weights moved by rho along the normalised gradient; twice the cost of a step. 0: off.
    sam_rho: float = setting(0.0, number(0, words="a number >= 0 (0: off)"))
    # SAM only from the start of epoch ceil(sam_start * epochs) on, the plain step before (0: every epoch).
    sam_start: float = setting(0.0, number(0, 1, high_open=True, words="a number in [0, 1) (0: from the first step)"))
    # Clip the gradient to this global L2 norm (all variables together) before each step; 0: off.
    global_clipnorm: float = setting(0.0, number(0, words="a number >= 0 (0: no clipping)"))
    label_smoothing: float = setting(0.0, number(0, 1, high_open=True))
    # "matched": the head's own loss. "mismatched": the original study's error, the head's output fed
    # to a cross-entropy that expects logits (keras_softmax.mismatch), for demonstrations only.
    loss: str = setting("matched", choice("matched", "mismatched"))
    cutmix: float = setting(0.0, number(0, 1, words="a probability in [0, 1]"))
    # One TrivialAugment operation per training image, computed on the accelerator inside the model
    # ("trivial": RandAugment's ranges, "trivial_wide": TrivialAugmentWide's; models.augment).
    augment_policy: str = setting("none", choice("none", "trivial", "trivial_wide"))
    # Probability of erasing one random box per training image (random erasing; 0: off).
    random_erasing: float = setting(0.0, number(0, 1, words="a probability in [0, 1]"))
    ema: float = setting(0.0, number(0, 1, high_open=True))  # EMA momentum of the weights (0: off)
    # Stochastic weight averaging (keras_softmax.training.averaging): 0 = off; s in (0, 1) = the weights
    # at every epoch end from epoch ceil(s * epochs) on are averaged uniformly, and the model ends with
    # the average. Works on every backend.
    swa_start: float = setting(0.0, number(0, 1, high_open=True, words="a number in [0, 1) (0: off)"))
    # SWA's own learning rate (Izmailov et al. 2018): with the cosine schedule, decay from lr to swa_lr by
    # the first averaged epoch and hold it there, so the averaged weights are spread along the valley
    # instead of crowded at the end of a decay to 0. 0: the plain schedule (cosine to 0).
    swa_lr: float = setting(0.0, number(0, words="a number >= 0 (0: the schedule's own)"))
    # The averaged model's BatchNorm statistics: "average" the epoch ends' moving statistics like every
    # weight, or recompute them for the averaged weights with one pass over the training images in
    # training mode (SWA's update_bn; keras_softmax.training.batchnorm): "recompute" with training's
    # augmentation, "recompute_crop_flip" with its crop and flip alone, "recompute_plain" with none
    # (the images as at inference). At the strong recipe (TrivialAugmentWide) "recompute" is the one to use:
    # on the same weights the plain pass cost 2.4 points of validation top-1, crop-and-flip tied
    # (bench/RESULTS.md §9, bench/batchnorm_pass.py).
    swa_batchnorm: str = setting("average", choice("average", *BATCHNORM_PASSES))
    widths: list = setting([64, 160, 320, 640], positive_ints(4))
    augment: bool = setting(True, flag())
    # Standardise pixels with the CIFAR-100 channel mean and std (false: pixel / 255 only, as the
    # original study fed them).
    normalize: bool = setting(True, flag())
    labels: str = setting("fine", choice(*LABELS))
    crop_padding: int = setting(4, integer(0))
    flip: bool = setting(True, flag())
    dropout: float = setting(0.0, number(0, 1, high_open=True))
    # ResNet-12's own regularisation in its reference implementations (Lee et al. 2019, Tian et al. 2020):
    # dropout at this rate after stages 1-2 and DropBlock at this rate after stages 3-4 (models.dropblock),
    # with blocks of drop_block_size pixels a side. 0: off.
    drop_block: float = setting(0.0, number(0, 1, high_open=True, words="a number in [0, 1) (0: off)"))
    drop_block_size: int = setting(2, integer(1))
    tta_flip: bool = setting(False, flag())
    precision: str = setting("auto", choice(*PRECISIONS))
    jit_compile: bool = setting(True, flag())  # resolve(): off on PyTorch unless given (default_jit_compile)
    steps_per_execution: int = setting(1, integer(1))
    val_every: int = setting(1, integer(1))  # validate every N epochs (and always after the last)
    checkpoint_every: int = setting(1, integer(0))  # checkpoint every N epochs for --resume (0: never)
    compile_cache: bool = setting(True, flag())  # JAX: keep compiled programs on disk for later runs
    # JAX: compile the train and test steps in a thread while the images decode, behind the
    # convolutions of autotune_ahead (keras_softmax.training.ahead); the programs are the ones fit
    # would compile. Off by default: alone it only moved the tracing into the busy part of the start
    # (65.3 s without, 71.0 s with); the fast preset turns it on behind autotune_ahead (bench/RESULTS.md §5).
    compile_ahead: bool = setting(False, flag())
    # JAX on a GPU: autotune the backbone's convolutions in a thread from the batch shapes alone, while the
    # images decode and the model is built, so that compiling the train step finds them tuned
    # (keras_softmax.training.ahead.ConvolutionWarmup). Changes no result: XLA only picks its algorithms earlier.
    autotune_ahead: bool = setting(True, flag())

    def validate(self, origins: dict | None = None) -> "TrainConfig":
        """Check every value against its rule; raise ``ConfigError`` naming the first bad one.

        ``origins`` (setting -> where it was given, e.g. ``"--set"`` or a file name) goes into the message.
        """
        for field in dataclasses.fields(self):
            rule = field.metadata.get("rule")
            value = getattr(self, field.name)
            if rule is not None and not rule(value):
                where = (origins or {}).get(field.name)
                raise ConfigError(f"{field.name} must be {rule.expects} (got {value!r}"
                                  f"{f' from {where}' if where else ''})")
        if _is_int(self.devices) and self.batch_size % self.devices:
            raise ConfigError(f"batch_size {self.batch_size} does not divide by {self.devices} devices")
        if self.swa_start and self.ema:
            # Both average the weights, and would undo each other: Keras swaps the EMA into the model
            # when fit ends, then SWA sets its own average of the raw weights over it.
            raise ConfigError(f"swa_start and ema both average the weights: use one of them (got swa_start = "
                              f"{self.swa_start!r} and ema = {self.ema!r}; set ema = 0 for swa_start, which works "
                              "on every backend)")
        if (self.swa_lr or self.swa_batchnorm != "average") and not self.swa_start:
            option = "swa_lr" if self.swa_lr else "swa_batchnorm"
            raise ConfigError(f"{option} = {getattr(self, option)!r} belongs to weight averaging, which is off: "
                              "set swa_start too (e.g. --set swa_start=0.8)")
        if self.sam_start and not self.sam_rho:
            raise ConfigError(f"sam_start = {self.sam_start!r} belongs to sharpness-aware minimization, which is off: "
                              "set sam_rho too (e.g. --set sam_rho=0.05)")
        if self.swa_lr and self.schedule != "cosine":
            raise ConfigError(f"swa_lr holds the cosine schedule at a floor; it does not apply to schedule = "
                              f"{self.schedule!r} (use schedule = \"cosine\" or swa_lr = 0)")
        first = first_averaged_epoch(self.swa_start, self.epochs)
        if self.swa_lr and first is not None and first - 1 < self.warmup_epochs:
            raise ConfigError(f"swa_lr holds the rate from the first averaged epoch (epoch {first} of {self.epochs}), "
                              f"which must start after the warm-up's {self.warmup_epochs:g} epochs: raise swa_start")
        if self.swa_lr > self.lr:
            raise ConfigError(f"swa_lr must not exceed lr, the schedule decays from lr to it (got swa_lr = "
                              f"{self.swa_lr!r}, lr = {self.lr!r})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def read_toml(path) -> dict:
    """Read a preset file; ``ConfigError`` if it is missing, malformed or has unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    data.pop("description", None)
    data.pop("results", None)  # zoo presets may record what they reached
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}{did_you_mean(unknown[0], FIELDS)}; "
                          f"valid settings: {', '.join(FIELDS)}")
    return data


def dataset_preset(dataset: str) -> dict:
    """The built-in defaults for ``dataset`` ("digits", "cifar100", or a path: the folder preset)."""
    key = dataset if dataset in ("digits", "cifar100") else "folder"
    path = PRESETS_DIR / f"{key}.toml"
    return read_toml(path) if path.is_file() else {}


def default_jit_compile() -> bool:
    """``jit_compile`` where no preset or flag sets it: XLA on JAX and TensorFlow, but not
    ``torch.compile`` on PyTorch (minutes of compiling before it pays off), as Keras's own
    ``jit_compile="auto"`` decides. The run's ``config.toml`` records the value it got."""
    import keras

    return keras.backend.backend() != "torch"


def resolve(config_file=None, overrides: dict | None = None, *, origin: str = "the command line") -> TrainConfig:
    """Merge defaults < dataset preset < ``config_file`` < ``overrides`` into a validated config.

    ``head_params`` tables merge key by key; every other setting replaces the lower one. A bad value
    is refused in one line that names the setting, what it expects, what it got and where it came
    from (``origin`` names the overrides).
    """
    from_file = read_toml(config_file) if config_file else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    dataset = overrides.get("dataset", from_file.get("dataset", TrainConfig.dataset))
    if not isinstance(dataset, str) or not dataset.strip():
        where = origin if "dataset" in overrides else str(config_file)
        raise ConfigError(f"dataset must be a non-empty string (got {dataset!r} from {where})")
    preset = dataset if dataset in ("digits", "cifar100") else "folder"
    layers = [(f"the {preset} preset", dataset_preset(dataset)),
              (Path(config_file).name if config_file else None, from_file), (origin, overrides)]
    merged: dict = {}
    origins: dict = {}
    for where, layer in layers:
        for key, value in layer.items():
            if key == "head_params" and isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
                merged["head_params"] = {**merged.get("head_params", {}), **value}
            else:
                merged[key] = value
            origins[key] = where
    if "head" in overrides and "head" in from_file and overrides["head"] != from_file["head"]:
        # Parameters of the preset's head need not exist on another head.
        merged["head_params"] = dict(overrides.get("head_params", {}))
    if isinstance(merged.get("widths"), tuple):
        merged["widths"] = list(merged["widths"])
    if "jit_compile" not in merged:
        merged["jit_compile"] = default_jit_compile()
    split = merged.get("val_split")
    if isinstance(split, float) and split >= 1 and split == int(split):  # 50.0 images: the count 50, as --val-split
        merged["val_split"] = int(split)
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}{did_you_mean(unknown[0], FIELDS)}; "
                          f"valid settings: {', '.join(FIELDS)}")
    return TrainConfig(**merged).validate(origins)


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


_DECIMAL = re.compile(r"[+-]?(\d+\.|\.\d+)([eE][+-]?\d+)?")


def parse_head_param(text: str, option: str = "--head-param"):
    """Parse ``KEY=VALUE`` from ``--head-param`` or ``--set`` (``option`` names it in the error); the
    value is read as a TOML value when it can be, else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{option} expects KEY=VALUE, e.g. {'epochs=5' if option == '--set' else 'temperature=3.0'} "
                          f"(got {text!r})")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
        if _DECIMAL.fullmatch(value):  # ".1" or "1." (no TOML number): the number a Python user means
            value = float(value)
    return key, value
