"""The case grid: one axis per case, five to a row, the figure written when the block ends."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from nnunetv2_uda.evaluation.case_figures import case_grid, show_slice


def test_one_axis_per_case_and_the_figure_is_written_at_the_end(tmp_path):
    output = tmp_path / "grid.png"
    with case_grid(7, output, cell=(1.0, 1.0), dpi=20) as axes:
        assert len(axes) == 7 and not output.exists()
        for axis in axes:
            show_slice(axis, np.arange(16.0).reshape(4, 4))
    assert axes[0].get_gridspec().get_geometry() == (2, 5)
    assert plt.imread(output).shape[:2] == (40, 100)  # 2 x 5 cells of 1 inch at 20 dpi
