"""Helpers of the end-to-end tests: invoking the CLI in-process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]

# A tiny ResNet-12 on a digits subset: a couple of seconds per run on a CPU. XLA is off because on
# a CPU compiling the train step costs more than the few steps these runs take.
TINY = ["--set", "widths=[4, 8, 8, 8]", "--set", "limit=300", "--batch-size", "32", "--set", "jit_compile=false"]


def invoke(*args):
    """Run ``keras-softmax ARGS`` in-process with Click's test runner; return the result."""
    from keras_softmax.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_ok(result):
    """The command exited 0; on failure show its output and traceback."""
    if result.exit_code != 0:
        import traceback

        detail = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(f"exit {result.exit_code}\n{result.output}\n{detail}")
    return result


def assert_user_error(result, *fragments: str) -> str:
    """A user error: non-zero exit, no traceback, exactly one ``Error:`` line holding ``fragments``.

    Returns that line.
    """
    output = result.output
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{output}"
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r}:\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one 'Error:' line:\n{output}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def subprocess_env(cache_dir) -> dict:
    """The environment of a real ``keras-softmax`` process: this checkout first, a private cache."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, "KERAS_SOFTMAX_CACHE": str(cache_dir),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli_command(*args) -> list[str]:
    """The command line of a real ``keras-softmax ARGS`` process."""
    return [sys.executable, "-m", "keras_softmax_cli", *[str(a) for a in args]]


def run_cli(*args, cwd, cache_dir, timeout=300) -> subprocess.CompletedProcess:
    """Run ``keras-softmax ARGS`` as a separate process and wait for it."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=subprocess_env(cache_dir), capture_output=True,
                          text=True, timeout=timeout)


def strict_json(text: str):
    """Parse JSON, refusing NaN and Infinity (which strict parsers such as JavaScript's reject)."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def is_png(path) -> bool:
    path = Path(path)
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
