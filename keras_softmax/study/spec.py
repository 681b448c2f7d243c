"""A study spec (TOML) and the runs it plans.

A spec names the heads and seeds of a comparison, the shared training recipe, and optional named
variants, recipes, a per-head tuning grid and report sections::

    description = "every head on CIFAR-100, 3 seeds"
    heads_title = "Heads, shared recipe"      # optional: the heads table's section title (this default)
    base = "../presets/cifar100-heads.toml"   # a train preset, relative to this file (optional)
    heads = ["softmax", "log_softmax"]
    seeds = [0, 1, 2]
    reference = "log_softmax"                 # differences are taken against it (default log_softmax)
    epochs = 30                               # any `train` setting: the shared recipe

    [recipes.original]                        # named sets of settings a variant can use
    optimizer = "adam"

    [[variants]]
    name = "softmax-mismatched"               # a run name: letters, digits, - _ .
    head = "softmax"
    loss = "mismatched"
    recipe = "original"                       # optional; also: seeds, group, compare_to, description

    [tuning]                                  # optional: the same small grid for every head
    lr = [0.1, 0.2, 0.4]
    label_smoothing = [0.0, 0.1]
    seeds = [0, 1]                            # the grid's seeds (the choice: mean over them)
    tuned_seeds = [5, 6, 7]                   # each head's best then runs on these (default `seeds`
                                              # above the table); they must be seeds the grid never saw

    [[sections]]                              # optional: a table of named rows in STUDY.md
    title = "The wiring error"
    rows = ["softmax", "softmax-mismatched"]
    reference = "softmax"
    comparisons = [["softmax-mismatched", "softmax"]]  # the family (default: every row vs reference)
    primary = ["softmax-mismatched", "softmax"]        # the question's answer (default: the first)
    metric = "accuracy"                       # or coarse_accuracy, top5_accuracy, f1_macro

    [verdicts]                                # optional: how comparisons become verdicts
    alpha = 0.05                              # family-wise, Holm within each family
    repeats = "results/repeats.json"          # the equivalence margin from same-seed repeat noise
    # margin = 1.0                            # ... or a margin in percentage points
    note = "..."                              # optional: shown beside the margin (where it was measured)

    [[claims]]                                # optional: a claim and the comparison that answers it
    claim = "dropping the lowest 10 % of logits adds 2-3 points"
    rows = ["softmax-drop0.1"]                # each against `reference` (or evidence = "..." alone)
    reference = "softmax"
    expect = "better"                         # better, worse or equivalent
    size = 2.0                                # optional: the smallest difference it states (points, signed)

    [provenance]                              # optional: where a recipe's settings come from
    recipe = "original"
    settings = { optimizer = "stated: ...", epochs = "assumed: ..." }
    data = { source = "...", sha256 = "..." }
    gpu_offset = "results/gpu_kinds.json"     # optional: the offset between two GPU kinds (bench/gpu_kinds.py)

    [earlier]                                 # optional: the heads' comparisons in an earlier study
    results = "results/cifar100-study5.jsonl" # that study's results.jsonl (relative to this file)
    label = "30 epochs"                       # what its column is called
    title = "Which 30-epoch conclusions hold" # the section's title (and text = "..." under it)

    [[studies]]                               # optional: another study's heads as a section here
    spec = "cifar100-strong.toml"             # its spec (relative to this file)
    results = "../results/cifar100-strong.jsonl"  # its results.jsonl
    title = "The heads near convergence"      # the section's title (and text = "..." under it)

    [timing]                                  # optional: short runs alone on a device, for speed
    names = ["softmax", "log_softmax"]        # heads and variants (default: all of them)
    seeds = [0]                               # default [0]
    epochs = 4                                # any train setting over each name's own (default epochs 4)

Timing runs exist because runs that share a GPU (``--runs-per-device``) train faster per run but
cannot say how fast a head trains alone: each name's timing run (``timing-<name>-seed<s>``) trains a
few epochs of that name's recipe with its device to itself, after every other run, and gives the
report's epoch-time and images/s columns; it counts for no accuracy figure.

``[earlier]`` puts the heads table's comparisons (each head − ``reference``) of this study beside the
same comparisons in an earlier study's ``results.jsonl`` (its ``kind = "head"`` rows, each verdict from
that study's own heads family: every head of it against ``reference``), on the test split, and says for
each whether the earlier verdict holds.

``[[studies]]`` sets another study into this one's report, from its ``results.jsonl`` alone (no run
directories): its heads' accuracy and calibration tables, its heads' verdicts on validation and test and
its own ``[earlier]`` comparison. A study set into another cannot set in studies itself.

``extends = "other.toml"`` starts from another spec: its keys are the defaults, ``variants`` and
``sections`` are appended, ``recipes`` merged.

Settings of one run, lowest first: the built-in defaults and the dataset's preset, ``base``, the
spec's top-level settings, the variant's recipe, the variant's (or tuning point's) own settings, then
the command line's ``--set`` and ``--dataset``. ``head_params`` tables merge key by key, and are
dropped when a later layer changes the head. Every planned run is resolved and validated here, before
anything is trained. Two planned runs whose resolved settings are identical (a grid point that *is*
the shared recipe, a variant equal to a plain head) share one run directory.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import re
import tomllib
from pathlib import Path

from keras_softmax.data.sources import DATASETS
from keras_softmax.heads.base import check_fraction, check_positive
from keras_softmax.heads.registry import head_spec, list_heads
from keras_softmax.names import did_you_mean
from keras_softmax.study.verdicts import kind_offset
from keras_softmax.training.config import FIELDS, ConfigError, TrainConfig, read_toml, resolve

SPEC_KEYS = ("description", "extends", "base", "heads", "seeds", "reference", "recipes", "variants", "tuning",
             "sections", "timing", "primary", "verdicts", "claims", "provenance", "earlier", "studies",
             "heads_title")
VARIANT_KEYS = ("name", "description", "group", "recipe", "seeds", "compare_to")
TUNING_KEYS = ("heads", "seeds", "metric", "tuned_seeds")
SECTION_KEYS = ("title", "text", "rows", "reference", "comparisons", "primary", "metric")
VERDICT_KEYS = ("alpha", "margin", "repeats", "note")
CLAIM_KEYS = ("claim", "rows", "reference", "expect", "size", "evidence", "command", "metric")
#: Figures a comparison may be on (row keys of results.jsonl; the test split's are ``test_<key>``).
METRICS = ("accuracy", "top5_accuracy", "f1_macro", "coarse_accuracy", "steady_epoch_seconds")
TIMING_KEYS = ("names", "seeds")
EARLIER_KEYS = ("results", "label", "title", "text")
STUDY_KEYS = ("spec", "results", "title", "text")
#: A timing run's settings unless its [timing] table says otherwise: epoch 1 compiles, 2..4 are timed.
TIMING_DEFAULTS = {"epochs": 4}
TRAIN_KEYS = tuple(name for name in FIELDS if name != "seed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Short names of grid settings in tuning run names (``tune-softmax-lr0.1-ls0``).
_SHORT = {"lr": "lr", "label_smoothing": "ls", "weight_decay": "wd", "batch_size": "bs", "epochs": "ep"}


class StudyError(ValueError):
    """The study spec or the study directory cannot be used as asked (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named run recipe: its own settings on top of the shared ones."""

    name: str
    settings: dict
    recipe: str | None = None
    seeds: tuple | None = None
    group: str | None = None
    compare_to: str | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The same grid of settings for every head, on ``seeds``; then each head's best on the study seeds."""

    heads: tuple
    grid: dict  # setting -> list of values, in the order given
    seeds: tuple
    metric: str = "accuracy"
    tuned_seeds: tuple | None = None  # None: the study's seeds

    def points(self) -> list[dict]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]


