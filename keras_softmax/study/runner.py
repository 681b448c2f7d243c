"""Run a study: train every planned run that is not finished, then write results.jsonl and STUDY.md.

The study directory::

    DIR/
      study.json        the invocation (spec, --dataset, --set), for the report's command line
                        (--report-only reads it and leaves it as the study wrote it)
      configs/<run>.toml  the resolved settings of each run (what `train --config` is given)
      runs/<run>/       ordinary run directories (GUIDE §6)
      logs/<run>.log    everything each training process printed, attempt after attempt
      results.jsonl     one row per finished run
      runs/<run>/test.json  its test-split figures (with --test-dataset; see .testsplit)
      STUDY.md, plots/  the report

Each run trains in its own process, ``keras-softmax train`` (through :mod:`keras_softmax_cli.child`):
Keras's global state (dtype policy, seeds, compiled functions) stays per run, and a process sees
exactly one GPU (``CUDA_VISIBLE_DEVICES``). A run directory with ``report.json`` is finished and never
trained again; one with ``config.toml`` but no report is continued with ``train --resume`` (from its
last checkpoint, or from the start when it has none); one without ``config.toml`` never got past
loading and is replaced. A finished run whose settings differ from the spec's is an error, not silently kept or
retrained. A run that fails is recorded and the others go on; the study then exits non-zero. A run whose
loss became NaN or infinite (``failed.json``, ``RunDirectory.diverged``) is not a failure but the outcome
of its settings: it is kept, listed as diverged in the report, counted as the worst point of a tuning
grid, its learning rate set aside for its head (:func:`~keras_softmax.study.results.best_points`), and not
trained again (retrained with the same settings it would most likely diverge again, every invocation, and a
grid with it would never be complete); remove its directory to retry it.

With several devices, ``devices`` worker slots each take the next run; slot ``i`` runs on GPU ``i``
(of ``CUDA_VISIBLE_DEVICES`` when set). ``runs_per_device`` > 1 gives each GPU that many slots, each
run limited to its share of the GPU's memory. The spec's timing runs (``[timing]``) train last, one
per device whatever ``runs_per_device``, so that their epoch times are a head's alone. The parent
never imports a backend's device runtime, so it holds no GPU memory.

With ``test_dataset`` (``--test-dataset``), each run is scored on that test split once, as soon as
it has trained, by its training process (``keras_softmax_cli.child train-and-score``: no second
process to start, import and connect to the GPU), or, if that scoring failed, in a process of its own
on the same slot (:mod:`.testsplit`). After the invocation's training, every finished run that has
its ``model.keras`` and no ``test.json`` yet (one trained without ``--test-dataset``) is scored too.
A time budget never skips scoring: a run's weights do not outlive its machine, and it stops only new
runs from starting. Timing runs are not scored. Nothing is chosen by a test figure: the tuning reads
validation figures only.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from keras_softmax import io
from keras_softmax.study.results import (
    PLACEMENTS, RUN_PLACEMENT, TEST_FILE, best_points, collect, diverged_runs, read_placements, write_results,
)
from keras_softmax.study.spec import PlannedRun, Planner, StudyError, load_spec
from keras_softmax.training.callbacks import format_duration
from keras_softmax.training.config import ConfigError, parse_head_param, resolve, to_toml
from keras_softmax.training.rundir import RunDirectory

__all__ = ["StudyOutcome", "run_study", "visible_gpus"]

_RELAY = ("epoch ", "resuming ", "done:", "Error", "note:")
#: keras_softmax_cli.child.SCORED, as the study reads it (not imported: that module is the child's).
_SCORED = re.compile(r"done: scored on the test split in the training process in ([0-9.]+)s$")
#: The study's process id, for :func:`keras_softmax_cli.child.die_with_parent` (the child's module,
#: outside this package so that it starts without importing Keras).
PARENT_ENV = "KERAS_SOFTMAX_STUDY_PARENT"


@dataclasses.dataclass
class StudyOutcome:
    """What a study invocation did."""

    planned: int  # distinct run directories
    finished: int  # with a report after this invocation
    trained: int  # trained (or resumed) by this invocation
    failed: list  # (run id, one-line reason)
    report: Path | None
    diverged: list = dataclasses.field(default_factory=list)  # run ids whose loss became NaN or infinite


@dataclasses.dataclass(frozen=True)
class Slot:
    index: int
    gpu: str | None  # CUDA_VISIBLE_DEVICES of its processes; None on a machine without GPUs
    sharing: int = 1  # runs at the same time on this slot's device

    @property
    def label(self) -> str:
        if self.gpu is None:
            return "CPU" if self.index == 0 else f"CPU slot {self.index}"
        return f"GPU {self.gpu}" + (f" (slot {self.index})" if self.sharing > 1 else "")


def visible_gpus() -> list[str]:
    """The GPU ids a process may use: ``CUDA_VISIBLE_DEVICES`` when set, else those ``nvidia-smi -L`` lists.

    Never imports JAX or TensorFlow (either would take GPU memory in this process).
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def make_slots(devices, runs_per_device: int = 1) -> list[Slot]:
    """Worker slots for ``devices`` (None: one per visible GPU, at least one; ``"all"``; or a count).

    ``runs_per_device`` > 1 trains that many runs on each device at the same time: one run's
    start-up (imports, data, compilation) and evaluation then overlap another's training.
    """
    if isinstance(runs_per_device, bool) or not isinstance(runs_per_device, int) or runs_per_device < 1:
        raise StudyError(f"--runs-per-device must be a positive number (got {runs_per_device!r})")
    gpus = visible_gpus()
    if devices in (None, "all"):
        count = max(1, len(gpus))
    else:
        try:
            count = int(devices)
        except (TypeError, ValueError):
            raise StudyError(f"--devices must be a positive number or all (got {devices!r})") from None
        if count < 1:
            raise StudyError(f"--devices must be a positive number or all (got {devices!r})")
        if gpus and count > len(gpus):
            raise StudyError(f"--devices {count}, but only {len(gpus)} GPU(s) are visible (one run per GPU)")
    return [Slot(device * runs_per_device + k, gpus[device] if gpus else None, runs_per_device)
            for k in range(runs_per_device) for device in range(count)]


