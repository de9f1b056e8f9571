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


def int_in_range(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An ``argparse`` type for a whole number in ``[minimum, maximum]``: counts, limits, ports.

    One rule and one message for every such option of every command, so they
    refuse bad values alike.

    Examples
    --------
    >>> int_in_range(0, 65535)("8080")
    8080
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def float_in_range(
    minimum: float, maximum: float | None = None, *, above_minimum: bool = False
) -> Callable[[str], float]:
    """An ``argparse`` type for a finite number in ``[minimum, maximum]`` (``(minimum, ...`` with ``above_minimum``).

    Examples
    --------
    >>> float_in_range(0, 1)("0.5")
    0.5
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value > minimum if above_minimum else value >= minimum
        if not (low_ok and value < float("inf") and (maximum is None or value <= maximum)):
            if maximum is not None:
                bound = f"between {minimum:g} and {maximum:g}"
            else:
                bound = f"greater than {minimum:g}" if above_minimum else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


# Counts and limits (threads, workers, sizes), and durations.
positive_int = int_in_range(1)
positive_float = float_in_range(0, above_minimum=True)


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
