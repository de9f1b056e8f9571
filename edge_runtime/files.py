"""Reading a file the user named, with errors they can act on.

Models, IDX arrays and images are all opened from paths given on a command line or
to the API; each must fail with one line that names the file and the problem, in the
exception type of its caller (``ModelLoadError`` for models, ``DataError`` for data).
"""

from __future__ import annotations

import os

from edge_runtime.errors import Keras2EdgeError


def read_user_file(
    path: str | os.PathLike[str], error: type[Keras2EdgeError], expected: str, limit: int | None = None
) -> bytes:
    """Return the bytes of ``path``, or raise ``error`` with a one-line reason.

    Parameters
    ----------
    path : str or path-like
        The file to read.
    error : type
        The :class:`Keras2EdgeError` subclass to raise.
    expected : str
        What the file should be, for the message when ``path`` is a directory
        (e.g. ``"an IDX file"``).
    limit : int, optional
        Read at most this many bytes; callers that cap a size read ``limit + 1`` to
        tell "exactly at the cap" from "over it".

    Examples
    --------
    >>> from edge_runtime.errors import DataError
    >>> read_user_file("/nonexistent", DataError, "an image file")
    Traceback (most recent call last):
    ...
    edge_runtime.errors.DataError: /nonexistent: no such file
    """
    try:
        with open(path, "rb") as handle:
            if limit is None:
                return handle.read()
            # read(limit) would allocate the whole limit up front (128 MiB for an image):
            # ask for what the file holds, plus one byte to see whether it is over.
            size = os.fstat(handle.fileno()).st_size
            return handle.read(min(limit, size + 1)) if size else handle.read(limit)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected {expected}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
