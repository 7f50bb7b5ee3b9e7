"""Organ volumes of label maps: MDM's matching key (eq. 5), and how plausible a pseudo-label's volumes are.

Snapshot uncertainty (eq. 7) ranks a sequence by how much its pseudo-labels change during training, which rewards a
network that is confidently wrong: on the demo's phantoms it ranked first the sequence the CT network labels worst.
The labeled CT cases say what organ volumes look like; a sequence whose pseudo-labels have absent or outlandish organs
is labelled badly however sure the network is. The criterion was fixed before it was computed on any run
(bench/sequence_plausibility.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.images import read_label_map
from nnunetv2_uda.pseudolabels.label_io import PseudoLabelError, label_files, require_cases

CAP = 3.0  # standard deviations: beyond this an organ is simply implausible, and an absent organ scores it too
MIN_STD = 0.05  # of log volume: a floor where the CT cases agree (a single case, identical phantoms)


def label_volumes_ml(label: sitk.Image) -> np.ndarray:
    """Volume in mL of every label value, indexed by the value (0 .. the largest one present)."""
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    return np.bincount(sitk.GetArrayViewFromImage(label).ravel().astype(np.int64)) * voxel_ml


def organ_volumes_ml(label: sitk.Image, label_ids: list[int]) -> np.ndarray:
    """Volume in mL of each label id (vol in eq. 5)."""
    return select(label_volumes_ml(label), label_ids)


def select(volumes: np.ndarray, label_ids: list[int]) -> np.ndarray:
    """``volumes`` (from :func:`label_volumes_ml`) of the given ids, 0 for ids above the largest value present."""
    return np.pad(volumes, (0, max(0, max(label_ids, default=0) + 1 - volumes.size)))[label_ids]


@dataclass(frozen=True)
class VolumeReference:
    """Mean and standard deviation of each organ's log volume (mL) over labeled cases where the organ is present."""

    label_ids: list[int]
    mean: np.ndarray
    std: np.ndarray

    def implausibility(self, volumes: np.ndarray) -> float:
        """Mean over organs of ``|log v - mean| / std``, capped at :data:`CAP`; an absent organ scores the cap.
        ``volumes`` from :func:`label_volumes_ml`. Lower is more plausible."""
        chosen = select(volumes, self.label_ids)
        present = chosen > 0
        scores = np.full(chosen.shape, CAP)
        scores[present] = np.abs(np.log(chosen[present]) - self.mean[present]) / self.std[present]
        return float(np.minimum(scores, CAP).mean())


def volume_reference(labels_folder: Path, label_ids: list[int]) -> VolumeReference:
    """The reference of the ids among ``label_ids`` that some label map of ``labels_folder`` holds (organs the
    labeled cases never hold, such as BTCV's duodenum, say nothing about plausibility)."""
    files = label_files(labels_folder)
    require_cases(files, labels_folder, "CT label")
    table = np.array([organ_volumes_ml(read_label_map(path), label_ids) for path in files.values()])
    held = [index for index in range(len(label_ids)) if (table[:, index] > 0).any()]
    if not held:
        raise PseudoLabelError(f"no label map in {labels_folder} holds any of the pseudo-labels' label ids {label_ids}")
    logs = [np.log(table[table[:, index] > 0, index]) for index in held]
    return VolumeReference([label_ids[index] for index in held], np.array([values.mean() for values in logs]),
                           np.maximum([values.std() for values in logs], MIN_STD))
