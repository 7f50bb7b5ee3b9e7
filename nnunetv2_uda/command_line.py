"""What every command line of ours shares: one line for an expected error, clean-up on SIGTERM, and argument types
that refuse nonsense numbers at parsing.

Expected errors are :class:`UserInputError` (a file, key or flag the user gave is wrong; the message names it) and
the file-system errors that name their file. Each prints ``<command>: error: <message>`` on one line and exits
non-zero; the traceback is shown only with ``--verbose`` or ``NNUNETV2_UDA_TRACEBACK=1``. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

TRACEBACK_VARIABLE = "NNUNETV2_UDA_TRACEBACK"
EXIT_INTERRUPTED = 130


class UserInputError(Exception):
    """Bad input, explained by the message (which names the file, key or flag and what is wrong)."""

    exit_code = 2


FILE_SYSTEM_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
EXPECTED_ERRORS = (UserInputError, *FILE_SYSTEM_ERRORS)


def one_line(error: BaseException) -> str:
    """The error's message on one line; file-system errors as ``<file>: <reason>``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def show_tracebacks() -> bool:
    return "--verbose" in sys.argv[1:] or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0")


def _terminate(signum: int, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like an exception, so every staging folder is removed on the way out


Entry = TypeVar("Entry", bound=Callable)


def command(entry: Entry) -> Entry:
    """Wraps a console-script entry point (see the module docstring)."""

    @functools.wraps(entry)
    def wrapped(*args, **kwargs):
        prog = Path(sys.argv[0]).name or entry.__name__
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return entry(*args, **kwargs)
        except KeyboardInterrupt:
            if show_tracebacks():
                raise
            print(f"{prog}: interrupted; nothing unfinished was left under a final name", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except EXPECTED_ERRORS as error:
            if show_tracebacks():
                raise
            print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(getattr(error, "exit_code", 1)) from None

    return wrapped  # type: ignore[return-value]


def _number(text: str, convert: Callable[[str], float | int], what: str, accept: Callable[[float], bool]):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not accept(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a positive integer", lambda value: value > 0)


def non_negative_int(text: str) -> int:
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    return _number(text, float, "a positive number", lambda value: value > 0)


def non_negative_float(text: str) -> float:
    return _number(text, float, "a number >= 0", lambda value: value >= 0)


def fraction(text: str) -> float:
    return _number(text, float, "a number in (0, 1]", lambda value: 0 < value <= 1)


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number", lambda value: True)
