"""Decode images into 32×32 RGB uint8 arrays: the one implementation, and a script for a batch.

:func:`decode_image` is what :mod:`keras_softmax.data.sources` calls for every class-folder image.
This module imports only the standard library, numpy and PIL, so that ``sources`` can run it as a
script in worker processes that start in a fraction of a second (a worker that imported anything
from ``keras_softmax`` would import Keras and its backend: seconds each).

As a script, ``python jpeg_worker.py`` (run by file path, not ``-m``, which would import the
package) reads a batch from stdin: items, each a 9-byte header ``struct.pack("<cQ", kind, size)``
then ``size`` bytes: the image file's bytes (kind ``b"B"``) or its path, ``os.fsencode``-d (kind
``b"P"``). It writes the decoded images' ``n * 32 * 32 * 3`` bytes to stdout, in order, and exits 0.
At the first image it cannot decode it exits 1 and writes to stderr one line,
``item <index>: <reason>`` (the index within the batch).
"""

import os
import sys

if __name__ == "__main__" and sys.path:  # run as a script: keep the files beside it from shadowing
    if os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]  # this file's folder (absent under python -P)

import io
import struct

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
HEADER = struct.Struct("<cQ")
"""An item's header on the script's stdin: its kind (``b"B"`` bytes, ``b"P"`` a path) and size."""


class ImageDecodeError(ValueError):
    """An image cannot be decoded; the message is the one-line reason."""


def one_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, for one-line error reports."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def decode_image(payload: bytes | str) -> np.ndarray:
    """One image (file bytes or path) as a (32, 32, 3) uint8 array: RGB, resized (bilinear) if need be.

    Raises :class:`ImageDecodeError` if it is not an image PIL can read.
    """
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as image:
            if image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE):
                return np.asarray(image)  # CIFAR's own JPEGs: no draft, no converted copy (~30 % faster)
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))  # JPEG: decode at a reduced scale if large
            image = image.convert("RGB")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise ImageDecodeError(one_line(error)) from None


def pack_batch(payloads) -> bytes:
    """The script's stdin for ``payloads`` (file bytes, or path strings)."""
    parts = []
    for payload in payloads:
        kind, data = (b"B", payload) if isinstance(payload, bytes) else (b"P", os.fsencode(payload))
        parts += (HEADER.pack(kind, len(data)), data)
    return b"".join(parts)


def unpack_batch(data: bytes):
    """The payloads :func:`pack_batch` framed, in order."""
    offset = 0
    while offset < len(data):
        kind, size = HEADER.unpack_from(data, offset)
        offset += HEADER.size + size
        payload = data[offset - size:offset]
        yield payload if kind == b"B" else os.fsdecode(payload)


def main() -> int:
    out = sys.stdout.buffer
    for index, payload in enumerate(unpack_batch(sys.stdin.buffer.read())):
        try:
            image = decode_image(payload)
        except ImageDecodeError as error:
            out.flush()
            print(f"item {index}: {error}", file=sys.stderr, flush=True)
            return 1
        out.write(image.tobytes())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