def parse_settings(settings) -> dict:
    """``KEY=VALUE`` strings (``--set``) as a dict, values read as TOML where they can be."""
    try:
        return dict(parse_head_param(s) for s in settings or ())
    except ConfigError as error:
        raise StudyError(str(error).replace("--head-param", "--set")) from None


# --------------------------------------------------------------------------------------------- run state


def run_state(path: Path) -> str:
    """``"finished"``, ``"diverged"`` (its loss became NaN or infinite), ``"resume"`` (config.toml, no report),
    ``"replace"`` (other leftovers) or ``"new"``."""
    if (path / "report.json").is_file():
        return "finished"
    if RunDirectory(path).diverged is not None:
        return "diverged"
    if (path / "config.toml").is_file():
        return "resume"
    if path.exists():
        return "replace"
    return "new"


def _differences(planned: PlannedRun, path: Path) -> list[str]:
    """Settings in which the run directory's config.toml differs from the planned run's."""
    try:
        existing = resolve(path / "config.toml").to_dict()
    except ConfigError as error:
        return [f"its config.toml cannot be read ({error})"]
    wanted = planned.config.to_dict()
    if wanted["precision"] == "auto":
        existing["precision"] = "auto"  # resolved to the device's policy when the run started
    return [f"{key}={existing.get(key)!r} (the spec now gives {value!r})"
            for key, value in wanted.items() if existing.get(key) != value]


# --------------------------------------------------------------------------------------------- the study


