"""Reading a file the user named, with errors they can act on.

Models, IDX arrays, images and CSV tables are all opened from paths given on a
command line or to the API; each must fail with one line that names the file and the
problem, in the exception type of its caller (``ModelLoadError`` for models,
``DataError`` for data).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

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


def csv_rows(
    raw: bytes, path: str | os.PathLike[str], error: type[Keras2EdgeError]
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the data rows of a CSV file, read by the rules training and the device share.

    One reader for both sides, so that a file ``python -m train`` accepts is one
    ``python -m edge_runtime predict`` accepts too: the byte-order mark spreadsheets
    write is dropped, header names are stripped and must be unique, blank lines are
    skipped, and quoted fields may hold newlines.

    Parameters
    ----------
    raw : bytes
        The file's content (from :func:`read_user_file`; a caller may also hash it).
    path : str or path-like
        The file's name, for messages.
    error : type
        The :class:`Keras2EdgeError` subclass to raise.

    Returns
    -------
    header : list of str
        The stripped column names.
    rows : iterator of (int, list of str)
        Each non-blank data row with its line number; a malformed row raises
        ``error`` while iterating.

    Examples
    --------
    >>> from edge_runtime.errors import DataError
    >>> header, rows = csv_rows(b"\\xef\\xbb\\xbfx,label\\n1,a\\n\\n2,b\\n", "t.csv", DataError)
    >>> header, list(rows)
    (['x', 'label'], [(2, ['1', 'a']), (4, ['2', 'b'])])
    """
    import csv  # not at module level: loading a model reads files through here too, and must stay lean

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise error(f"{path}: empty file; expected a header row naming the columns") from None
    except csv.Error as exc:
        raise error(f"{path}: not valid CSV ({exc})") from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise error(f"{path}: duplicate column names {', '.join(repr(d) for d in duplicates)}")

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for row in reader:
                if row:  # not a blank line
                    yield reader.line_num, row
        except csv.Error as exc:
            raise error(f"{path}: not valid CSV at line {reader.line_num} ({exc})") from None

    return header, rows()
