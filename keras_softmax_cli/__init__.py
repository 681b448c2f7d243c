"""The ``keras-softmax`` command, kept apart from the library so that it starts at once.

Importing :mod:`keras_softmax` imports Keras (and, on its default backend, TensorFlow: seconds), because
the package registers its layers with Keras on import. This package imports only the standard library
until a command actually needs the library, so ``keras-softmax --help``, ``keras-softmax COMMAND --help``
and a mistyped option answer at once. The commands themselves are in :mod:`keras_softmax_cli.commands`.

Library and backend logs (TensorFlow's C++ start-up lines, absl, Python warnings) go to a log file
unless ``--verbose`` is given or ``KERAS_SOFTMAX_VERBOSE=1`` is set; the command's own output and
its one-line errors always reach the terminal.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

#: What ``pip install keras-softmax`` leaves out and the command line needs (the ``cli`` extra).
EXTRA_MODULES = {"click": "click", "sklearn": "scikit-learn", "matplotlib": "matplotlib", "PIL": "pillow"}
INSTALL_EXTRA = "pip install 'keras-softmax[cli]'"
VERBOSE_VARIABLE = "KERAS_SOFTMAX_VERBOSE"


def missing_extra() -> list[str]:
    """The distributions of the ``cli`` extra that are not installed (found without importing them)."""
    return [dist for module, dist in EXTRA_MODULES.items() if importlib.util.find_spec(module) is None]


def log_path() -> Path:
    """Where the library's own logs of the last command go (under ``$KERAS_SOFTMAX_CACHE``)."""
    root = os.environ.get("KERAS_SOFTMAX_CACHE") or Path.home() / ".cache" / "keras_softmax"
    return Path(root).expanduser() / "logs" / "last-command.log"


_terminal = None  # the terminal's stderr while library logs are redirected (see quiet_library_logs)


def terminal_stderr():
    """Where the command's own messages to stderr go: the terminal, even while library logs don't."""
    return _terminal or sys.stderr


def quiet_library_logs() -> Path | None:
    """Send stderr, file descriptor 2 and Python's ``sys.stderr`` alike, to :func:`log_path`.

    That is where TensorFlow's C++ code, absl, XLA, urllib3 retries and tqdm progress bars write.
    The command's own messages and one-line errors go to :func:`terminal_stderr`, which keeps the
    terminal. ``TF_CPP_MIN_LOG_LEVEL`` alone does not do it: TensorFlow 2.21 writes its
    "cuInit"/"cudart" lines before it reads the variable. Returns the log file, or None if it could
    not be opened (then nothing is redirected).
    """
    global _terminal
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "jax", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        terminal_fd = os.dup(2)
    except OSError:
        return None
    sys.stderr.flush()
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    os.dup2(log_fd, 2)
    os.close(log_fd)
    _terminal = os.fdopen(terminal_fd, "w", buffering=1, encoding=encoding, errors="backslashreplace")
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    return path


#: Optional packages Keras imports when it is imported, for features the command line does not use
#: through Keras: scikit-learn for ``keras.wrappers``, matplotlib's pyplot for ``keras.visualization``.
KERAS_OPTIONAL_IMPORTS = ("sklearn", "matplotlib")


def _importer_package() -> str:
    """The top-level package of the code that asked for the import being looked up now (the first
    frame outside Python's import machinery), or "" if there is none."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_globals.get("__name__", "").split(".")[0] == "importlib"):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "").split(".")[0] if frame is not None else ""


class _Deferred(importlib.abc.MetaPathFinder):
    """An import finder that refuses ``names`` (and their submodules) to the code of ``importer``
    (a top-level package) while it is installed; any other package's lookups go on as usual."""

    def __init__(self, names, importer: str):
        self.names, self.importer = tuple(names), importer

    def find_spec(self, fullname, path=None, target=None):
        # Only the importer's own imports: another package imported meanwhile (PyTorch's dynamo, imported
        # by Keras's torch backend, probes scikit-learn with importlib.util.find_spec) must not fail.
        if fullname.split(".")[0] in self.names and _importer_package() == self.importer:
            raise ImportError(f"{fullname}: deferred while {self.importer} is imported", name=fullname)
        return None


class _LoaderWithout(importlib.abc.Loader):
    """A module's own loader, executing it while :class:`_Deferred` refuses ``deferred``."""

    def __init__(self, loader, deferred):
        self.loader, self.deferred = loader, tuple(deferred)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the module's own loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        finder = _Deferred((name for name in self.deferred if name not in sys.modules),
                           importer=module.__name__.split(".")[0])
        sys.meta_path.insert(0, finder)
        try:
            self.loader.exec_module(module)
            return
        except ImportError:
            pass  # it needs a deferred package after all: execute it again, refusing nothing
        finally:
            sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.startswith(module.__name__ + ".")]:
            del sys.modules[name]
        self.loader.exec_module(module)


class _ImportedWithout(importlib.abc.MetaPathFinder):
    """Once: when ``module`` is imported, its loader runs it with ``deferred`` refused (:func:`defer_imports`)."""

    def __init__(self, module: str, deferred):
        self.module, self.deferred = module, tuple(deferred)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderWithout(spec.loader, self.deferred)
        return spec


