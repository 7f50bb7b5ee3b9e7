"""Snapshot uncertainty (the paper's eq. 7) and the union ensemble of a case's snapshots.

A network's predictions at K points of training (snapshots) agree where it is sure. Eq. 7 scores a case by how much
each snapshot changes from the previous one, relative to its foreground size; the union ensemble turns the
snapshots of a kept case into one label map that favours recall (organs missed by one snapshot are restored by
another), the class of each voxel being the majority among the snapshots that call it foreground.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _check_snapshots(snapshots: Sequence[np.ndarray], minimum: int) -> None:
    if len(snapshots) < minimum:
        raise ValueError(f"need at least {minimum} snapshots, got {len(snapshots)}")
    shapes = {s.shape for s in snapshots}
    if len(shapes) != 1:
        raise ValueError(f"snapshots differ in shape: {sorted(shapes)}")


def snapshot_uncertainty(snapshots: Sequence[np.ndarray]) -> float:
    """u = 1/(K-1) * sum_{i=2..K} |y_i != y_{i-1}| / |y_i > 0| for snapshots y_1..y_K in training order.

    A case where any snapshot is empty gets ``inf`` (the ratio is undefined for an empty y_i, and an empty
    y_1 means the network once saw no organ at all there): it is rejected, never kept by a threshold.
    """
    _check_snapshots(snapshots, minimum=2)
    if any(not np.any(s > 0) for s in snapshots):
        return math.inf
    total = 0.0
    for previous, current in zip(snapshots[:-1], snapshots[1:], strict=True):
        total += np.count_nonzero(current != previous) / np.count_nonzero(current > 0)
    return float(total / (len(snapshots) - 1))


def union_ensemble(snapshots: Sequence[np.ndarray]) -> np.ndarray:
    """Foreground wherever any snapshot marks foreground; there, the foreground class most snapshots give the
    voxel, ties going to the class of the latest snapshot among the tied ones."""
    _check_snapshots(snapshots, minimum=1)
    shape = snapshots[0].shape
    best_class = np.zeros(shape, dtype=snapshots[0].dtype)
    best_count = np.zeros(shape, dtype=np.int32)
    best_latest = np.full(shape, -1, dtype=np.int32)
    classes = np.unique(np.concatenate([np.unique(s) for s in snapshots]))
    for label in classes[classes > 0]:
        count = np.zeros(shape, dtype=np.int32)
        latest = np.full(shape, -1, dtype=np.int32)
        for index, snapshot in enumerate(snapshots):
            here = snapshot == label
            count += here
            latest[here] = index
        better = (count > best_count) | ((count == best_count) & (count > 0) & (latest > best_latest))
        best_class[better] = label
        best_count[better] = count[better]
        best_latest[better] = latest[better]
    return best_class