class _Runner:
    def __init__(self, out: Path, slots: list[Slot], log, start_until: float | None = None,
                 test_dataset: str | None = None):
        self.out, self.slots, self.log = out, slots, log
        self.test_dataset = test_dataset
        self.start_until = start_until  # time.monotonic() after which no run starts (None: no limit)
        self.deferred = 0  # runs left for the next invocation by that limit
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False
        self.walls: list[float] = []
        self.prior: list[float] = []
        self.failed: list[tuple[str, str]] = []
        self.diverged: list[str] = []  # run ids whose loss became NaN or infinite (not failures: results)
        self.trained = 0
        self.scored = 0
        self.scoring_seconds: dict[str, float] = {}  # run -> seconds its training process spent scoring it

    def eta(self, remaining: int) -> str:
        walls = self.walls or self.prior
        if not walls:
            return "ETA unknown until a run finishes"
        return f"ETA {format_duration(sum(walls) / len(walls) * remaining / len(self.slots))}"

    def execute(self, jobs: list[tuple[PlannedRun, str]]) -> None:
        """Train ``jobs`` (planned run, state) on the slots; returns when all are done or failed."""
        if not jobs:
            return
        queue = collections.deque(jobs)
        total, started, done = len(jobs), [0], [0]

        def worker(slot: Slot):
            while True:
                with self.lock:
                    if self.stopping or not queue:
                        return
                    if self.start_until is not None and time.monotonic() >= self.start_until:
                        if not self.deferred:
                            self.log(f"time budget spent: {len(queue)} run(s) left for the next invocation "
                                     "(the runs in flight finish)")
                        self.deferred = len(queue)
                        return
                    planned, state = queue.popleft()
                    started[0] += 1
                    index = started[0]
                    verb = {"resume": "resuming", "score": "scoring on the test split"}.get(state, "training")
                    self.log(f"[{index}/{total}] {verb} {planned.run_id} on {slot.label} ... "
                             f"{self.eta(total - done[0])}")
                began = time.perf_counter()
                code, reason = self.train(planned, state, slot)
                wall = time.perf_counter() - began
                scoring = self.scoring_seconds.pop(planned.run_id, None)  # scored in the training process
                with self.lock:
                    done[0] += 1
                    if self.stopping:
                        return
                    if code == 0 and state == "score":
                        self.scored += 1
                        self.log(f"[{index}/{total}] scored {planned.run_id} on the test split in "
                                 f"{format_duration(wall)}")
                    elif code == 0:
                        training = wall - (scoring or 0.0)
                        self.walls.append(wall)
                        self.trained += 1
                        self.record_placement(planned.run_id, slot)
                        self.log(f"[{index}/{total}] finished {planned.run_id} in {format_duration(training)}"
                                 f"{self._accuracy(planned)}; {self.eta(total - done[0])}")
                        if scoring is not None and (self.out / "runs" / planned.run_id / TEST_FILE).is_file():
                            self.scored += 1
                            self.log(f"[{index}/{total}] scored {planned.run_id} on the test split in "
                                     f"{format_duration(scoring)} (in its training process)")
                            continue
                    elif self._diverged(planned, index, total):
                        continue
                    else:
                        self.failed.append((planned.run_id, reason))
                        self.log(f"[{index}/{total}] FAILED {planned.run_id} (exit {code}): {reason}; "
                                 f"log: {self.out / 'logs' / (planned.run_id + '.log')}")
                        continue
                    if state == "score" or not self.scores(planned):
                        continue
                # Scored now, on the slot that trained it: the weights exist only until the machine is
                # given back, and the time budget (start_until) must not leave a finished run unscored.
                began = time.perf_counter()
                code, reason = self.train(planned, "score", slot)
                wall = time.perf_counter() - began
                with self.lock:
                    if self.stopping:
                        return
                    if code == 0:
                        self.scored += 1
                        self.log(f"[{index}/{total}] scored {planned.run_id} on the test split in "
                                 f"{format_duration(wall)}")
                    else:
                        self.failed.append((planned.run_id, f"test-split scoring: {reason}"))
                        self.log(f"[{index}/{total}] FAILED scoring {planned.run_id} (exit {code}): {reason}; "
                                 f"log: {self.out / 'logs' / (planned.run_id + '.log')}")

        threads = [threading.Thread(target=worker, args=(slot,), daemon=True) for slot in self.slots]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except BaseException:
            self.stop()
            for thread in threads:
                thread.join(timeout=30)
            raise

    def _diverged(self, planned: PlannedRun, index: int, total: int) -> bool:
        """Whether the run that just ended non-zero diverged; if so it is logged as the run's outcome."""
        path = self.out / "runs" / planned.run_id
        failed = RunDirectory(path).diverged
        if failed is None:
            return False
        self.diverged.append(planned.run_id)
        where = f"epoch {failed.get('epoch')}, lr {planned.config.lr:g}"
        self.log(f"[{index}/{total}] DIVERGED {planned.run_id} ({where}): the loss became NaN or infinite; kept as "
                 f"this setting's outcome and not trained again (remove {path} to retry it)")
        return True

    def scores(self, planned: PlannedRun) -> bool:
        """Whether ``planned`` is scored on the test split as soon as it has trained."""
        return self.test_dataset is not None and planned.kind != "timing"

    def record_placement(self, run_id: str, slot: Slot) -> None:
        """Note how many runs shared the device ``run_id`` trained on (the report times only lone runs),
        in the study's placements.json and in the run directory itself, which travels with the run."""
        placements = read_placements(self.out)
        placements[run_id] = slot.sharing
        io.write_json(self.out / PLACEMENTS, placements)
        io.write_json(self.out / "runs" / run_id / RUN_PLACEMENT, {"runs_sharing_device": slot.sharing})

    def _accuracy(self, planned: PlannedRun) -> str:
        try:
            report = json.loads((self.out / "runs" / planned.run_id / "report.json").read_text())
            return f" (val top-1 {100 * report['accuracy']:.2f}%)"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def command(self, planned: PlannedRun, state: str) -> list[str]:
        run_dir = (self.out / "runs" / planned.run_id).resolve()
        if state == "score":
            return [sys.executable, "-m", "keras_softmax_cli.child", "score", str(run_dir),
                    str(Path(self.test_dataset).expanduser().resolve())]
        base = [sys.executable, "-m", "keras_softmax_cli.child", "train"]
        if self.scores(planned):  # scored right after training, in the same process
            base = [sys.executable, "-m", "keras_softmax_cli.child", "train-and-score",
                    str(Path(self.test_dataset).expanduser().resolve()), str(run_dir)]
        if state == "resume":
            return base + ["--resume", "--out", str(run_dir)]
        config = (self.out / "configs" / f"{planned.run_id}.toml").resolve()
        command = base + ["--config", str(config), "--out", str(run_dir)]
        return command + (["--overwrite"] if state == "replace" else [])

    def environment(self, slot: Slot) -> dict:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # this keras_softmax, whatever the child's sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_ENV] = str(os.getpid())
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        if slot.sharing > 1:  # each run takes its share of the GPU's memory, not JAX's default 75 %
            env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / slot.sharing:.3f}")
            env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        return env

    def train(self, planned: PlannedRun, state: str, slot: Slot) -> tuple[int, str]:
        """Run one training process, its output to logs/<run>.log; ``(exit status, last error line)``."""
        command = self.command(planned, state)
        log_path = self.out / "logs" / f"{planned.run_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        last_error = ""
        with log_path.open("a", encoding="utf-8") as log_file:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            log_file.write(f"==== {stamp} on {slot.label}: {shlex.join(command)}\n")
            log_file.flush()
            with self.lock:
                if self.stopping:
                    return 130, "interrupted"
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           errors="replace", env=self.environment(slot))
                self.procs[planned.run_id] = process
            try:
                for line in process.stdout:
                    log_file.write(line)
                    log_file.flush()
                    text = line.rstrip()
                    if text.startswith("Error"):
                        last_error = text
                    scored = _SCORED.match(text)
                    if scored:  # the study says it itself, once the process has ended
                        self.scoring_seconds[planned.run_id] = float(scored.group(1))
                    elif text.startswith(_RELAY):
                        with self.lock:
                            self.log(f"    {planned.run_id} | {text}")
                code = process.wait()
            finally:
                with self.lock:
                    self.procs.pop(planned.run_id, None)
        if code != 0 and not last_error:
            tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            last_error = tail[-1] if tail else f"exit status {code}"
        return code, last_error

    def stop(self) -> None:
        """Stop every training process (they are resumable) and start no other."""
        with self.lock:
            self.stopping = True
            procs = list(self.procs.values())
        for process in procs:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for process in procs:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def _jobs(planned_runs, out: Path) -> tuple[list, int]:
    """The distinct runs that still need training (with their state), and how many are settled: finished,
    or diverged with the planned settings (a diverged run of other settings is trained again)."""
    jobs, seen, finished = [], set(), 0
    for planned in planned_runs:
        if planned.run_id in seen:
            continue
        seen.add(planned.run_id)
        path = out / "runs" / planned.run_id
        state = run_state(path)
        if state in ("finished", "diverged", "resume"):
            differences = _differences(planned, path)
            if differences and state == "finished":
                raise StudyError(f"{path} was trained with {differences[0]}: give the same --dataset and --set "
                                 "as when it was trained, or remove that run directory to retrain it, or use "
                                 "another --out")
            if differences:
                state = "replace"  # an unfinished or diverged run of other settings: start it again
        if state in ("finished", "diverged"):
            finished += 1
        else:
            jobs.append((planned, state))
    return jobs, finished