@dataclasses.dataclass(frozen=True)
class Section:
    """A table of named rows in STUDY.md, with differences against ``reference``."""

    title: str
    rows: tuple
    text: str = ""
    reference: str | None = None
    comparisons: tuple = ()  # (a, b) pairs, a − b; empty: every row against the reference
    primary: tuple | None = None  # one of the comparisons; None: the first
    metric: str = "accuracy"


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """How comparisons become verdicts: Holm at ``alpha`` within each family, and equivalence (TOST)
    at ``margin`` (a fraction, e.g. 0.011 for 1.1 points), given or derived from ``repeats``."""

    alpha: float = 0.05
    margin: float | None = None
    repeats: Path | None = None  # JSON with "pairs": [{"accuracy": [a, b]}, ...] of same-seed repeats
    note: str = ""  # what the reader should know of the margin here (e.g. where its repeats were measured)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the study being repeated, and the comparisons (``rows`` − ``reference``) that answer it."""

    claim: str
    rows: tuple = ()
    reference: str | None = None
    expect: str | None = None  # "better"/"higher", "worse"/"lower" or "equivalent" (of rows − reference)
    size: float | None = None  # the smallest difference the claim states, signed, in points (or seconds)
    evidence: str = ""
    command: str = ""
    metric: str = "accuracy"


@dataclasses.dataclass(frozen=True)
class Earlier:
    """An earlier study's ``results.jsonl``, whose head comparisons the report sets beside this one's."""

    results: Path
    label: str = "earlier study"
    title: str = "Which earlier conclusions hold"
    text: str = ""


@dataclasses.dataclass(frozen=True)
class IncludedStudy:
    """Another study (its spec and ``results.jsonl``) whose heads a section of this report shows."""

    spec: "StudySpec"
    results: Path
    title: str
    text: str = ""


@dataclasses.dataclass(frozen=True)
class Timing:
    """Short runs of ``names`` on ``seeds``, each alone on its device: the report's speed figures."""

    names: tuple
    seeds: tuple
    settings: dict  # laid over each name's own settings (default TIMING_DEFAULTS)


