"""The run directory of GUIDE §6, and the rules that keep finished work safe.

A directory is a keras-softmax *run* when it holds the marker file ``.keras-softmax-run``, written
when training claims the directory (or, for runs made before the marker existed, a ``config.toml``
of training settings beside a history, checkpoints or a report). Only a run is ever replaced:
``overwrite`` refuses any other non-empty directory (``--out .`` in a project folder, a data
folder, ``$HOME``) with one line, and changes nothing.

A run is *finished* once ``report.json`` exists. A finished run is only replaced with ``overwrite``;
an unfinished one is continued with ``resume`` (from ``checkpoints/``) or replaced with ``overwrite``.
"""

from __future__ import annotations

import csv
import io as _io
import json
import shutil
from pathlib import Path

import numpy as np

from keras_softmax import io

#: ``nll`` / ``val_nll``: the unsmoothed NLL (keras_softmax.metrics.label_nll); histories written
#: before it have no such columns, and readers take a missing column as no value.
HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "accuracy", "val_accuracy", "nll", "val_nll", "lr", "epoch_seconds",
                   "images_per_second", "elapsed_seconds")


#: The file that marks a directory as a keras-softmax run (written first, when a run claims it).
MARKER = ".keras-softmax-run"

#: ``failed.json``'s ``reason`` when the training loss became NaN or infinite (``RunDirectory.diverged``).
DIVERGED = "non-finite loss"

#: Everything keras-softmax writes at the top of a run directory (train, evaluate, export, the study's
#: test-split score). ``--overwrite`` removes these and nothing else: a run holding any other file
#: (a user's notes, a copied image) is refused with the names, never emptied.
RUN_ENTRIES = frozenset({
    MARKER, "config.toml", "history.csv", "checkpoints", "model.keras", "saved_model", "model_info.json",
    "model.onnx", "report.json", "report.md", "plots", "evaluations", "failed.json", "test.json",
})
#: What may sit inside the run's own sub-folders (``saved_model/`` and ``evaluations/`` are written
#: whole by TensorFlow and ``evaluate``, so anything there is the run's).
#: (``epoch-*.swa.npz``: the running weight average of ``swa_start``, keras_softmax.training.averaging)
RUN_FOLDER_PATTERNS = {"checkpoints": ("state.json", "epoch-*.weights.h5", "epoch-*.swa.npz"), "plots": ("*.png",)}


class RunDirError(ValueError):
    """The run directory cannot be used as asked (one-line message)."""