def _write_configs(planned_runs, out: Path) -> None:
    for planned in planned_runs:
        path = out / "configs" / f"{planned.run_id}.toml"
        text = to_toml(planned.config)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            io.write_text(path, text)


def _describe(jobs, settled: int, diverged: int, slots) -> str:
    resume = sum(1 for _, state in jobs if state == "resume")
    train = len(jobs) - resume
    where = f"{len(slots)} device(s): " + ", ".join(slot.label for slot in slots)
    return (f"{settled + len(jobs)} runs: {_settled(settled, diverged)}, {resume} to resume, {train} to train; "
            f"{where}")


def _settled(settled: int, diverged: int) -> str:
    """``"N finished"``, with the diverged runs among the settled ones named apart."""
    return f"{settled - diverged} finished" + (f", {diverged} diverged (not trained again)" if diverged else "")


def _prior_walls(planned_runs, out: Path) -> list[float]:
    walls = []
    for planned in planned_runs:
        path = out / "runs" / planned.run_id / "report.json"
        if path.is_file():
            try:
                wall = json.loads(path.read_text()).get("wall_seconds")
            except ValueError:
                continue
            if wall:
                walls.append(float(wall))
    return walls


def _to_score(planned_runs, out: Path) -> list[tuple[PlannedRun, str]]:
    """The distinct finished runs (not timing runs) with a model and no test figures yet."""
    jobs, seen = [], set()
    for planned in planned_runs:
        run = out / "runs" / planned.run_id
        if planned.kind == "timing" or planned.run_id in seen:
            continue
        seen.add(planned.run_id)
        if ((run / "report.json").is_file() and (run / "model.keras").is_file()
                and not (run / TEST_FILE).is_file()):
            jobs.append((planned, "score"))
    return jobs


