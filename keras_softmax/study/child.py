"""A study's training subprocess: ``python -m keras_softmax.study.child train ...``.

It is ``keras-softmax ARGS`` that first asks Linux to kill it when the study process dies
(``PR_SET_PDEATHSIG``), so that a study killed outright (SIGKILL, a device's time limit) never leaves
a run training on behind it, racing the restarted study for the same run directory.
"""

from __future__ import annotations

import os
import signal
import sys

PARENT_ENV = "KERAS_SOFTMAX_STUDY_PARENT"
_PR_SET_PDEATHSIG = 1


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


def main() -> None:
    die_with_parent()
    from keras_softmax.cli import main as cli
    from keras_softmax_cli import leaving_after_success

    with leaving_after_success():  # a finished run's slot is free ~2 s sooner (no interpreter teardown)
        cli(args=sys.argv[1:], prog_name="keras-softmax")


if __name__ == "__main__":
    main()
