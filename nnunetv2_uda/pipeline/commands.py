"""Running the stage commands as subprocesses: the user sees their output (progress bars included) live, and every
command's output is also kept in a log file, whose tail a failure quotes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


class StageCommandError(RuntimeError):
    pass


def run_logged(args: list, log_file: Path, quiet: bool = False, env: dict[str, str] | None = None) -> None:
    """Runs ``args`` (in ``env``, default ours) with stdout+stderr copied to ``log_file`` (appended) and, unless
    ``quiet``, to our stdout."""
    args = [str(a) for a in args]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n$ {shlex.join(args)}\n".encode())
        log.flush()
        if not quiet:
            print(f"$ {shlex.join(args)}", flush=True)
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        except FileNotFoundError as error:
            raise StageCommandError(f"command '{args[0]}' not found: is nnunetv2-uda installed in this "
                                    f"environment?") from error
        while True:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            log.write(chunk)
            log.flush()
            if not quiet:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        returncode = process.wait()
    if returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        raise StageCommandError(f"'{shlex.join(args)}' failed with exit code {returncode}; "
                                f"its output is in {log_file}. Last lines:\n{tail}")
