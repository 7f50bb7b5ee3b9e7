"""Running the stage commands as subprocesses: the user sees their output (progress bars included) live, and every
command's output is also kept in a log file, which a failure names."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from nnunetv2_uda.command_line import UserInputError


class StageCommandError(UserInputError):
    """A stage command failed; its own output (shown above and kept in its log) says why."""

    exit_code = 1


def write_line(text: str) -> None:
    """``text`` and its newline in one write: steps that run in threads at once (``parallel_steps``, ``num_parts``)
    would otherwise interleave one line's text with another's newline, as ``print`` writes them apart."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A line of the pipeline's own (not a command's) output."""
    write_line(f"[nnUNetv2_uda_run] {message}")


def run_logged(args: list, log_file: Path, env: dict[str, str] | None = None) -> None:
    """Runs ``args`` (in ``env``, default ours) with stdout+stderr copied to ``log_file`` (appended) and to our
    stdout."""
    args = [str(a) for a in args]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n$ {shlex.join(args)}\n".encode())
        log.flush()
        write_line(f"$ {shlex.join(args)}")
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        except FileNotFoundError as error:
            raise StageCommandError(f"command '{args[0]}' not found: is nnunetv2-uda installed in this "
                                    f"environment?") from error
        try:
            while chunk := os.read(process.stdout.fileno(), 65536):
                log.write(chunk)
                log.flush()
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            returncode = process.wait()
        except BaseException:  # we were interrupted or terminated: so is the command (it cleans up after itself)
            process.terminate()
            process.wait()
            raise
    if returncode != 0:
        lines = [line.split("\r")[-1].strip() for line in log_file.read_text(errors="replace").splitlines()]
        last = [line for line in lines if line][-1:] or ["none"]
        raise StageCommandError(f"'{args[0]}' failed with exit code {returncode} (last line: {last[0]}); "
                                f"its whole output is in {log_file}")