def defer_imports(module: str = "keras", deferred=KERAS_OPTIONAL_IMPORTS) -> None:
    """When ``module`` (e.g. ``keras``) is first imported, import it while the packages ``deferred``
    cannot be imported.

    ``import keras`` imports scikit-learn and matplotlib.pyplot when they are installed, inside
    ``try: ... except ImportError``, for its scikit-learn wrappers and its image-gallery plots. The
    command line uses neither, and those imports sat on the first minute's critical path, before
    the backend starts and anything can compile: ~0.9 s of ``import keras``'s ~2.5 s on the 2-core
    development CPU (bench/RESULTS.md section 5). So a command imports Keras, when it first needs it
    (a mistyped option still imports nothing), with them refused; the package's own uses (metrics,
    plots) import them as usual later, a run while its steps compile ahead
    (:func:`keras_softmax.job.import_evaluation`). In the command's process ``keras.wrappers`` and
    ``keras.visualization`` then say that their package is missing.

    Packages already imported are not affected, nor is a ``module`` already imported. If ``module``
    needs a deferred package after all (a later Keras that imports one unguarded), its half-imported
    submodules are dropped and it is executed again as usual.
    """
    if module not in sys.modules and not any(isinstance(f, _ImportedWithout) and f.module == module
                                             for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportedWithout(module, deferred))


def _split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """``--verbose`` may stand anywhere before ``--``; it is a global option, given to the group."""
    end = argv.index("--") if "--" in argv else len(argv)
    verbose = "--verbose" in argv[:end]
    if verbose:
        argv = ["--verbose"] + [a for a in argv[:end] if a != "--verbose"] + argv[end:]
    return argv, verbose


def leave_after_success() -> None:
    """End this process with status 0 now, without the interpreter's teardown; or return, changing nothing.

    After a command that imported Keras and its backend, the interpreter's finalization (clearing
    every module, destroying the backend's clients) took 1.5-2.3 s of a fresh H200's first minute and
    ~2 s on a 2-core CPU (bench/RESULTS.md §5). This does what a normal exit does first and then
    skips the rest: the ``atexit`` functions run (logging's flush, the libraries' own clean-up), the
    streams are flushed, and ``os._exit(0)`` ends the process. The run directory's files are complete
    by then: each is written and closed (atomically) before the command returns.

    It returns, for the normal exit to do its work, while a non-daemon thread is alive (the
    interpreter would wait for it), while a ``multiprocessing`` child runs, or where this Python has
    no ``atexit._run_exitfuncs``.
    """
    import atexit
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None and multiprocessing.active_children():
        return
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is None:
        return
    run_exit_functions()
    for stream in (sys.stdout, sys.stderr, _terminal):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            pass
    os._exit(0)


def main(argv: list[str] | None = None, *, exit_fast: bool | None = None) -> None:
    """The ``keras-softmax`` entry point.

    Like click, it ends with ``SystemExit`` (the command's status). As the console script (``argv``
    not given, or ``exit_fast=True``) a command that succeeded ends the process at once instead
    (:func:`leave_after_success`); called from Python with ``argv``, control comes back.
    """
    with leaving_after_success(argv is None if exit_fast is None else exit_fast):
        _main(argv)


@contextlib.contextmanager
def leaving_after_success(enabled: bool = True):
    """Around a click command run in standalone mode (which ends with ``SystemExit``): on status 0,
    :func:`leave_after_success`; any other status, or ``enabled=False``, exits as usual."""
    try:
        yield
    except SystemExit as done:
        if enabled and done.code in (0, None):
            leave_after_success()
        raise


#: What Keras 3 accepts as KERAS_BACKEND (the first three train).
KERAS_BACKENDS = ("jax", "tensorflow", "torch", "numpy", "openvino")


def _main(argv: list[str] | None) -> None:
    argv, verbose = _split_verbose(list(sys.argv[1:] if argv is None else argv))
    missing = missing_extra()
    if missing:
        sys.stderr.write(f"keras-softmax: the command line needs the cli extra ({', '.join(missing)} missing): "
                         f"{INSTALL_EXTRA}\n")
        raise SystemExit(1)
    backend = os.environ.get("KERAS_BACKEND", "")
    if backend and backend not in KERAS_BACKENDS:
        sys.stderr.write(f"Error: KERAS_BACKEND={backend} is not a Keras backend; use one of "
                         f"{', '.join(KERAS_BACKENDS[:3])}\n")
        raise SystemExit(1)
    verbose = verbose or os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")
    only_help = not argv or any(a in ("--help", "-h", "--version") for a in argv)  # no library: nothing to hide
    log = None if verbose or only_help else quiet_library_logs()
    if not only_help:
        defer_imports("keras")  # Keras without scikit-learn and matplotlib, whenever a command imports it
    from keras_softmax_cli.commands import main as group

    try:
        group.main(args=argv, prog_name="keras-softmax")
    except Exception as error:  # a bug, not a user error (those are one line already): say where the detail is
        if verbose or log is None:
            raise
        import traceback

        with open(log, "a", encoding="utf-8") as handle:
            traceback.print_exc(file=handle)
        terminal_stderr().write(f"Error: internal error ({error.__class__.__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                         f"the traceback is in {log} (rerun with --verbose to see it here)\n")
        raise SystemExit(1) from None