class RunDirectory:
    """Paths and state of one run directory."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.toml"
        self.history = self.path / "history.csv"
        self.checkpoints = self.path / "checkpoints"
        self.state = self.checkpoints / "state.json"
        self.model_keras = self.path / "model.keras"
        self.saved_model = self.path / "saved_model"
        self.model_info = self.path / "model_info.json"
        self.report = self.path / "report.json"
        self.marker = self.path / MARKER
        self.failed_file = self.path / "failed.json"

    @property
    def finished(self) -> bool:
        return self.report.is_file()

    @property
    def failed(self) -> dict | None:
        """What ``failed.json`` says when the run stopped on an error (e.g. a diverging loss), or None."""
        if not self.failed_file.is_file():
            return None
        try:
            return json.loads(self.failed_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"message": "failed.json is unreadable"}

    @property
    def diverged(self) -> dict | None:
        """``failed.json`` of an unfinished run that stopped because its loss became NaN or infinite, else
        None. Retrained with the same settings it would most likely diverge again: a study keeps it as the
        outcome of those settings (:mod:`keras_softmax.study.runner`)."""
        failed = None if self.finished else self.failed
        return failed if failed is not None and failed.get("reason") == DIVERGED else None

    def mark_failed(self, info: dict) -> None:
        """Record that the run stopped on an error; ``--resume`` or ``--overwrite`` clears it."""
        io.write_json(self.failed_file, info)

    @property
    def is_run(self) -> bool:
        """Whether the directory is recognisably a keras-softmax run (see the module docstring)."""
        if self.marker.is_file():
            return True
        return self._legacy_config() and any(
            p.exists() for p in (self.history, self.state, self.report))

    def _legacy_config(self) -> bool:
        """A ``config.toml`` of training settings only, naming a head, a dataset and a seed."""
        import tomllib

        from keras_softmax.training.config import FIELDS

        try:
            data = tomllib.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return False
        return {"head", "dataset", "seed"} <= set(data) <= set(FIELDS)

    def _is_empty(self) -> bool:
        try:
            return not self.path.exists() or not any(self.path.iterdir())
        except OSError as error:
            raise RunDirError(f"cannot read {self.path}: {error.strerror or error}") from None

    def foreign_files(self) -> list[str]:
        """Paths (relative, sorted) in the run that keras-softmax did not write; ``--overwrite`` keeps them.

        A leftover temporary file of an interrupted atomic write (``.NAME.*`` beside a run file) is the run's.
        """
        import fnmatch

        def ours(name: str, allowed) -> bool:
            if name in allowed or any(fnmatch.fnmatch(name, pattern) for pattern in allowed):
                return True
            return name.startswith(".") and any(name.startswith(f".{known}.") for known in allowed)

        foreign = []
        for child in sorted(self.path.iterdir()):
            if not ours(child.name, RUN_ENTRIES):
                foreign.append(child.name + ("/" if child.is_dir() else ""))
            elif child.name in RUN_FOLDER_PATTERNS and child.is_dir():
                patterns = RUN_FOLDER_PATTERNS[child.name]
                foreign += [f"{child.name}/{inner.name}" for inner in sorted(child.iterdir())
                            if not (inner.is_file() and ours(inner.name, patterns))]
            elif child.name not in RUN_FOLDER_PATTERNS and child.is_dir() != (child.name in (
                    "checkpoints", "saved_model", "plots", "evaluations")):
                foreign.append(child.name + ("/" if child.is_dir() else ""))
        return foreign

    def check(self, *, resume: bool, overwrite: bool) -> str:
        """What ``prepare`` would do: ``"fresh"``, ``"overwrite"`` or ``"resume"``; changes nothing.

        Raises ``RunDirError`` rather than touch work the user did not ask to replace.
        """
        if resume and overwrite:
            raise RunDirError("--resume and --overwrite exclude each other")
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory; choose a directory for --out")
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunDirError(f"cannot create {self.path}: {parent} is not a directory")
                break
        if self._is_empty():
            if resume:
                raise RunDirError(f"nothing to resume: {self.path} does not hold a run")
            return "fresh"
        if not self.is_run:
            doing = "resume" if resume else "overwrite" if overwrite else "use"
            raise RunDirError(
                f"refusing to {doing} {self.path}: it is not empty and is not a keras-softmax run "
                f"(no {MARKER} file); choose a new or empty directory for --out"
            )
        if overwrite:
            foreign = self.foreign_files()
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise RunDirError(
                    f"refusing to overwrite {self.path}: it holds files keras-softmax did not write ({shown}); "
                    "move them out, or choose another --out"
                )
            return "overwrite"
        if self.finished:
            raise RunDirError(
                f"{self.path} already holds a finished run; pass --overwrite to replace it "
                "or --out to choose another directory"
            )
        if not resume:
            failed = self.failed
            if failed is not None:
                where = f" at epoch {failed['epoch']}" if failed.get("epoch") else ""
                how = ("pass --resume to continue it from its last checkpoint or --overwrite to start again"
                       if failed.get("last_checkpoint_epoch") is not None else
                       "it made no checkpoint, so --resume would only repeat it: pass --overwrite to start again "
                       "(with other settings, e.g. a lower --lr) or choose another --out")
                raise RunDirError(
                    f"{self.path} holds a run that failed{where} ({failed.get('reason', 'see failed.json')}); {how}"
                )
            raise RunDirError(
                f"{self.path} holds an unfinished run; pass --resume to continue it "
                "or --overwrite to start again"
            )
        if not self.config.is_file():
            raise RunDirError(f"cannot resume: {self.config} is missing")
        return "resume"

    def prepare(self, *, resume: bool, overwrite: bool) -> dict | None:
        """Make the directory ready (see ``check``); return the checkpoint state to resume from."""
        action = self.check(resume=resume, overwrite=overwrite)
        if action == "resume":
            self.failed_file.unlink(missing_ok=True)  # this attempt has not failed (yet)
            return self.read_state()
        try:
            if action == "overwrite":
                # Remove the run's own files only (``check`` refused any other), not the directory
                # itself: ``--out .`` keeps the working directory.
                for child in self.path.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirError(f"cannot prepare {self.path}: {error.strerror or error}") from None
        io.write_json(self.marker, {"keras_softmax_run": 1})
        return None

    def read_state(self) -> dict | None:
        """The last checkpoint's state (``epoch``, ``weights``, ``history``, and ``swa`` when it keeps
        a weight average), or None."""
        if not self.state.is_file():
            return None
        state = json.loads(self.state.read_text(encoding="utf-8"))
        if not (self.checkpoints / state["weights"]).is_file():
            return None
        if state.get("swa") and not (self.checkpoints / state["swa"]).is_file():
            return None
        return state

    def read_swa(self, state: dict) -> dict | None:
        """The weight average a checkpoint ``state`` keeps (``WeightAverage.state()``'s arrays), or None."""
        if not state.get("swa"):
            return None
        with np.load(self.checkpoints / state["swa"]) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def save_checkpoint(self, model, epoch: int, history: list[dict], swa: dict | None = None) -> None:
        """Save weights and optimizer state after ``epoch`` epochs, atomically.

        The weights file is named by epoch and only becomes current once ``state.json`` (written
        last, atomically) names it, so a kill at any moment leaves a consistent pair. ``swa``, the
        running weight average's arrays (``WeightAverage.state()``), goes beside it in
        ``epoch-NNNN.swa.npz`` (float64 sums: about twice the model's weights in size), named by
        ``state.json`` the same way.
        """
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}.weights.h5"
        with io.atomic_path(self.checkpoints / name, suffix=".weights.h5") as tmp:
            model.save_weights(str(tmp))
        state = {"epoch": epoch, "weights": name, "history": history}
        if swa is not None:
            state["swa"] = f"epoch-{epoch:04d}.swa.npz"
            with io.atomic_path(self.checkpoints / state["swa"], suffix=".npz") as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **swa)
        io.write_json(self.state, state)
        for old in (*self.checkpoints.glob("epoch-*.weights.h5"), *self.checkpoints.glob("epoch-*.swa.npz")):
            if old.name not in (name, state.get("swa")):
                old.unlink(missing_ok=True)

    def drop_checkpoint_weights(self) -> None:
        """Remove checkpoint weights (and weight averages) once the run is finished (``model.keras``
        holds them)."""
        for old in (*self.checkpoints.glob("epoch-*.weights.h5"), *self.checkpoints.glob("epoch-*.swa.npz")):
            old.unlink(missing_ok=True)

    def write_history(self, rows: list[dict]) -> None:
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(row.get(k)) for k in HISTORY_COLUMNS})
        io.write_text(self.history, buffer.getvalue())

    def read_history(self) -> list[dict]:
        if not self.history.is_file():
            return []
        with self.history.open(newline="", encoding="utf-8") as handle:
            return [
                {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(handle)
            ]


def _format(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
