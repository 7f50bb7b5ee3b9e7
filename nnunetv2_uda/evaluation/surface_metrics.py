"""Dice and normalized surface Dice (NSD) with area-weighted surface elements, fast on large volumes.

NSD is that of DeepMind's ``surface_distance.compute_surface_dice_at_tolerance``, the FLARE challenges' reference:
surfaces are the marching-cubes surface elements at voxel corners, each weighted by its area in mm^2 for the given
spacing (DeepMind's lookup table). The reference sorts every surface element in pure Python and works on the
masks' whole bounding box at once; here the sorting is skipped (NSD only needs sums) so a liver on a 512x512x100
CT takes a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage
from surface_distance.lookup_tables import (
    ENCODE_NEIGHBOURHOOD_3D_KERNEL,
    create_table_neighbour_code_to_surface_area,
)

_FULL_NEIGHBOURHOOD = 255


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Soerensen-Dice of two boolean masks; NaN when both are empty (callers apply their own rule)."""
    volume_sum = int(np.count_nonzero(gt)) + int(np.count_nonzero(pred))
    if volume_sum == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(gt & pred)) / volume_sum


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of ``mask``, or None when it is empty."""
    box = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        nonzero = np.flatnonzero(np.any(mask, axis=other_axes))
        if nonzero.size == 0:
            return None
        box.append(slice(int(nonzero[0]), int(nonzero[-1]) + 1))
    return tuple(box)


@lru_cache(maxsize=64)
def _surfel_area_table(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    return create_table_neighbour_code_to_surface_area(spacing_mm)


def _corner_codes(mask: np.ndarray) -> np.ndarray:
    """The 8-bit 2x2x2 neighbourhood code at every voxel corner (DeepMind's encoding), one corner more per axis."""
    padded = np.pad(mask, 1).astype(np.uint8)
    out_shape = tuple(s + 1 for s in mask.shape)
    codes = np.zeros(out_shape, np.uint8)
    for (a, b, c), weight in np.ndenumerate(ENCODE_NEIGHBOURHOOD_3D_KERNEL):
        codes += padded[a : a + out_shape[0], b : b + out_shape[1], c : c + out_shape[2]] * np.uint8(weight)
    return codes


def surface_distances(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances (mm) from each surface element of one mask to the other surface, with the elements' areas (mm^2).

    Returns (distances_gt_to_pred, areas_gt, distances_pred_to_gt, areas_pred), unsorted. Distances are inf when
    the other mask is empty. Spacing is given per array axis.
    """
    if gt.shape != pred.shape or gt.ndim != 3 or len(spacing_mm) != 3:
        raise ValueError(f"need two 3D masks of one shape and 3 spacings, got {gt.shape}, {pred.shape}, {spacing_mm}")
    empty = np.zeros(0)
    box = bounding_box(gt | pred)
    if box is None:
        return empty, empty, empty, empty
    spacing = tuple(float(s) for s in spacing_mm)
    area_table = _surfel_area_table(spacing)
    codes_gt, codes_pred = _corner_codes(gt[box]), _corner_codes(pred[box])
    borders_gt = (codes_gt != 0) & (codes_gt != _FULL_NEIGHBOURHOOD)
    borders_pred = (codes_pred != 0) & (codes_pred != _FULL_NEIGHBOURHOOD)

    def distances_to(borders_other: np.ndarray, borders_self: np.ndarray) -> np.ndarray:
        if not borders_other.any():
            return np.full(int(np.count_nonzero(borders_self)), np.inf)
        return ndimage.distance_transform_edt(~borders_other, sampling=spacing)[borders_self]

    return (
        distances_to(borders_pred, borders_gt),
        area_table[codes_gt[borders_gt]],
        distances_to(borders_gt, borders_pred),
        area_table[codes_pred[borders_pred]],
    )


def normalized_surface_dice(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float], tolerance_mm: float
) -> float:
    """Share of both surfaces' area lying within ``tolerance_mm`` of the other surface; NaN when both are empty."""
    dist_gt, area_gt, dist_pred, area_pred = surface_distances(gt, pred, spacing_mm)
    total = area_gt.sum() + area_pred.sum()
    if total == 0:
        return float("nan")
    return float((area_gt[dist_gt <= tolerance_mm].sum() + area_pred[dist_pred <= tolerance_mm].sum()) / total)
