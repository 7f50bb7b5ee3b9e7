"""A PNG contact sheet of the phantoms: a few slices of one case per modality/sequence, so a person can look."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from nnunetv2_uda.atomic_files import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from nnunetv2_uda.flare_labels import FLARE_ORGANS  # noqa: E402
from nnunetv2_uda.phantoms.scanners import Scan  # noqa: E402

AXIAL_FRACTIONS = (0.3, 0.5, 0.7)


def _display_range(scan: Scan) -> tuple[float, float]:
    if scan.modality == "CT":
        return -160.0, 240.0  # abdominal soft-tissue window
    return 0.0, float(np.percentile(scan.image, 99.5))


def write_contact_sheet(rows: list[tuple[str, Scan]], path: Path) -> Path:
    """Writes one row per (title, scan): three axial slices, the middle one with labels, and a coronal slice."""
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[: len(FLARE_ORGANS) + 1]
    colors[0, 3] = 0  # background transparent
    label_cmap = ListedColormap(colors)
    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 3.2 * len(rows)), squeeze=False)
    for row, (title, scan) in zip(axes, rows, strict=True):
        low, high = _display_range(scan)
        spacing_z, spacing_y, spacing_x = scan.grid.spacing
        slices = [min(scan.image.shape[0] - 1, int(f * scan.image.shape[0])) for f in AXIAL_FRACTIONS]
        for ax, index in zip(row[:3], slices, strict=True):
            ax.imshow(scan.image[index], cmap="gray", vmin=low, vmax=high, aspect=spacing_y / spacing_x)
            ax.set_title(f"{title}  axial z={index}", fontsize=9)
        middle = slices[1]
        row[3].imshow(scan.image[middle], cmap="gray", vmin=low, vmax=high, aspect=spacing_y / spacing_x)
        row[3].imshow(scan.label[middle], cmap=label_cmap, vmin=0, vmax=len(FLARE_ORGANS), alpha=0.55,
                      interpolation="nearest", aspect=spacing_y / spacing_x)
        row[3].set_title(f"{title}  labels z={middle}", fontsize=9)
        kidneys = np.argwhere(np.isin(scan.label, [FLARE_ORGANS["right kidney"], FLARE_ORGANS["left kidney"]]))
        coronal = int(np.median(kidneys[:, 1])) if len(kidneys) else scan.image.shape[1] // 2
        row[4].imshow(scan.image[:, coronal], cmap="gray", vmin=low, vmax=high, origin="lower",
                      aspect=spacing_z / spacing_x)
        row[4].set_title(f"{title}  coronal y={coronal}", fontsize=9)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
