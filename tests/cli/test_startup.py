"""Issue 22 item 4: the command starts at once and quietly.

``keras-softmax --help`` took 5-6 s (12-15 s on a busy 2-core machine) because it imported
TensorFlow, and every command printed TensorFlow's start-up lines (``cuInit``, ``cudart_stub``)
whatever ``TF_CPP_MIN_LOG_LEVEL`` said. These tests start real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .helpers import ROOT, subprocess_env

COMMANDS = ["train", "evaluate", "predict", "export", "heads", "compare", "study", "bench", "bench heads",
            "bench many-classes", "bench throughput"]

PROBE = """
import json, sys
from keras_softmax_cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch", "keras_softmax") if m in sys.modules)
print("IMPORTED=" + json.dumps(heavy), file=sys.__stdout__)
sys.exit(code)
"""


def _run(args, cache_dir, env=None, code=PROBE):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**subprocess_env(cache_dir), **(env or {})}, timeout=120)


def test_help_of_the_group_and_of_every_command_imports_no_library(cache_dir):
    for command in [""] + COMMANDS:
        process = _run([*command.split(), "--help"], cache_dir)
        assert process.returncode == 0, process.stderr
        assert "Usage: keras-softmax" in process.stdout
        imported = json.loads(process.stdout.rsplit("IMPORTED=", 1)[1])
        assert imported == [], f"`keras-softmax {command} --help` imported {imported}"
        assert process.stderr == ""


def test_a_mistyped_option_answers_without_the_library(cache_dir):
    process = _run(["train", "--epoch", "3"], cache_dir)
    assert process.returncode == 2
    assert process.stderr.splitlines() == [
        "Error: No such option '--epoch'. Did you mean '--epochs'? (see 'keras-softmax train --help')"]
    assert json.loads(process.stdout.rsplit("IMPORTED=", 1)[1]) == []


@pytest.mark.slow
def test_a_command_prints_no_backend_logs_unless_verbose(cache_dir, tmp_path):
    """``keras-softmax heads`` imports Keras (and TensorFlow on its default backend): its start-up
    lines go to the log file, and come back with --verbose (wherever it stands on the line)."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "", "KERAS_BACKEND": "tensorflow"}
    quiet = subprocess.run([sys.executable, "-m", "keras_softmax_cli", "heads"], cwd=ROOT, capture_output=True,
                           text=True, env={**subprocess_env(cache_dir), **env}, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("NAME")
    hidden = (cache_dir / "logs" / "last-command.log").read_text()
    loud = subprocess.run([sys.executable, "-m", "keras_softmax_cli", "heads", "--verbose"], cwd=ROOT,
                          capture_output=True, text=True, env={**subprocess_env(cache_dir), **env}, timeout=300)
    assert loud.returncode == 0 and loud.stdout == quiet.stdout
    # What was hidden (TensorFlow's start-up lines, where TensorFlow is installed) shows with --verbose.
    assert bool(hidden.strip()) == bool(loud.stderr.strip()), (hidden, loud.stderr)


def test_without_the_cli_extra_one_line_says_what_to_install(cache_dir, tmp_path):
    """``pip install keras-softmax`` has no click: the command says in one line what to install."""
    hide = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'click' else real(name, *a)\n"
            "sys.modules['click'] = None\n")
    process = _run(["--help"], cache_dir, code=hide + PROBE)
    assert process.returncode == 1
    assert process.stderr.splitlines() == [
        "keras-softmax: the command line needs the cli extra (click missing): pip install 'keras-softmax[cli]'"]
    assert json.loads(process.stdout.rsplit("IMPORTED=", 1)[1]) == []


def test_an_internal_error_is_one_line_pointing_at_the_log(cache_dir, tmp_path):
    """A bug (not a user error) shows one line and where its traceback is, not the traceback."""
    code = ("import sys\nimport keras_softmax_cli.commands as c\n"
            "def boom(): raise RuntimeError('kaboom')\n"
            "c.main.add_command(__import__('click').command('boom')(boom))\n" + PROBE)
    process = _run(["boom"], cache_dir, code=code)
    assert process.returncode == 1
    lines = process.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: internal error (RuntimeError: kaboom)")
    assert "Traceback" in (cache_dir / "logs" / "last-command.log").read_text()


