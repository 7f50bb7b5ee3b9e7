"""FLARE 2024's scoring rules for one organ: NSD tolerances, empty-mask rules, DSC gate and z-range cropping.

They follow the challenge's evaluation script, so our numbers are comparable with the leaderboard's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunetv2_uda.evaluation.surface_metrics import dice, normalized_surface_dice
from nnunetv2_uda.flare_labels import FLARE_ORGANS

FLARE_NSD_TOLERANCES_MM: dict[str, float] = {
    "liver": 5.0,
    "right kidney": 3.0,
    "spleen": 3.0,
    "pancreas": 5.0,
    "aorta": 2.0,
    "inferior vena cava": 2.0,
    "right adrenal gland": 2.0,
    "left adrenal gland": 2.0,
    "gallbladder": 2.0,
    "esophagus": 3.0,
    "stomach": 5.0,
    "duodenum": 7.0,
    "left kidney": 3.0,
}
assert set(FLARE_NSD_TOLERANCES_MM) == set(FLARE_ORGANS)

# Long tubular organs whose annotated extent varies with the scan's field of view: scored only on the ground
# truth's axial slices, so a prediction reaching further up or down is not punished.
Z_RANGE_ORGANS: frozenset[str] = frozenset({"aorta", "inferior vena cava", "esophagus"})

MIN_DSC_FOR_NSD = 0.2


def ground_truth_z_range(gt: np.ndarray) -> slice | None:
    """The slices (first array axis, axial for SimpleITK arrays) where ``gt`` is non-empty, or None."""
    slices = np.flatnonzero(gt.any(axis=tuple(range(1, gt.ndim))))
    return None if slices.size == 0 else slice(int(slices[0]), int(slices[-1]) + 1)


def score_organ(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float], tolerance_mm: float, z_range_only: bool = False
) -> tuple[float, float]:
    """(DSC, NSD) of one organ's boolean masks under FLARE's rules.

    Both empty -> (1, 1); one empty -> (0, 0); with ``z_range_only`` both masks are cut to the ground truth's
    z-range first; NSD is 0 where DSC < 0.2. ``spacing_mm`` is per array axis.
    """
    gt_any, pred_any = bool(gt.any()), bool(pred.any())
    if not gt_any and not pred_any:
        return 1.0, 1.0
    if not gt_any or not pred_any:
        return 0.0, 0.0
    if z_range_only:
        z_range = ground_truth_z_range(gt)
        gt, pred = gt[z_range], pred[z_range]
    dsc = dice(gt, pred)
    if dsc < MIN_DSC_FOR_NSD:
        return dsc, 0.0
    return dsc, normalized_surface_dice(gt, pred, spacing_mm, tolerance_mm)
