"""A study's subprocesses: ``python -m keras_softmax_cli.child train ARGS`` and ``... score RUN_DIR TEST_DATASET``.

``train ARGS`` is ``keras-softmax train ARGS``; ``score`` scores a finished run on the test split
(:func:`keras_softmax.study.testsplit.main`). Before anything else each first asks Linux to kill it
when the study process dies (``PR_SET_PDEATHSIG``), so that a study killed outright (SIGKILL, a
device's time limit) never leaves a run training on behind it, racing the restarted study for the
same run directory.

It lives here, outside :mod:`keras_softmax`, for the same reason as the console script: ``python -m
keras_softmax.anything`` imports the package, and Keras with it, before the module's first line runs.
From here the death signal is requested within milliseconds instead of after that import, and
``train`` imports Keras the way the console script does, without scikit-learn and matplotlib
(:func:`keras_softmax_cli.defer_imports`).
"""

from __future__ import annotations

import os
import signal
import sys

#: The study's process id; the same name as ``keras_softmax.study.runner.PARENT_ENV`` (a test checks),
#: not imported from there because that would import Keras first.
PARENT_ENV = "KERAS_SOFTMAX_STUDY_PARENT"
_PR_SET_PDEATHSIG = 1
USAGE = "usage: python -m keras_softmax_cli.child train ARGS... | score RUN_DIR TEST_DATASET"


def die_with_parent() -> None:
    """On Linux, get SIGKILL when the study process (``$KERAS_SOFTMAX_STUDY_PARENT``) ends."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the study died before the request took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    from keras_softmax_cli import defer_imports, leave_after_success, leaving_after_success

    args = list(sys.argv[1:] if argv is None else argv)
    task, args = (args[0], args[1:]) if args else ("", [])
    if task == "train":
        defer_imports("keras")
        from keras_softmax_cli.commands import main as group

        with leaving_after_success():  # a finished run's slot is free ~2 s sooner (no interpreter teardown)
            group.main(args=["train", *args], prog_name="keras-softmax")
    elif task == "score":
        from keras_softmax.study.testsplit import main as score

        score(args)
        leave_after_success()
    else:
        raise SystemExit(USAGE)


if __name__ == "__main__":
    main()
