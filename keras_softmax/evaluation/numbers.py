"""How reports write numbers."""

from __future__ import annotations


def fixed(value: float, digits: int = 4, spec: str = "f") -> str:
    """``value`` with ``digits`` decimals (``spec`` "g": significant digits), never "-0.0000": a value
    that rounds to zero has no sign (a perfect fit's loss, -log 1, is -0.0 in floating point).

    >>> fixed(-0.0), fixed(-1e-9, 2), fixed(-0.5, 1)
    ('0.0000', '0.00', '-0.5')
    """
    text = f"{float(value):.{digits}{spec}}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text
