"""Per-organ box plot of DSC and NSD: the spread over cases is easier to see than to read from a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from nnunetv2_uda.atomic_files import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_metric_boxes(values: Mapping[str, Mapping[str, Sequence[float]]], output_file: str | Path) -> Path:
    """One panel per metric (``values[metric][organ]`` -> per-case values), one box per organ; written atomically."""
    output_file = Path(output_file)
    metrics = list(values)
    organs = list(values[metrics[0]])
    figure, axes = plt.subplots(
        len(metrics), 1, figsize=(max(6.0, 0.7 * len(organs) + 2), 3.2 * len(metrics)), squeeze=False
    )
    for axis, metric in zip(axes[:, 0], metrics, strict=True):
        axis.boxplot([values[metric][organ] for organ in organs], showmeans=True)
        axis.set_xticks(range(1, len(organs) + 1), organs, rotation=30, ha="right")
        axis.set_ylabel(metric)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, output_file, dpi=100)
