"""DSC and NSD against DeepMind's surface-distance package and a brute-force surface distance."""

import numpy as np
import pytest
import surface_distance
from scipy import ndimage

from nnunetv2_uda.evaluation.surface_metrics import bounding_box, dice, normalized_surface_dice, surface_distances

SPACINGS = [(2.5, 0.8, 0.8), (1.0, 1.0, 1.0), (7.7, 1.25, 1.25), (0.9, 3.0, 1.7)]


def random_blob(rng: np.random.Generator, shape=(14, 22, 20)) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return noise > np.percentile(noise, 70)


@pytest.mark.parametrize("seed", range(8))
def test_nsd_matches_surface_distance_package(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_blob(rng), random_blob(rng)
    pred |= ndimage.binary_dilation(gt) & (rng.random(gt.shape) > 0.3)
    spacing = SPACINGS[seed % len(SPACINGS)]
    reference = surface_distance.compute_surface_distances(gt, pred, spacing)
    for tolerance in (1.0, 2.0, 3.0, 5.0, 7.0):
        expected = surface_distance.compute_surface_dice_at_tolerance(reference, tolerance)
        assert normalized_surface_dice(gt, pred, spacing, tolerance) == pytest.approx(expected, abs=1e-3)
    assert dice(gt, pred) == pytest.approx(surface_distance.compute_dice_coefficient(gt, pred), abs=1e-9)


def test_nsd_matches_brute_force_surface_distances():
    """Every surface point's nearest distance to the other surface, by exhaustive pairwise distances."""
    rng = np.random.default_rng(42)
    gt, pred = random_blob(rng, (8, 12, 10)), random_blob(rng, (8, 12, 10))
    spacing = np.array([3.0, 0.7, 1.1])
    d_gt, area_gt, d_pred, area_pred = surface_distances(gt, pred, spacing)
    reference = surface_distance.compute_surface_distances(gt, pred, tuple(spacing))
    assert area_gt.sum() == pytest.approx(reference["surfel_areas_gt"].sum())
    assert area_pred.sum() == pytest.approx(reference["surfel_areas_pred"].sum())

    def corner_surface_points(mask):
        padded = np.pad(mask, 1)
        corners = np.stack(
            [
                padded[a : a + mask.shape[0] + 1, b : b + mask.shape[1] + 1, c : c + mask.shape[2] + 1]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        return np.argwhere(corners.any(0) & ~corners.all(0)) * spacing

    points_gt, points_pred = corner_surface_points(gt), corner_surface_points(pred)
    brute_gt = np.sqrt(((points_gt[:, None] - points_pred[None]) ** 2).sum(-1)).min(1)
    brute_pred = np.sqrt(((points_pred[:, None] - points_gt[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(np.sort(d_gt), np.sort(brute_gt), atol=1e-9)
    np.testing.assert_allclose(np.sort(d_pred), np.sort(brute_pred), atol=1e-9)


def test_masks_touching_the_volume_border():
    gt = np.zeros((6, 9, 9), bool)
    gt[:3, :5, 4:] = True
    pred = np.zeros_like(gt)
    pred[:4, 1:5, 3:] = True
    spacing = (2.0, 0.5, 0.75)
    expected = surface_distance.compute_surface_dice_at_tolerance(
        surface_distance.compute_surface_distances(gt, pred, spacing), 1.0
    )
    assert normalized_surface_dice(gt, pred, spacing, 1.0) == pytest.approx(expected, abs=1e-3)


def test_empty_masks():
    empty, blob = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    blob[1:3, 1:4, 2:5] = True
    assert np.isnan(dice(empty, empty)) and np.isnan(normalized_surface_dice(empty, empty, (1, 1, 1), 1.0))
    assert dice(blob, empty) == 0.0
    assert normalized_surface_dice(blob, empty, (1, 1, 1), 1.0) == 0.0
    assert normalized_surface_dice(empty, blob, (1, 1, 1), 1.0) == 0.0
    assert bounding_box(empty) is None
    assert bounding_box(blob) == (slice(1, 3), slice(1, 4), slice(2, 5))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        normalized_surface_dice(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 4), bool), (1, 1, 1), 1.0)
