"""Organ volumes and their plausibility against labeled CT cases."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pseudolabels.test_matching import organ_map

from nnunetv2_uda.pseudolabels.label_io import PseudoLabelError
from nnunetv2_uda.pseudolabels.organ_volumes import (
    CAP,
    MIN_STD,
    label_volumes_ml,
    organ_volumes_ml,
    volume_reference,
)


def write_label(path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_volumes_in_ml_by_label_value():
    label = sitk.GetImageFromArray(np.array([[[0, 1, 1], [2, 2, 2]]], dtype=np.uint8))
    label.SetSpacing((2.0, 5.0, 10.0))  # 100 mm^3 = 0.1 mL per voxel
    np.testing.assert_allclose(label_volumes_ml(label), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(organ_volumes_ml(label, [1, 2, 3, 7]), [0.2, 0.3, 0.0, 0.0])


def test_reference_scores_distance_in_log_volume(tmp_path):
    """Mean and spread of log volume over the CT cases holding the organ; organs no CT case holds are left out."""
    sizes = [1.0, 1.1, 1.2, 1.3]
    for index, scale in enumerate(sizes):
        write_label(tmp_path / f"ct_{index}.nii.gz", organ_map(scale))
    reference = volume_reference(tmp_path, [1, 2, 3])
    assert reference.label_ids == [1, 3]  # id 2: in no CT label
    logs = np.log([organ_volumes_ml(sitk.ReadImage(str(tmp_path / f"ct_{i}.nii.gz")), [1, 3]) for i in range(4)])
    np.testing.assert_allclose(reference.mean, logs.mean(axis=0))
    np.testing.assert_allclose(reference.std, logs.std(axis=0))

    typical = label_volumes_ml(sitk.GetImageFromArray(organ_map(1.15)))
    assert reference.implausibility(typical) < 1.0
    doubled = typical.copy()
    doubled[1] *= 2.0  # liver twice the size
    expected = np.mean([min(CAP, abs(np.log(doubled[i]) - m) / s)
                        for i, m, s in zip([1, 3], reference.mean, reference.std, strict=True)])
    assert reference.implausibility(doubled) == pytest.approx(expected)
    assert reference.implausibility(doubled) > reference.implausibility(typical)
    without_liver = typical.copy()
    without_liver[1] = 0.0
    assert reference.implausibility(without_liver) >= CAP / 2  # the absent organ counts the cap
    assert reference.implausibility(np.zeros(1)) == CAP


def test_reference_of_identical_cases_has_a_floor(tmp_path):
    for index in range(2):
        write_label(tmp_path / f"ct_{index}.nii.gz", organ_map(1.0))
    reference = volume_reference(tmp_path, [1, 3])
    np.testing.assert_allclose(reference.std, [MIN_STD, MIN_STD])
    assert np.isfinite(reference.implausibility(label_volumes_ml(sitk.GetImageFromArray(organ_map(1.2)))))


def test_reference_refuses_folders_without_the_organs(tmp_path):
    with pytest.raises(PseudoLabelError, match="no cases"):
        volume_reference(tmp_path, [1])
    write_label(tmp_path / "ct_0.nii.gz", organ_map(1.0))
    with pytest.raises(PseudoLabelError, match=r"holds any of the pseudo-labels' label ids \[5\]"):
        volume_reference(tmp_path, [5])
