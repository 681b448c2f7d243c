"""A suggestion for a mistyped name, for the messages that refuse one ("unknown head 'sparsemx'")."""

from __future__ import annotations

import difflib

#: How alike a typed name and a valid one must be (difflib's ratio) to be suggested.
CUTOFF = 0.75


def did_you_mean(name, choices) -> str:
    """`` (did you mean 'x'?)`` for the valid name closest to ``name``, or ``""`` when none is close.

    >>> did_you_mean("sparsemx", ["softmax", "sparsemax"]), did_you_mean("resnet", ["softmax"])
    (" (did you mean 'sparsemax'?)", '')
    """
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [str(choice) for choice in choices], n=1, cutoff=CUTOFF)
    return f" (did you mean {close[0]!r}?)" if close else ""