@dataclasses.dataclass
class StudySpec:
    path: Path
    description: str
    base: Path | None
    settings: dict
    heads: tuple
    seeds: tuple
    reference: str
    recipes: dict
    variants: tuple
    tuning: Tuning | None
    sections: tuple
    timing: Timing | None = None
    primary: str | None = None  # the heads table's primary comparison: this head − reference
    verdicts: Verdicts = dataclasses.field(default_factory=Verdicts)
    claims: tuple = ()
    provenance: dict = dataclasses.field(default_factory=dict)
    earlier: Earlier | None = None
    studies: tuple = ()  # IncludedStudy, each a section of the report
    heads_title: str = "Heads, shared recipe"  # the title of the heads table's section

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One (head or variant) × seed of the study, and the run directory that holds it.

    ``kind`` is ``"head"``, ``"variant"``, ``"tune"`` (a grid point), ``"tuned"`` (a head at its
    best grid point) or ``"timing"`` (a short run of ``name`` alone on its device, for speed only).
    ``settings`` are what distinguishes it from the shared recipe.
    """

    name: str
    seed: int
    run_id: str
    kind: str
    config: TrainConfig
    settings: dict
    group: str | None = None
    compare_to: str | None = None


# --------------------------------------------------------------------------------------------- parsing


def load_spec(path) -> StudySpec:
    """Read and check the spec at ``path``; ``StudyError`` names the first problem."""
    path = Path(path)
    data = _read(path, seen=())
    return _parse(path, data)


def _read(path: Path, seen: tuple) -> dict:
    if not path.is_file():
        raise StudyError(f"study spec not found: {path}")
    if path.resolve() in seen:
        raise StudyError(f"{path}: extends itself (through {' -> '.join(str(p) for p in seen)})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{path}: not valid TOML: {error}") from None
    for key in ("base",):
        if isinstance(data.get(key), str):
            data[key] = str((path.parent / data[key]).resolve())
    earlier = data.get("earlier")
    if isinstance(earlier, dict) and isinstance(earlier.get("results"), str):
        data["earlier"] = {**earlier, "results": str((path.parent / earlier["results"]).resolve())}
    if isinstance(data.get("studies"), list):
        data["studies"] = [{**entry, **{key: str((path.parent / entry[key]).resolve()) for key in ("spec", "results")
                                        if isinstance(entry.get(key), str)}} if isinstance(entry, dict) else entry
                           for entry in data["studies"]]
    provenance = data.get("provenance")
    if isinstance(provenance, dict) and isinstance(provenance.get("gpu_offset"), str):
        data["provenance"] = {**provenance, "gpu_offset": str((path.parent / provenance["gpu_offset"]).resolve())}
    verdicts = data.get("verdicts")
    if isinstance(verdicts, dict) and isinstance(verdicts.get("repeats"), str):
        data["verdicts"] = {**verdicts, "repeats": str((path.parent / verdicts["repeats"]).resolve())}
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise StudyError(f"{path}: extends must be the path of another study spec (got {parent!r})")
    inherited = _read((path.parent / parent).resolve(), seen + (path.resolve(),))
    merged = dict(inherited)
    for key, value in data.items():
        if key in ("variants", "sections", "claims"):
            merged[key] = list(inherited.get(key, [])) + list(value)
        elif key == "recipes" and isinstance(value, dict):
            merged[key] = {**inherited.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def _where(path: Path, what: str | None = None) -> str:
    return f"{path}" + (f", {what}" if what else "")


def _parse(path: Path, data: dict) -> StudySpec:
    unknown = sorted(set(data) - set(SPEC_KEYS) - set(TRAIN_KEYS))
    if "seed" in data:
        raise StudyError(f"{path}: use seeds = [...] for a study, not seed")
    if unknown:
        guess = did_you_mean(unknown[0], [*SPEC_KEYS, *TRAIN_KEYS])
        raise StudyError(f"{path}: unknown key {unknown[0]!r}{guess}; a study spec holds {', '.join(SPEC_KEYS)} "
                         f"and any train setting")
    heads = data.get("heads")
    if not isinstance(heads, list) or not heads or not all(isinstance(h, str) for h in heads):
        raise StudyError(f"{path}: heads must be a non-empty list of head names, e.g. heads = [\"softmax\"]")
    for head in heads:
        _check_head(path, head)
    if len(set(heads)) != len(heads):
        raise StudyError(f"{path}: heads lists a head twice")
    seeds = _seeds(path, data.get("seeds"), "seeds")
    base = data.get("base")
    if base is not None:
        if not isinstance(base, str):
            raise StudyError(f"{path}: base must be the path of a train preset (got {base!r})")
        base = Path(base)
        if not base.is_file():
            raise StudyError(f"{path}: base preset not found: {base}")
        try:
            read_toml(base)
        except ConfigError as error:
            raise StudyError(f"{path}: base: {error}") from None
    settings = {k: v for k, v in data.items() if k in TRAIN_KEYS}
    if "head" in settings:
        raise StudyError(f"{path}: a study's heads are listed in heads = [...], not head")
    recipes = data.get("recipes", {})
    if not isinstance(recipes, dict) or not all(isinstance(r, dict) for r in recipes.values()):
        raise StudyError(f"{path}: recipes must be tables, e.g. [recipes.original]")
    for name, recipe in recipes.items():
        _check_settings(path, f"recipe {name!r}", recipe)
    variants = tuple(_variant(path, raw, recipes) for raw in _tables(path, data.get("variants", []), "variants"))
    names = list(heads) + [v.name for v in variants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise StudyError(f"{path}: the name {duplicated[0]!r} is used twice (heads and variant names must differ)")
    tuning = _tuning(path, data.get("tuning"), heads)
    reference = data.get("reference", "log_softmax")
    known = set(names) | ({f"tuned-{h}" for h in tuning.heads} if tuning else set())
    if not isinstance(reference, str) or ("reference" in data and reference not in known):
        raise StudyError(f"{path}: reference must be a head or variant of this study (got {reference!r})")
    sections = tuple(_section(path, raw, known) for raw in _tables(path, data.get("sections", []), "sections"))
    for variant in variants:
        if variant.compare_to is not None and variant.compare_to not in known:
            raise StudyError(f"{path}: variant {variant.name!r}: compare_to {variant.compare_to!r} is not a head "
                             "or variant of this study")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise StudyError(f"{path}: description must be a string")
    heads_title = data.get("heads_title", StudySpec.heads_title)
    if not isinstance(heads_title, str) or not heads_title.strip():
        raise StudyError(f"{path}: heads_title must be a non-empty string (got {heads_title!r})")
    timing = _timing(path, data.get("timing"), names)
    primary = data.get("primary")
    if primary is not None and (not isinstance(primary, str) or primary not in known):
        raise StudyError(f"{path}: primary must be a head or variant of this study (got {primary!r})")
    verdicts = _verdicts(path, data.get("verdicts", {}))
    claims = tuple(_claim(path, raw, known) for raw in _tables(path, data.get("claims", []), "claims"))
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise StudyError(f"{path}: provenance must be a table ([provenance])")
    if "gpu_offset" in provenance:
        offset = provenance["gpu_offset"]
        if not isinstance(offset, str) or not Path(offset).is_file():
            raise StudyError(f"{path}: provenance: gpu_offset must name a file bench/gpu_kinds.py wrote "
                             f"(not found: {offset})")
        try:
            provenance = {**provenance, "gpu_offset": kind_offset(offset)}
        except ValueError as error:
            raise StudyError(f"{path}: provenance: gpu_offset: {error}") from None
    earlier = _earlier(path, data.get("earlier"))
    studies = tuple(_included(path, raw) for raw in _tables(path, data.get("studies", []), "studies"))
    return StudySpec(path=path, description=description, base=base, settings=settings, heads=tuple(heads),
                     seeds=seeds, reference=reference, recipes=recipes, variants=variants, tuning=tuning,
                     sections=sections, timing=timing, primary=primary, verdicts=verdicts, claims=claims,
                     provenance=provenance, earlier=earlier, studies=studies, heads_title=heads_title)


def _results_file(path, table: str, value: str) -> Path:
    """Another study's ``results.jsonl`` named in ``table`` (already resolved against the spec's folder)."""
    results = Path(value)
    if not results.is_file():
        raise StudyError(f"{path}: {table}: results file not found: {results}")
    return results


def _included(path, raw) -> IncludedStudy:
    unknown = sorted(set(raw) - set(STUDY_KEYS))
    if unknown:
        raise StudyError(f"{path}: studies: unknown key {unknown[0]!r}{did_you_mean(unknown[0], STUDY_KEYS)}"
                         f"; a study holds {', '.join(STUDY_KEYS)}")
    for key in ("spec", "results", "title"):
        if not isinstance(raw.get(key), str):
            raise StudyError(f"{path}: studies: {key} must be a string (got {raw.get(key)!r})")
    if "text" in raw and not isinstance(raw["text"], str):
        raise StudyError(f"{path}: studies: text must be a string (got {raw['text']!r})")
    results = _results_file(path, "studies", raw["results"])
    if _read(Path(raw["spec"]), seen=()).get("studies"):  # (checked before parsing it: no cycle can start)
        raise StudyError(f"{path}: studies: {Path(raw['spec']).name} sets in studies of its own; only one level "
                         "is shown")
    return IncludedStudy(spec=load_spec(raw["spec"]), results=results, title=raw["title"], text=raw.get("text", ""))


def _earlier(path, raw) -> Earlier | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: earlier must be a table ([earlier])")
    unknown = sorted(set(raw) - set(EARLIER_KEYS))
    if unknown:
        raise StudyError(f"{path}: earlier: unknown key {unknown[0]!r}{did_you_mean(unknown[0], EARLIER_KEYS)}"
                         f"; it holds {', '.join(EARLIER_KEYS)}")
    if not isinstance(raw.get("results"), str):
        raise StudyError(f"{path}: earlier: results must be the path of the earlier study's results.jsonl")
    results = _results_file(path, "earlier", raw["results"])
    for key in ("label", "title", "text"):
        if key in raw and not isinstance(raw[key], str):
            raise StudyError(f"{path}: earlier: {key} must be a string (got {raw[key]!r})")
    return Earlier(results=results, **{k: raw[k] for k in ("label", "title", "text") if k in raw})


def _verdicts(path, raw) -> Verdicts:
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: verdicts must be a table ([verdicts])")
    unknown = sorted(set(raw) - set(VERDICT_KEYS))
    if unknown:
        raise StudyError(f"{path}: verdicts: unknown key {unknown[0]!r}{did_you_mean(unknown[0], VERDICT_KEYS)}"
                         f"; it holds {', '.join(VERDICT_KEYS)}")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise StudyError(f"{path}: verdicts: alpha must be a number in (0, 0.5) (got {alpha!r})")
    margin = raw.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0):
        raise StudyError(f"{path}: verdicts: margin must be a number of percentage points > 0 (got {margin!r})")
    repeats = raw.get("repeats")
    if repeats is not None:
        repeats = Path(repeats)
        if not repeats.is_file():
            raise StudyError(f"{path}: verdicts: repeats file not found: {repeats}")
    if margin is not None and repeats is not None:
        raise StudyError(f"{path}: verdicts: give margin or repeats, not both")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise StudyError(f"{path}: verdicts: note must be a string (got {note!r})")
    return Verdicts(alpha=float(alpha), margin=None if margin is None else float(margin) / 100, repeats=repeats,
                    note=note.strip())


def _pair(path, what, value, known) -> tuple:
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value)
            or value[0] == value[1]):
        raise StudyError(f"{path}: {what}: a comparison is a pair of two names, e.g. [\"softmax\", \"log_softmax\"] "
                         f"(got {value!r})")
    for name in value:
        if name not in known:
            raise StudyError(f"{path}: {what}: {name!r} is not a head or variant of this study")
    return tuple(value)


def _metric(path, what, value) -> str:
    if value not in METRICS:
        raise StudyError(f"{path}: {what}: metric must be one of {', '.join(METRICS)} (got {value!r})")
    return value


def _claim(path, raw: dict, known: set) -> Claim:
    unknown = sorted(set(raw) - set(CLAIM_KEYS))
    if unknown:
        raise StudyError(f"{path}: claims: unknown key {unknown[0]!r}{did_you_mean(unknown[0], CLAIM_KEYS)}"
                         f"; a claim holds {', '.join(CLAIM_KEYS)}")
    text = raw.get("claim")
    if not isinstance(text, str) or not text:
        raise StudyError(f"{path}: every claim needs claim = \"...\"")
    rows = raw.get("rows", [])
    if not isinstance(rows, list) or not all(isinstance(r, str) and r in known for r in rows):
        raise StudyError(f"{path}: claim {text!r}: rows must be heads or variants of this study (got {rows!r})")
    reference = raw.get("reference")
    if rows and (not isinstance(reference, str) or reference not in known):
        raise StudyError(f"{path}: claim {text!r}: reference must be a head or variant of this study "
                         f"(got {reference!r})")
    expect = raw.get("expect")
    if rows and expect not in ("better", "worse", "equivalent", "higher", "lower"):
        raise StudyError(f"{path}: claim {text!r}: expect must be better, worse, equivalent, higher or lower "
                         f"(got {expect!r})")
    evidence, command = raw.get("evidence", ""), raw.get("command", "")
    if not isinstance(evidence, str) or not isinstance(command, str):
        raise StudyError(f"{path}: claim {text!r}: evidence and command must be strings")
    if not rows and not evidence:
        raise StudyError(f"{path}: claim {text!r}: give rows (with reference and expect) or evidence")
    metric = _metric(path, f"claim {text!r}", raw.get("metric", "accuracy"))
    size = _claim_size(path, text, raw.get("size"), expect if rows else None)
    return Claim(claim=text, rows=tuple(rows), reference=reference, expect=expect, size=size, evidence=evidence,
                 command=command, metric=metric)


def _claim_size(path, text: str, size, expect: str | None) -> float | None:
    """A claim's stated size: a finite non-zero number whose sign is its direction (better/higher > 0)."""
    if size is None:
        return None
    where = f"{path}: claim {text!r}: size"
    if expect is None or expect == "equivalent":
        raise StudyError(f"{where} needs rows and expect = better, worse, higher or lower (it is the smallest "
                         f"difference the claim states)")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not math.isfinite(size) or size == 0:
        raise StudyError(f"{where} must be a finite non-zero number of points (got {size!r})")
    if (size > 0) != (expect in ("better", "higher")):
        raise StudyError(f"{where} must be {'> 0' if expect in ('better', 'higher') else '< 0'} for expect = "
                         f"{expect!r} (got {size!r}): its sign is the claimed direction of rows − reference")
    return float(size)


