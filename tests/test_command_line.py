"""The CLI wrapper: one line for expected errors, tracebacks only on request; argument types refuse nonsense."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from nnunetv2_uda.command_line import (
    TRACEBACK_VARIABLE,
    finite_float,
    fraction,
    non_negative_float,
    one_line,
    positive_float,
    positive_int,
)

SCRIPT = textwrap.dedent("""
    import sys
    from nnunetv2_uda.command_line import UserInputError, command

    @command
    def main():
        kind = sys.argv[1]
        if kind == "input":
            raise UserInputError("case.nii.gz: line one\\nline two")
        if kind == "missing":
            open("/nonexistent/folder/file.json")
        raise ZeroDivisionError("a bug")

    main()
""")


def run(kind: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, kind, *extra], capture_output=True, text=True, env=env)


def test_expected_error_is_one_line_without_traceback():
    result = run("input")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["-c: error: case.nii.gz: line one; line two"]


def test_file_system_error_names_the_file():
    result = run("missing")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "/nonexistent/folder/file.json: No such file or directory" in result.stderr


def test_traceback_on_request(monkeypatch):
    assert "Traceback" in run("input", "--verbose").stderr
    env = {**__import__("os").environ, TRACEBACK_VARIABLE: "1"}
    assert "Traceback" in run("input", env=env).stderr


def test_bugs_keep_their_traceback():
    result = run("bug")
    assert result.returncode == 1 and "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr


@pytest.mark.parametrize(("parse", "text"), [
    (positive_int, "0"), (positive_int, "-3"), (positive_int, "1.5"), (positive_float, "nan"),
    (positive_float, "0"), (positive_float, "inf"), (non_negative_float, "-5"), (fraction, "0"), (fraction, "1.5"),
    (finite_float, "nan"), (finite_float, "-inf"), (positive_int, "ten"),
])
def test_nonsense_numbers_are_refused(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
        parse(text)


def test_sensible_numbers_pass():
    assert positive_int("3") == 3 and positive_float("0.5") == 0.5 and non_negative_float("0") == 0
    assert fraction("1") == 1 and finite_float("-2") == -2


def test_argparse_names_the_flag(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--lambda_cycle", type=positive_float)
    with pytest.raises(SystemExit):
        parser.parse_args(["--lambda_cycle", "nan"])
    assert "argument --lambda_cycle: must be a positive number, got 'nan'" in capsys.readouterr().err


def test_one_line_of_an_os_error():
    assert one_line(FileNotFoundError(2, "No such file or directory", "x.json")) == "x.json: No such file or directory"


def test_huge_integers_are_numbers_not_tracebacks():
    assert positive_int("1" + "0" * 400) == 10**400
