"""The one atomic writer: files and folders appear under their final name only when complete.

Every temporary lives in a hidden staging folder (``.partial-<pid>-<random>``) beside its destination: unique per
writer, on the same disk (so the final rename is atomic), and never matched by a folder listing of cases, which skip
hidden names (:func:`is_hidden`). A staging folder is removed when its writer fails, is interrupted (SIGINT) or is
terminated (SIGTERM, turned into an exception by :func:`nnunetv2_uda.command_line.command`); only SIGKILL can leave
one behind, and it is never read as a case.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import SimpleITK as sitk
    from matplotlib.figure import Figure

STAGING_PREFIX = ".partial-"
REPLACED_PREFIX = ".replaced-"


def is_hidden(path: str | os.PathLike) -> bool:
    """Hidden names (staging folders, temporaries, editor files) are never cases."""
    return Path(path).name.startswith(".")


def _staging_folder(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-{name}-", dir=parent))


@contextmanager
def written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path with ``path``'s own name (writers pick the format from the suffix) inside a hidden
    staging folder beside it; renames it to ``path`` when the block ends without an error."""
    path = Path(path)
    staging = _staging_folder(path.parent, path.name)
    try:
        yield staging / path.name
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Calls ``write(temporary_path)`` and renames the result to ``path``."""
    with written_atomically(path) as temporary:
        write(temporary)
    return Path(path)


def write_text_atomically(text: str, path: str | os.PathLike) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text))


def write_json_atomically(data, path: str | os.PathLike) -> Path:
    return write_text_atomically(json.dumps(data, indent=2, default=str), path)


def write_image_atomically(image: sitk.Image, path: str | os.PathLike) -> Path:
    import SimpleITK as sitk

    return write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), True))


def copy_atomically(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    return write_atomically(destination, lambda temporary: shutil.copyfile(source, temporary))


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Saves and closes a matplotlib figure, atomically."""
    import matplotlib.pyplot as plt

    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=dpi))
    plt.close(figure)
    return Path(path)


@contextmanager
def folder_built_atomically(folder: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yields an empty hidden staging folder beside ``folder``; when the block ends without an error the staging
    folder takes ``folder``'s name, so no reader ever sees a half-built folder and nothing stale survives.

    An existing ``folder`` is replaced only with ``replace`` (the caller's guard decides, see
    :mod:`nnunetv2_uda.output_folders`): it is moved aside to a hidden name, the new folder renamed in, then the old
    one removed. Without ``replace`` an existing ``folder`` raises :class:`FileExistsError` and is left untouched.
    """
    folder = Path(folder)
    if folder.exists() and not replace:
        raise FileExistsError(f"{folder}: exists; not replaced")
    staging = _staging_folder(folder.parent, folder.name)
    try:
        yield staging
        replace_folder(staging, folder, replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(new: Path, folder: Path, replace: bool = True) -> None:
    """Renames the complete folder ``new`` to ``folder``; an existing ``folder`` (only with ``replace``) is moved
    aside first and removed after the swap."""
    if not (folder.exists() or folder.is_symlink()):
        os.replace(new, folder)
        return
    if not replace:
        raise FileExistsError(f"{folder}: exists; not replaced")
    aside = Path(tempfile.mkdtemp(prefix=f"{REPLACED_PREFIX}{folder.name}-", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    os.replace(new, folder)
    shutil.rmtree(aside, ignore_errors=True)
