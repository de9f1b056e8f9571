"""Atomic file and directory output.

A command that fails half way must leave nothing half-written behind, and must never
replace what a user already had unless they asked with ``--force``. Every writer in
the project goes through these helpers so that rule is enforced in one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_runtime.errors import Keras2EdgeError, OutputExistsError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Readers see either the old file or the complete new one, never a prefix.

    Examples
    --------
    >>> write_bytes("/tmp/example.bin", b"abc")
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text; see :func:`write_bytes`."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON with a trailing newline."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_output_dir(out: str | os.PathLike[str], force: bool) -> Path:
    """Fail early, before any expensive work, if ``out`` cannot be used.

    An existing non-empty directory (or any existing file) is refused unless
    ``force`` is true; a parent that does not exist is created later, but one that
    is not writable is reported now.

    Returns
    -------
    Path
        ``out`` as an absolute path.

    Raises
    ------
    OutputExistsError
        ``out`` exists, is not an empty directory and ``force`` is false.
    Keras2EdgeError
        The parent directory cannot be written to.
    """
    target = Path(out).absolute()
    if target.exists() and not force:
        if not target.is_dir() or any(target.iterdir()):
            raise OutputExistsError(
                f"output '{out}' already exists; choose another --out or pass --force to replace it"
            )
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Keras2EdgeError(f"cannot write to '{parent}': permission denied; choose another --out")
    return target


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Build a directory in a hidden sibling, then move it into place in one step.

    On any exception the staging directory is removed and ``out`` is left exactly
    as it was. With ``force`` an existing ``out`` is replaced only after the new
    content is complete.

    Examples
    --------
    >>> with staged_dir("/tmp/run1", force=True) as tmp:
    ...     _ = (tmp / "hello.txt").write_text("hi")
    """
    target = check_output_dir(out, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise Keras2EdgeError(f"cannot create output '{out}': {exc.strerror or exc}") from None
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
            os.replace(stage, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
