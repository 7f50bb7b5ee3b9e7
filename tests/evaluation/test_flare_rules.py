"""Each FLARE 2024 scoring rule on its own."""

import numpy as np
import pytest
import surface_distance

from nnunetv2_uda.evaluation.flare_rules import (
    FLARE_NSD_TOLERANCES_MM,
    Z_RANGE_ORGANS,
    ground_truth_z_range,
    score_organ,
)
from nnunetv2_uda.flare_labels import FLARE_ORGANS

SPACING = (2.5, 0.8, 0.8)


def box(shape=(10, 12, 12), z=(2, 8), y=(3, 9), x=(3, 9)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = True
    return mask


def test_tolerances_are_flare_2024s():
    expected = {1: 5, 2: 3, 3: 3, 4: 5, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 3, 11: 5, 12: 7, 13: 3}
    assert {FLARE_ORGANS[name]: tol for name, tol in FLARE_NSD_TOLERANCES_MM.items()} == expected
    assert Z_RANGE_ORGANS == {"aorta", "inferior vena cava", "esophagus"}


def test_both_empty_scores_one():
    empty = np.zeros((4, 4, 4), bool)
    assert score_organ(empty, empty, SPACING, 2.0) == (1.0, 1.0)


def test_one_empty_scores_zero():
    empty = np.zeros((10, 12, 12), bool)
    assert score_organ(box(), empty, SPACING, 2.0) == (0.0, 0.0)
    assert score_organ(empty, box(), SPACING, 2.0) == (0.0, 0.0)


def test_nsd_is_zero_below_dsc_0_2():
    gt = box(z=(4, 5))
    pred = box(z=(5, 6))  # an adjacent one-slice plate: no overlap, but surfaces within 5 mm
    raw_nsd = surface_distance.compute_surface_dice_at_tolerance(
        surface_distance.compute_surface_distances(gt, pred, SPACING), 5.0
    )
    assert raw_nsd > 0.5
    dsc, nsd = score_organ(gt, pred, SPACING, 5.0)
    assert dsc < 0.2 and nsd == 0.0


def test_nsd_kept_at_dsc_0_2_and_above():
    gt, pred = box(), box(x=(4, 9))
    dsc, nsd = score_organ(gt, pred, SPACING, 2.0)
    expected = surface_distance.compute_surface_dice_at_tolerance(
        surface_distance.compute_surface_distances(gt, pred, SPACING), 2.0
    )
    assert dsc == pytest.approx(2 * 180 / (216 + 180)) and nsd == pytest.approx(expected, abs=1e-3)


def test_z_range_cropping_ignores_prediction_outside_ground_truth_slices():
    gt, pred = box(z=(3, 6)), box(z=(0, 10))
    assert ground_truth_z_range(gt) == slice(3, 6)
    assert score_organ(gt, pred, SPACING, 2.0, z_range_only=True) == (1.0, 1.0)
    dsc, nsd = score_organ(gt, pred, SPACING, 2.0, z_range_only=False)
    assert dsc == pytest.approx(2 * 3 / (3 + 10)) and nsd < 0.9


def test_z_range_prediction_only_outside_scores_zero():
    gt, pred = box(z=(3, 6)), box(z=(7, 10))
    assert score_organ(gt, pred, SPACING, 2.0, z_range_only=True) == (0.0, 0.0)
