"""Eq. 7 and the union ensemble on hand-made snapshots."""

import math

import numpy as np
import pytest

from nnunetv2_uda.pseudolabels.uncertainty import snapshot_uncertainty, union_ensemble


def test_eq7_by_hand():
    y1 = np.array([0, 1, 1, 2])
    y2 = np.array([0, 1, 2, 2])  # 1 voxel changed, 3 foreground -> 1/3
    y3 = np.array([1, 1, 2, 2])  # 1 voxel changed, 4 foreground -> 1/4
    assert snapshot_uncertainty([y1, y2, y3]) == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert snapshot_uncertainty([y1, y1]) == 0.0
    two_d = [np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 2]])]  # 2 changed / 3 foreground
    assert snapshot_uncertainty(two_d) == pytest.approx(2 / 3)


def test_empty_snapshot_gives_infinite_uncertainty():
    full, empty = np.array([1, 2, 0]), np.zeros(3, dtype=int)
    assert snapshot_uncertainty([full, empty, full]) == math.inf
    assert snapshot_uncertainty([empty, full]) == math.inf


def test_uncertainty_needs_two_snapshots_of_one_shape():
    with pytest.raises(ValueError, match="at least 2"):
        snapshot_uncertainty([np.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        snapshot_uncertainty([np.ones(3), np.ones(4)])


def test_union_ensemble_majority_and_ties_to_latest():
    # columns are voxels, rows snapshots in training order
    snapshots = np.array([
        [1, 2, 0, 3, 0, 1, 2, 5],
        [2, 1, 0, 3, 0, 2, 1, 5],
        [0, 0, 0, 1, 4, 1, 2, 6],
        [0, 0, 0, 0, 0, 2, 1, 6],
    ])
    expected = [
        2,  # 1 and 2 once each: the latest snapshot among them says 2
        1,  # 2 and 1 once each: latest says 1
        0,  # background everywhere
        3,  # 3 twice, 1 once
        4,  # one snapshot marks it: the union keeps it
        2,  # 1 and 2 twice each, the last one says 2
        1,  # 2 and 1 twice each, the last one says 1
        6,  # 5 and 6 twice each, 6 is later
    ]
    np.testing.assert_array_equal(union_ensemble(list(snapshots)), expected)


def test_union_ensemble_keeps_shape_and_dtype():
    a = np.zeros((2, 3, 4), dtype=np.uint8)
    b = a.copy()
    b[1, 2, 3] = 7
    result = union_ensemble([a, b])
    assert result.shape == a.shape and result.dtype == np.uint8 and result[1, 2, 3] == 7 and result.sum() == 7