# The console script after a command: atexit functions yes, the interpreter's teardown no (2026-12-04).
# ``Teardown`` is a module global of __main__, so only the teardown collects it; its __del__ leaves a mark.
EXIT_PROBE = """
import atexit, sys, threading, time
from pathlib import Path

marks = Path(sys.argv[1])

class Teardown:
    def __del__(self):
        (marks / "teardown").write_text("ran")

teardown = Teardown()
atexit.register(lambda: (marks / "atexit").write_text("ran"))
print("buffered output, flushed before the exit", end="")
if sys.argv[2] == "thread":
    threading.Thread(target=time.sleep, args=(0.5,)).start()  # not a daemon: the interpreter waits for it
from keras_softmax_cli import main
sys.argv = ["keras-softmax", *sys.argv[3:]]
main()
"""


def _exit_probe(tmp_path, cache_dir, *args, thread=False):
    process = _run([str(tmp_path), "thread" if thread else "-", *args], cache_dir, code=EXIT_PROBE)
    marks = sorted(p.name for p in tmp_path.iterdir())
    return process, marks


def test_a_command_that_succeeded_runs_the_atexit_functions_and_skips_the_teardown(cache_dir, tmp_path):
    """The interpreter's finalization took 1.5-2.3 s of a fresh GPU machine's first minute after training."""
    process, marks = _exit_probe(tmp_path, cache_dir, "--version")
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("buffered output, flushed before the exit")
    assert "version" in process.stdout
    assert marks == ["atexit"]


def test_a_failed_command_or_a_live_thread_leaves_the_exit_to_the_interpreter(cache_dir, tmp_path):
    process, marks = _exit_probe(tmp_path, cache_dir, "train", "--epoch", "3")
    assert process.returncode == 2
    assert marks == ["atexit", "teardown"]
    for mark in marks:
        (tmp_path / mark).unlink()
    process, marks = _exit_probe(tmp_path, cache_dir, "--version", thread=True)
    assert process.returncode == 0, process.stderr
    assert marks == ["atexit", "teardown"]


def test_called_from_python_with_arguments_main_raises_system_exit(cache_dir, tmp_path):
    code = EXIT_PROBE.replace("main()", "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n"
                                        "    print(f' came back with {done.code}')")
    process = _run([str(tmp_path), "-", "--version"], cache_dir, code=code)
    assert process.returncode == 0, process.stderr
    assert process.stdout.rstrip().endswith("came back with 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atexit", "teardown"]


LEAN_IMPORT = """
import json, sys
from keras_softmax_cli import defer_imports
defer_imports("keras")
import keras
first = sorted(m for m in ("sklearn", "matplotlib") if m in sys.modules)
value = float(keras.ops.sum(keras.ops.ones((2, 3))))  # Keras works
from sklearn.metrics import precision_recall_fscore_support  # and both import as usual afterwards
from matplotlib.figure import Figure
print(json.dumps({"imported_with_keras": first, "value": value, "sklearn": "sklearn" in sys.modules,
                  "blockers": [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_Deferred"]}))
"""

LEAN_FALLBACK = """
import json, sys
sys.path.insert(0, sys.argv[1])
from keras_softmax_cli import defer_imports
defer_imports("needs_dep", deferred=("plain_dep",))
import needs_dep as module
print(json.dumps({"value": module.VALUE, "dep": "plain_dep" in sys.modules}))
"""


