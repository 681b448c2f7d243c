"""A study's subprocesses: ``python -m keras_softmax_cli.child TASK ...``.

- ``train ARGS``: ``keras-softmax train ARGS``;
- ``score RUN_DIR TEST_DATASET``: score a finished run once on the test split
  (:func:`keras_softmax.study.testsplit.main`);
- ``train-and-score TEST_DATASET RUN_DIR ARGS``: ``train ARGS`` (into ``RUN_DIR``), then, once it has
  finished, ``score`` in the same process. That saves a second process's start, imports and
  backend (the study scores every run it trains, right after it). If that scoring fails, the process
  still ends with the training's status 0 and says so in a ``note:`` line, and the study, finding no
  ``test.json``, scores the run in a process of its own. Before anything else each first asks Linux to kill it
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
USAGE = ("usage: python -m keras_softmax_cli.child train ARGS... | score RUN_DIR TEST_DATASET | "
         "train-and-score TEST_DATASET RUN_DIR ARGS...")
#: The line a ``train-and-score`` process prints after scoring: the study reads the seconds from it.
SCORED = "done: scored on the test split in the training process in {seconds:.1f}s"


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
    elif task == "train-and-score" and len(args) >= 2:
        test_dataset, run_dir, args = args[0], args[1], args[2:]
        defer_imports("keras")
        from keras_softmax_cli.commands import main as group

        try:
            group.main(args=["train", *args], prog_name="keras-softmax")
        except SystemExit as done:  # click's standalone mode ends every command with SystemExit
            if done.code not in (0, None):
                raise
        score_after_training(run_dir, test_dataset)
        leave_after_success()
    else:
        raise SystemExit(USAGE)


def score_after_training(run_dir: str, test_dataset: str) -> None:
    """Score the run just trained; a failure is a ``note:`` (the study then scores it on its own)."""
    import time

    began = time.perf_counter()
    try:
        from keras_softmax.study.testsplit import main as score

        score([run_dir, test_dataset])
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the training succeeded; say why scoring did not
        print(f"note: scoring on the test split in the training process failed ({error}); the study scores "
              "the run in a process of its own", flush=True)
        return
    print(SCORED.format(seconds=time.perf_counter() - began), flush=True)


if __name__ == "__main__":
    main()
