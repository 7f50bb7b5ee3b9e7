"""The output-folder guard: a command writes a new folder of its own, never into or over what it did not write.

An output folder that is one of the command's inputs, lies inside one or holds one is refused; an existing
non-empty output folder is refused unless the user passes ``--overwrite``, and even then the new content is built
beside it and swapped in only when complete (:func:`nnunetv2_uda.atomic_files.folder_built_atomically`), so a
failed or killed run leaves the old folder as it was and no stale case survives a successful one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.command_line import UserInputError


class OutputFolderError(UserInputError):
    """The output folder cannot be written without touching data the command did not write."""


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                        overwrite: bool = False, overwrite_flag: str = "--overwrite") -> Path:
    """Raises :class:`OutputFolderError` (naming the folder and how to proceed) unless ``output`` may be written."""
    output = Path(output)
    resolved = output.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if _is_within(resolved, source) or _is_within(source, resolved):
            where = "is" if resolved == source else ("lies inside" if _is_within(resolved, source) else "holds")
            raise OutputFolderError(f"output folder {output} {where} the input {given}; choose a new output folder "
                                    f"(inputs are never written)")
    if output.exists() and not output.is_dir():
        raise OutputFolderError(f"output folder {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise OutputFolderError(f"output folder {output} exists and is not empty; choose a new folder, or pass "
                                f"{overwrite_flag} to replace it (it is replaced only once the new output is complete)")
    return output


@contextmanager
def new_output_folder(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                      overwrite: bool = False, overwrite_flag: str = "--overwrite") -> Iterator[Path]:
    """Checks ``output`` (:func:`check_output_folder`) and yields an empty staging folder that becomes ``output``
    when the block ends without an error."""
    output = check_output_folder(output, inputs, overwrite, overwrite_flag)
    with folder_built_atomically(output, replace=True) as staging:
        yield staging
