"""Anatomy space: per-modality normalization, the spacing-aware Sobel, and nnUNetv2_uda_sobel on a raw dataset."""

import json
import os
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_uda.translation.anatomy_space import (
    anatomy_space,
    modality_of_channel,
    normalize_ct,
    normalize_mri,
    sobel_magnitude,
)
from nnunetv2_uda.translation.raw_dataset import DatasetError
from nnunetv2_uda.translation.sobel_dataset import convert_dataset_to_anatomy_space


def test_sobel_measures_gradient_per_millimetre():
    z, y, x = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    ramp = torch.from_numpy((3.0 * x).astype(np.float32))  # 3 units per voxel along x
    magnitude = sobel_magnitude(ramp, (1.0, 1.0, 1.5))
    assert torch.allclose(magnitude[1:-1, 1:-1, 1:-1], torch.tensor(2.0))  # 3 units / 1.5 mm
    diagonal = torch.from_numpy((2.0 * z + 1.0 * y).astype(np.float32))
    magnitude = sobel_magnitude(diagonal, (4.0, 0.5, 1.0))
    assert torch.allclose(magnitude[1:-1, 1:-1, 1:-1], torch.tensor(np.hypot(0.5, 2.0), dtype=torch.float32))


def test_sobel_is_zero_on_constant_images_and_rejects_2d():
    assert sobel_magnitude(torch.full((4, 5, 6), 7.0), (1, 1, 1)).abs().max() == 0
    with pytest.raises(ValueError, match="Z, Y, X"):
        sobel_magnitude(torch.zeros(5, 6), (1, 1))


def test_ct_normalization_clips_to_window_then_zscores():
    volume = np.array([-1000.0, -125.0, 75.0, 275.0, 3000.0]).reshape(1, 1, 5)
    clipped = np.array([-125.0, -125.0, 75.0, 275.0, 275.0])
    expected = (clipped - clipped.mean()) / clipped.std()
    assert np.allclose(normalize_ct(volume).ravel(), expected, atol=1e-5)


def test_mri_normalization_clips_percentiles_then_zscores():
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 100, (10, 20, 20))
    volume[0, 0, 0] = 1e6  # an outlier must not dominate the scale
    normalized = normalize_mri(volume)
    assert abs(normalized.mean()) < 1e-4 and abs(normalized.std() - 1) < 1e-3
    assert normalized.max() < 2.0


def test_modality_of_channel_follows_nnunet_convention():
    assert modality_of_channel("CT") == "ct" and modality_of_channel("ct") == "ct"
    assert modality_of_channel("T2") == "mri" and modality_of_channel("MRI") == "mri"


def test_anatomy_space_makes_contrast_inverted_images_alike():
    """The point of anatomy space: CT and an intensity-inverted 'MRI' of the same anatomy map to the same edges."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (12, 32, 32)], indexing="ij")
    organ = (x**2 + y**2 + z**2) < 0.5
    ct = np.where(organ, 200.0, -50.0)
    mri = np.where(organ, 100.0, 900.0)
    a_ct, a_mri = anatomy_space(ct, (2, 1, 1), "ct"), anatomy_space(mri, (2, 1, 1), "mri")
    assert np.abs(a_ct - a_mri).max() < 1e-3
    assert np.abs(normalize_ct(ct) - normalize_mri(mri)).max() > 1  # raw intensities are far apart


def _write(array, path, spacing=(0.8, 0.9, 2.5), origin=(10.0, -5.0, 3.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))


def test_sobel_command_converts_dataset_and_keeps_geometry_and_labels(tmp_path):
    source = tmp_path / "Dataset950_CT"
    (source / "imagesTr").mkdir(parents=True)
    (source / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for case in ("a", "b"):
        _write(rng.normal(0, 100, (6, 16, 20)).astype(np.float32), source / "imagesTr" / f"{case}_0000.nii.gz")
        _write(rng.integers(0, 3, (6, 16, 20)).astype(np.uint8), source / "labelsTr" / f"{case}.nii.gz")
    (source / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                         "liver": 1, "spleen": 2}, "numTraining": 2, "file_ending": ".nii.gz"}))
    target = tmp_path / "Dataset951_CTAnatomy"
    subprocess.run(["nnUNetv2_uda_sobel", str(source), str(target)], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})

    for case in ("a", "b"):
        raw = sitk.ReadImage(str(source / "imagesTr" / f"{case}_0000.nii.gz"))
        out = sitk.ReadImage(str(target / "imagesTr" / f"{case}_0000.nii.gz"))
        for attribute in ("GetSpacing", "GetOrigin", "GetDirection", "GetSize"):
            assert getattr(out, attribute)() == getattr(raw, attribute)()
        expected = anatomy_space(sitk.GetArrayFromImage(raw), raw.GetSpacing()[::-1], "ct")
        assert np.allclose(sitk.GetArrayFromImage(out), expected, atol=1e-5)
        assert (target / "labelsTr" / f"{case}.nii.gz").read_bytes() == \
            (source / "labelsTr" / f"{case}.nii.gz").read_bytes()
    dataset_json = json.loads((target / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "anatomy_ct"} and dataset_json["labels"]["spleen"] == 2

    with pytest.raises(DatasetError, match=f"'{target}' already exists"):
        convert_dataset_to_anatomy_space(source, target)
    with pytest.raises(DatasetError, match="is the input dataset"):
        convert_dataset_to_anatomy_space(source, source, overwrite=True)
