"""What every ``python -m <package>`` entry point shares: one-line errors, exit codes.

A user running a command should see ``prog: error: what went wrong`` and a non-zero
exit status, never a Python traceback, for anything they can fix themselves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from edge_runtime.errors import Keras2EdgeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line, like every other error.

    The stock parser prints its whole usage block before the message; a user who
    mistyped one option needs only the message and where to look. Sub-command
    parsers inherit this class through ``add_subparsers``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """``argparse`` type for counts and limits (threads, workers, sizes): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """``argparse`` type for durations: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def run_cli(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn user-caused failures into one line on stderr.

    Only :class:`Keras2EdgeError` (and interrupts) are converted; any other exception
    is a bug in keras2edge and keeps its traceback so it can be reported.

    Returns
    -------
    int
        The process exit status.
    """
    try:
        return main(argv)
    except Keras2EdgeError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
