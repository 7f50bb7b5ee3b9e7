"""One slice per case in a grid, for the figures that look at a run's cases (bench/organ_intensity.py,
bench/error_location.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def case_grid(count: int, output: Path, cell: tuple[float, float], dpi: int) -> Iterator[list]:
    """``count`` axes, at most five to a row, one per case's slice; ``output`` is written when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(5, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    yield list(axes.flat[:count])
    figure.tight_layout()
    figure.savefig(output, dpi=dpi)
    plt.close(figure)


def show_slice(axis, image: np.ndarray) -> None:
    """The slice in grey, its 1st to 99.5th percentile spread over the scale (outliers do not darken it)."""
    axis.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.5))
