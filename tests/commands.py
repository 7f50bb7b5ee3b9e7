"""Console commands and bench scripts run inside the test process, with their own ``sys.argv``, environment, exit
code, stdout and stderr, as ``subprocess.run(args, capture_output=True, text=True)`` gives them back.

A fresh interpreter costs 4-10 s here (torch and nnU-Net's imports), a command called in-process milliseconds.
Tests of what our commands do with their arguments and inputs (errors, refusals, the files they write), and of
nnU-Net's commands refusing a name before any work, use this; tests that need a process of their own (killed,
timed, imports counted, worker processes, a fresh interpreter's class lookup) and nnU-Net's planning, training and
prediction keep ``subprocess``.
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock


def entry_point(command: str) -> Callable[[], object]:
    """The function the console script ``command`` calls (from the installed package's metadata)."""
    (found,) = entry_points(group="console_scripts", name=command)
    return found.load()


def _run(main: Callable[[], object], args: list[str], env: dict[str, str] | None,
         cwd: Path | None) -> subprocess.CompletedProcess:
    """``main()`` with ``sys.argv = args``: an exit returns its code, an uncaught exception prints its traceback to
    stderr and returns 1, as the interpreter does."""
    stdout, stderr = io.StringIO(), io.StringIO()
    environment = mock.patch.dict(os.environ, env, clear=True) if env is not None else contextlib.nullcontext()
    previous_folder, previous_handler = os.getcwd(), signal.getsignal(signal.SIGTERM)
    with environment, mock.patch.object(sys, "argv", args), contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            if cwd is not None:
                os.chdir(cwd)
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        except Exception:  # noqa: BLE001 - what the interpreter would print
            traceback.print_exc()
            code = 1
        finally:
            os.chdir(previous_folder)
            signal.signal(signal.SIGTERM, previous_handler)  # our commands install their own
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def run_in_process(command: str, *args, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed console command ``command`` with ``args``."""
    return _run(entry_point(command), [command, *map(str, args)], env, cwd)


def run_script_in_process(script: Path, *args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python script args``: the script run as ``__main__``."""
    return _run(lambda: runpy.run_path(str(script), run_name="__main__"), [str(script), *map(str, args)], env, None)
