"""Writing files so that a killed run never leaves a half-written one under the final name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matplotlib.figure import Figure


@contextmanager
def written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary name beside ``path`` (same suffix, so writers pick the format); renames it on success."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Saves and closes a matplotlib figure, atomically."""
    import matplotlib.pyplot as plt

    with written_atomically(path) as temporary:
        figure.savefig(temporary, dpi=dpi)
    plt.close(figure)
    return Path(path)