def study_command(spec_path, out, dataset, settings: dict, test_dataset=None) -> str:
    words = ["keras-softmax", "study", str(spec_path), "--out", str(out)]
    if dataset:
        words += ["--dataset", str(dataset)]
    if test_dataset:
        words += ["--test-dataset", str(test_dataset)]
    for key, value in settings.items():
        words += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return shlex.join(words)


def run_study(spec_path, out, *, dataset: str | None = None, settings=(), devices=None, runs_per_device: int = 1,
              budget: float | None = None, report_only: bool = False, report_path=None, plots_dir=None,
              test_dataset: str | None = None, log=print) -> StudyOutcome:
    """Train what ``spec_path`` plans into ``out`` (skipping finished runs), then write the report.

    Args:
        spec_path: the study spec (TOML; see :mod:`keras_softmax.study.spec`).
        out: the study directory.
        dataset: replaces every run's dataset (e.g. the class-folder copy of CIFAR-100).
        settings: ``KEY=VALUE`` strings (or a dict) laid over every run's settings.
        devices: worker slots: None or ``"all"`` (one per visible GPU, else one) or a count.
        runs_per_device: runs trained at the same time on each device (default 1).
        budget: seconds from now during which runs may start (None: no limit); the runs in flight
            then finish and the rest wait for the next invocation, so a time-limited machine loses no
            half-trained run.
        report_only: train nothing; rebuild ``results.jsonl`` and ``STUDY.md`` from what exists.
        report_path: write the report here instead of ``out/STUDY.md`` (e.g. ``zoo/STUDY.md``).
        plots_dir: write its plots here instead of ``out/plots`` (linked relative to the report).
        test_dataset: the test split (class folders or .tar.gz, ``test/<class>/*.jpg``): every finished
            run with a model and no ``test.json`` is scored on it once (:mod:`.testsplit`).
        log: prints one line.

    Raises:
        StudyError: the spec or the study directory cannot be used (before any training).
    """
    from keras_softmax.study.report import write_study_report

    if budget is not None and not budget >= 0:
        raise StudyError(f"--budget must be a number of seconds >= 0 (got {budget!r})")
    out = Path(out)
    overrides = dict(settings) if isinstance(settings, dict) else parse_settings(settings)
    spec = load_spec(spec_path)
    # A report reads only results and run directories: the data need not be here (the dataset is still
    # named, since it is part of each run's settings).
    planner = Planner(spec, dataset=dataset, settings=overrides, check_data=not report_only)
    planned = planner.plan()
    jobs, finished = _jobs(planned, out)
    if report_only and not finished:
        raise StudyError(f"--report-only: {out} holds no finished run of {spec.path.name}, so there is nothing to "
                         "report (is --out the study's directory?); nothing was written")
    if report_path is not None:
        io.check_replaceable(report_path, "study report")
    if out.is_dir() and any(out.iterdir()) and not (out / "study.json").is_file() and not (out / "runs").is_dir():
        raise StudyError(f"refusing to use {out}: it is not empty and holds no study (no study.json or runs/); "
                         "choose a new or empty --out")
    slots = make_slots(devices, runs_per_device) if not report_only else [Slot(0, None)]
    out.mkdir(parents=True, exist_ok=True)
    if test_dataset is not None and not report_only and not Path(test_dataset).expanduser().exists():
        raise StudyError(f"--test-dataset not found: {test_dataset}")
    command = study_command(spec_path, out, dataset, overrides, test_dataset)
    recorded = out / "study.json"
    if report_only and recorded.is_file():
        # The study's own invocation stays on record and heads its report, whatever this rebuild was given.
        try:
            command = io.read_json(recorded).get("command", command)
        except ValueError as error:
            raise StudyError(f"{error}; --report-only reads the study's invocation from it") from None
    else:
        invocation = {"spec": str(spec_path), "dataset": dataset, "settings": overrides, "command": command}
        if test_dataset is not None:
            invocation["test_dataset"] = str(test_dataset)
        io.write_json(recorded, invocation)
    runner = _Runner(out, slots, log, start_until=None if budget is None else time.monotonic() + budget,
                     test_dataset=test_dataset)
    runner.prior = _prior_walls(planned, out)
    # settled as diverged: not among the jobs (a diverged run of other settings is trained again)
    diverged = len({row["run_dir"] for row in diverged_runs(planned, out)} - {f"runs/{p.run_id}" for p, _ in jobs})
    if report_only:
        log(f"study {spec.path}: report only; {finished + len(jobs)} runs: {_settled(finished, diverged)}")
    else:
        log(f"study {spec.path}: {_describe(jobs, finished, diverged, slots)}")
        _write_configs(planned, out)
        _with_signals(lambda: runner.execute(jobs))
        write_results(collect(planned, out), out / "results.jsonl")

    if spec.tuning:
        best = best_points(spec.tuning, collect(planned, out), diverged_runs(planned, out))
        tuned = planner.plan_tuned(best)
        waiting = [h for h in spec.tuning.heads if h not in best]
        if tuned and not report_only:
            more, done = _jobs(tuned, out)
            log(f"tuning: best grid point of {len(best)} head(s) chosen; {len(more)} more run(s) at those settings"
                + (f"; still waiting for the grid of {', '.join(waiting)}" if waiting else ""))
            _write_configs(tuned, out)
            _with_signals(lambda: runner.execute(more))
        planned = planned + tuned

    timing = planner.plan_timing()
    if timing and not report_only:
        more, _ = _jobs(timing, out)
        if more:
            log(f"timing: {len(more)} short run(s), each alone on its device, for the epoch-time columns")
            _write_configs(timing, out)
            alone = _Runner(out, make_slots(devices, 1), log, start_until=runner.start_until)
            _with_signals(lambda: alone.execute(more))
            runner.trained += alone.trained
            runner.failed += alone.failed
            runner.diverged += alone.diverged
    planned = planned + timing

    if test_dataset is not None and not report_only:
        score = _to_score(planned, out)
        if score:
            log(f"test split: scoring {len(score)} finished run(s) once on {test_dataset}")
            # no start deadline: a run left unscored is retrained, since its weights do not last
            scorer = _Runner(out, slots, log, test_dataset=test_dataset)
            _with_signals(lambda: scorer.execute(score))
            runner.scored += scorer.scored
            runner.failed += scorer.failed

    rows = collect(planned, out)
    write_results(rows, out / "results.jsonl")
    distinct = {p.run_id for p in planned}
    done_ids = {p.run_id for p in planned if (out / "runs" / p.run_id / "report.json").is_file()}
    report = write_study_report(spec, planned, rows, out, command=command, report_path=report_path,
                                plots_dir=plots_dir)
    log(f"results: {out / 'results.jsonl'} ({len(rows)} rows); report: {report}")
    if runner.failed:
        log(f"{len(runner.failed)} run(s) failed: " + "; ".join(f"{run}: {why}" for run, why in runner.failed))
    return StudyOutcome(planned=len(distinct), finished=len(done_ids), trained=runner.trained,
                        failed=runner.failed, report=report, diverged=runner.diverged)


def _with_signals(work) -> None:
    """Run ``work`` with SIGTERM turned into KeyboardInterrupt (so ``timeout`` stops the runs cleanly)."""
    if threading.current_thread() is not threading.main_thread():
        work()
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        work()
    finally:
        signal.signal(signal.SIGTERM, previous)