def test_keras_is_imported_without_scikit_learn_and_matplotlib_which_import_as_usual_afterwards(cache_dir):
    """Keras imports both, guarded, for keras.wrappers and keras.visualization: ~1 s before the first
    compile that the command line does not need (it imports them later, while the steps compile)."""
    process = subprocess.run([sys.executable, "-c", LEAN_IMPORT], cwd=ROOT, capture_output=True, text=True,
                             env=subprocess_env(cache_dir), timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result == {"imported_with_keras": [], "value": 6.0, "sklearn": True, "blockers": []}


def test_a_module_that_needs_a_deferred_package_is_imported_again_as_usual(cache_dir, tmp_path):
    (tmp_path / "plain_dep.py").write_text("VALUE = 7\n")
    (tmp_path / "needs_dep").mkdir()
    (tmp_path / "needs_dep" / "__init__.py").write_text("from needs_dep.part import VALUE\n")
    (tmp_path / "needs_dep" / "part.py").write_text("import plain_dep\nVALUE = plain_dep.VALUE\n")  # unguarded
    process = subprocess.run([sys.executable, "-c", LEAN_FALLBACK, str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True, env=subprocess_env(cache_dir), timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    assert json.loads(process.stdout.strip().splitlines()[-1]) == {"value": 7, "dep": True}


OTHER_PACKAGE_PROBES = """
import json, sys
sys.path.insert(0, sys.argv[1])
from keras_softmax_cli import defer_imports
defer_imports("lib_under_test", deferred=("plain_dep",))
import lib_under_test
import helper_pkg, registry
print(json.dumps({"lib_saw_dep": lib_under_test.HAS_DEP, "helper_found": helper_pkg.FOUND,
                  "helper_imported": helper_pkg.IMPORTED, "dep": "plain_dep" in sys.modules,
                  "helper_runs": registry.RUNS}))
"""


def test_only_the_deferring_packages_own_imports_are_refused(cache_dir, tmp_path):
    """Keras's torch backend imports PyTorch's dynamo, which probes scikit-learn with
    importlib.util.find_spec and imports it; refusing that probe too broke every jit-compiled
    torch run of the command line (``convert_frame`` half-imported)."""
    (tmp_path / "plain_dep.py").write_text("VALUE = 7\n")
    (tmp_path / "registry.py").write_text("RUNS = 0\n")  # state that outlives a failed import, as C extensions'
    (tmp_path / "helper_pkg.py").write_text(
        "import registry\nregistry.RUNS += 1\n"
        "import importlib.util\nFOUND = importlib.util.find_spec('plain_dep') is not None\n"
        "import plain_dep\nIMPORTED = plain_dep.VALUE\n")  # unguarded, as PyTorch's probe is
    (tmp_path / "lib_under_test.py").write_text(
        "import helper_pkg\ntry:\n    import plain_dep\n    HAS_DEP = True\nexcept ImportError:\n    HAS_DEP = False\n")
    process = subprocess.run([sys.executable, "-c", OTHER_PACKAGE_PROBES, str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, env=subprocess_env(cache_dir), timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    # the helper, imported by the library meanwhile, found and imported the package at its first and only
    # execution (not failed half-way and run again); since it was then imported, the library's own guarded
    # import found it too (nothing is refused once imported)
    assert json.loads(process.stdout.strip().splitlines()[-1]) == {
        "lib_saw_dep": True, "helper_found": True, "helper_imported": 7, "dep": True, "helper_runs": 1}


TORCH_COMPILED_FIT = """
from keras_softmax_cli import defer_imports
defer_imports("keras")
import keras, numpy as np
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
model.compile("sgd", "mse", jit_compile=True)  # torch.compile: PyTorch's dynamo
model.fit(np.zeros((8, 4)), np.zeros((8, 3)), epochs=1, verbose=0)
print("fit")
"""


def test_a_jit_compiled_torch_fit_works_after_the_deferred_import(cache_dir):
    pytest.importorskip("torch")
    process = subprocess.run([sys.executable, "-c", TORCH_COMPILED_FIT], cwd=ROOT, capture_output=True, text=True,
                             env={**subprocess_env(cache_dir), "KERAS_BACKEND": "torch"}, timeout=300)
    assert process.returncode == 0 and process.stdout.strip().endswith("fit"), process.stderr[-3000:]