def _tables(path, value, key) -> list:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise StudyError(f"{path}: {key} must be a list of tables ([[{key}]])")
    return value


def _seeds(path, value, key) -> tuple:
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise StudyError(f"{path}: {key} must be a non-empty list of integers >= 0, e.g. {key} = [0, 1, 2] "
                         f"(got {value!r})")
    if len(set(value)) != len(value):
        raise StudyError(f"{path}: {key} lists a seed twice")
    return tuple(value)


def _check_head(path, head, what: str | None = None) -> None:
    known = list_heads()  # imports $KERAS_SOFTMAX_PLUGINS first, so a user's own heads are known
    if head not in known:
        raise StudyError(f"{_where(path, what)}: unknown head {head!r}{did_you_mean(head, known)}; "
                         f"choose one of: {', '.join(known)}")


def _check_settings(path, what: str, settings: dict) -> None:
    """Names, and the head parameters that can be checked without building a layer."""
    if "seed" in settings:
        raise StudyError(f"{_where(path, what)}: set seeds = [...] instead of seed")
    unknown = sorted(set(settings) - set(TRAIN_KEYS))
    if unknown:
        guess = did_you_mean(unknown[0], TRAIN_KEYS)
        raise StudyError(f"{_where(path, what)}: unknown setting {unknown[0]!r}{guess}; valid settings: "
                         f"{', '.join(TRAIN_KEYS)}")
    if "head" in settings:
        _check_head(path, settings["head"], what)
    params = settings.get("head_params", {})
    if not isinstance(params, dict):
        raise StudyError(f"{_where(path, what)}: head_params must be a table")


