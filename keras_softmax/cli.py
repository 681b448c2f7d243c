"""The ``keras-softmax`` command line: it lives in :mod:`keras_softmax_cli` (importable without Keras).

This module keeps ``from keras_softmax.cli import main`` and ``python -m keras_softmax.cli`` working.
"""

from __future__ import annotations

if __name__ == "__main__":  # pragma: no cover
    from keras_softmax_cli import main as _entry_point

    _entry_point()
else:
    from keras_softmax_cli.commands import friendly_errors, main  # noqa: F401