def _check_head_params(path, what: str, head: str, params: dict) -> None:
    allowed = head_spec(head).parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise StudyError(f"{_where(path, what)}: head {head!r} has no parameter {unknown[0]!r}"
                         f"{did_you_mean(unknown[0], allowed)}; its parameters "
                         f"are: {', '.join(allowed) or 'none'}")
    # The checks the layers make, without building one (a layer may allocate device memory).
    try:
        if "temperature" in params:
            check_positive("temperature", params["temperature"])
        if "drop_lowest" in params:
            check_fraction("drop_lowest", params["drop_lowest"])
    except ValueError as error:
        raise StudyError(f"{_where(path, what)}: {error}") from None


def _variant(path, raw: dict, recipes: dict) -> Variant:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise StudyError(f"{path}: every variant needs a name of letters, digits, '-', '_' or '.' (got {name!r})")
    what = f"variant {name!r}"
    settings = {k: v for k, v in raw.items() if k not in VARIANT_KEYS}
    _check_settings(path, what, settings)
    recipe = raw.get("recipe")
    if recipe is not None and recipe not in recipes:
        raise StudyError(f"{path}, {what}: unknown recipe {recipe!r}{did_you_mean(recipe, recipes)}"
                         f"; recipes: {', '.join(recipes) or 'none'}")
    seeds = _seeds(path, raw["seeds"], f"variant {name!r} seeds") if "seeds" in raw else None
    for key in ("group", "compare_to", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise StudyError(f"{path}, {what}: {key} must be a string")
    return Variant(name=name, settings=settings, recipe=recipe, seeds=seeds, group=raw.get("group"),
                   compare_to=raw.get("compare_to"), description=raw.get("description", ""))


def _tuning(path, raw, heads) -> Tuning | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: tuning must be a table ([tuning])")
    grid = {k: v for k, v in raw.items() if k not in TUNING_KEYS}
    _check_settings(path, "tuning", grid)
    if not grid:
        raise StudyError(f"{path}: tuning needs at least one setting with a list of values, e.g. lr = [0.1, 0.2]")
    for key, values in grid.items():
        if key in ("head", "head_params") or not isinstance(values, list) or not values:
            raise StudyError(f"{path}: tuning: {key} must be a non-empty list of values to try")
    tuned_heads = raw.get("heads", list(heads))
    if not isinstance(tuned_heads, list) or not tuned_heads:
        raise StudyError(f"{path}: tuning heads must be a non-empty list of head names")
    for head in tuned_heads:
        _check_head(path, head, "tuning")
    metric = raw.get("metric", "accuracy")
    if metric not in ("accuracy", "top5_accuracy", "f1_macro"):
        raise StudyError(f"{path}: tuning metric must be accuracy, top5_accuracy or f1_macro (got {metric!r})")
    seeds = _seeds(path, raw["seeds"], "tuning seeds") if "seeds" in raw else (0,)
    tuned_seeds = None
    if "tuned_seeds" in raw:
        tuned_seeds = _seeds(path, raw["tuned_seeds"], "tuning tuned_seeds")
        seen = sorted(set(tuned_seeds) & set(seeds))
        if seen:
            raise StudyError(f"{path}: tuning: tuned_seeds must be seeds the grid never saw; seed {seen[0]} is "
                             "also a grid seed (the choice was made on it)")
    return Tuning(heads=tuple(tuned_heads), grid=grid, seeds=seeds, metric=metric, tuned_seeds=tuned_seeds)


def _timing(path, raw, names: list) -> Timing | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: timing must be a table ([timing])")
    settings = {**TIMING_DEFAULTS, **{k: v for k, v in raw.items() if k not in TIMING_KEYS}}
    _check_settings(path, "timing", settings)
    if "head" in settings or "head_params" in settings:
        raise StudyError(f"{path}: timing: a timing run keeps its name's head; set names = [...] instead")
    epochs = settings["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        raise StudyError(f"{path}: timing: epochs must be an integer >= 2 (epoch 1 compiles; the later ones are "
                         f"timed), got {epochs!r}")
    timed = raw.get("names", list(names))
    if not isinstance(timed, list) or not timed or not all(isinstance(n, str) for n in timed):
        raise StudyError(f"{path}: timing: names must be a non-empty list of head or variant names")
    for name in timed:
        if name not in names:
            raise StudyError(f"{path}: timing: {name!r} is not a head or variant of this study")
    if len(set(timed)) != len(timed):
        raise StudyError(f"{path}: timing: names lists {sorted(n for n in timed if timed.count(n) > 1)[0]!r} twice")
    seeds = _seeds(path, raw["seeds"], "timing seeds") if "seeds" in raw else (0,)
    return Timing(names=tuple(timed), seeds=seeds, settings=settings)


def _section(path, raw: dict, known: set) -> Section:
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        raise StudyError(f"{path}: sections: unknown key {unknown[0]!r}{did_you_mean(unknown[0], SECTION_KEYS)}"
                         f"; a section holds {', '.join(SECTION_KEYS)}")
    title, rows = raw.get("title"), raw.get("rows")
    if not isinstance(title, str) or not title:
        raise StudyError(f"{path}: every section needs a title")
    if rows is None and raw.get("text"):
        rows = []  # a section of text only
    if not isinstance(rows, list) or not (rows or raw.get("text")) or not all(isinstance(r, str) for r in rows):
        raise StudyError(f"{path}: section {title!r}: rows must be a non-empty list of head or variant names")
    for name in rows + ([raw["reference"]] if "reference" in raw else []):
        if name not in known:
            raise StudyError(f"{path}: section {title!r}: {name!r} is not a head or variant of this study")
    what = f"section {title!r}"
    comparisons = raw.get("comparisons", [])
    if not isinstance(comparisons, list):
        raise StudyError(f"{path}: {what}: comparisons must be a list of [a, b] pairs")
    comparisons = tuple(_pair(path, what, pair, known) for pair in comparisons)
    primary = raw.get("primary")
    if primary is not None:
        primary = _pair(path, what, primary, known)
        listed = comparisons or tuple((r, raw.get("reference")) for r in rows if r != raw.get("reference"))
        if primary not in listed:
            raise StudyError(f"{path}: {what}: primary {list(primary)!r} is not one of the section's comparisons")
    metric = _metric(path, what, raw.get("metric", "accuracy"))
    return Section(title=title, rows=tuple(rows), text=str(raw.get("text", "")), reference=raw.get("reference"),
                   comparisons=comparisons, primary=primary, metric=metric)


# --------------------------------------------------------------------------------------------- planning


def _layer(merged: dict, layer: dict) -> None:
    """Lay ``layer`` over ``merged``: head_params merge (dropped when the head changes), others replace."""
    if "head" in layer and merged.get("head") not in (None, layer["head"]):
        merged.pop("head_params", None)
    for key, value in layer.items():
        if key == "head_params":
            merged["head_params"] = {**merged.get("head_params", {}), **value}
        else:
            merged[key] = value


def _format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def tune_name(head: str, point: dict) -> str:
    parts = [f"{_SHORT.get(k, k)}{_format_value(v)}" for k, v in point.items()]
    return "-".join(["tune", head, *parts])


class Planner:
    """Resolves the spec's runs with the command line's overrides, sharing identical runs."""

    def __init__(self, spec: StudySpec, *, dataset: str | None = None, settings: dict | None = None,
                 check_data: bool = True):
        self.spec = spec
        self.check_data = check_data  # False: a report from results alone, which reads no data
        self.cli = dict(settings or {})
        if dataset is not None:
            self.cli["dataset"] = dataset
        bad = sorted(set(self.cli) - set(TRAIN_KEYS))
        if bad:
            raise StudyError(f"--set {bad[0]}: unknown setting{did_you_mean(bad[0], TRAIN_KEYS)}; "
                             f"valid settings: {', '.join(TRAIN_KEYS)}")
        self._by_config: dict[str, str] = {}
        self._ids: set[str] = set()

    def config(self, what: str, layers: list[dict], seed: int) -> TrainConfig:
        merged: dict = {}
        for layer in [self.spec.settings, *layers, self.cli, {"seed": seed}]:
            _layer(merged, layer)
        merged.setdefault("head", "log_softmax")
        _check_head(self.spec.path, merged["head"], what)
        _check_head_params(self.spec.path, what, merged["head"], merged.get("head_params", {}))
        try:
            config = resolve(self.spec.base, merged)
        except ConfigError as error:
            raise StudyError(f"{self.spec.path}, {what}: {error}") from None
        if config.val_split == 0:
            raise StudyError(f"{self.spec.path}, {what}: val_split = 0 holds out no validation images, and a "
                             "study chooses and compares on them: set a validation split (e.g. val_split = 5000)")
        if not self.check_data:
            return config
        if config.dataset not in DATASETS and not Path(config.dataset).expanduser().exists():
            raise StudyError(f"dataset path not found: {config.dataset}{did_you_mean(config.dataset, DATASETS)} "
                             f"({what}; a dataset by name is one of: {', '.join(DATASETS)})")
        if config.dataset == "cifar100" and not all(importlib.util.find_spec(m) for m in ("tensorflow",
                                                                                       "tensorflow_datasets")):
            raise StudyError("dataset cifar100 needs TensorFlow and tensorflow-datasets, which are not installed "
                             "here: pass --dataset with a class-folder copy, e.g. cifar100-train-jpg.tar.gz")
        return config

    def run(self, name: str, seed: int, kind: str, layers: list[dict], settings: dict, *,
            directory: str | None = None, **extra) -> PlannedRun:
        """One planned run; its directory is ``<directory or name>-seed<seed>``, or that of an
        identical run planned before."""
        config = self.config(f"{directory or name} (seed {seed})", layers, seed)
        key = json.dumps(config.to_dict(), sort_keys=True, default=str)
        run_id = self._by_config.get(key)
        if run_id is None:
            run_id = f"{directory or name}-seed{seed}"
            if run_id in self._ids:
                raise StudyError(f"{self.spec.path}: two runs would be named {run_id!r}")
            self._by_config[key] = run_id
            self._ids.add(run_id)
        return PlannedRun(name=name, seed=seed, run_id=run_id, kind=kind, config=config, settings=settings, **extra)

    def _layers(self, name: str) -> list[dict]:
        """The settings layers of a head or variant ``name``, over the shared recipe."""
        variant = self.spec.variant(name)
        if variant is None:
            return [{"head": name}]
        return [self.spec.recipes.get(variant.recipe, {}) if variant.recipe else {}, variant.settings]

    def plan(self) -> list[PlannedRun]:
        """Every head × seed, variant × seed and tuning grid point × grid seed, in that order."""
        spec, runs = self.spec, []
        for head in spec.heads:
            for seed in spec.seeds:
                runs.append(self.run(head, seed, "head", self._layers(head), {}))
        for variant in spec.variants:
            settings = dict(variant.settings)
            if variant.recipe:
                settings = {"recipe": variant.recipe, **settings}
            for seed in variant.seeds or spec.seeds:
                runs.append(self.run(variant.name, seed, "variant", self._layers(variant.name), settings,
                                     group=variant.group, compare_to=variant.compare_to))
        if spec.tuning:
            for head in spec.tuning.heads:
                for point in spec.tuning.points():
                    for seed in spec.tuning.seeds:
                        runs.append(self.run(tune_name(head, point), seed, "tune", [{"head": head}, point],
                                             dict(point), group=f"tune-{head}"))
        return runs

    def plan_tuned(self, best: dict) -> list[PlannedRun]:
        """Each tuned head at its best grid point (``best``: head -> point) on the tuning's
        ``tuned_seeds`` (default the study's seeds)."""
        runs = []
        seeds = self.spec.tuning.tuned_seeds or self.spec.seeds
        for head, point in best.items():
            for seed in seeds:
                runs.append(self.run(f"tuned-{head}", seed, "tuned", [{"head": head}, point], dict(point),
                                     group="tuned", compare_to=None))
        return runs

    def plan_timing(self) -> list[PlannedRun]:
        """The spec's timing runs (none without ``[timing]``): each name's recipe with the timing
        settings on top, in directories ``timing-<name>-seed<s>``."""
        timing = self.spec.timing
        if timing is None:
            return []
        runs = [self.run(name, seed, "timing", [*self._layers(name), timing.settings], dict(timing.settings),
                         directory=f"timing-{name}")
                for name in timing.names for seed in timing.seeds]
        shared = next((r for r in runs if not r.run_id.startswith("timing-")), None)
        if shared is not None:
            raise StudyError(f"{self.spec.path}: timing: the timing run of {shared.name!r} would be the same run as "
                             f"{shared.run_id!r}; give [timing] settings of its own (e.g. epochs = 4)")
        return runs
