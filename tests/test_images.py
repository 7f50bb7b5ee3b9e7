"""The image reader names truncated, corrupt and non-finite files instead of reading them as zeros."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.images import ALLOW_NONFINITE_FLAG, ImageFileError, read_array, read_image


def write(array: np.ndarray, path, compress: bool = True):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(path), compress)
    return path


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(0)
    return write(rng.integers(0, 1000, (12, 40, 40)).astype(np.int16), tmp_path / "case_0000.nii.gz")


def test_a_good_file_reads_as_simpleitk_reads_it(volume):
    array, image = read_array(volume)
    assert np.array_equal(array, sitk.GetArrayFromImage(sitk.ReadImage(str(volume))))
    assert np.allclose(image.GetSpacing(), (0.8, 0.8, 2.5))


def test_a_truncated_gzip_file_is_named(volume, tmp_path):
    cut = tmp_path / "cut_0000.nii.gz"
    cut.write_bytes(volume.read_bytes()[: volume.stat().st_size // 2])
    sitk.ReadImage(str(cut))  # what this guards against: SimpleITK reads it, the missing half as zeros
    with pytest.raises(ImageFileError, match="cut_0000.nii.gz: truncated"):
        read_image(cut)


def test_damaged_gzip_data_is_named(volume, tmp_path):
    data = bytearray(volume.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged_0000.nii.gz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ImageFileError, match="damaged_0000.nii.gz: (corrupt|truncated|cannot be read)"):
        read_image(damaged)


def test_a_truncated_uncompressed_file_is_named(tmp_path):
    path = write(np.ones((4, 8, 8), np.float32), tmp_path / "plain.nii", compress=False)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ImageFileError, match="plain.nii: truncated"):
        read_image(path)


def test_a_file_cut_inside_the_header_is_named(volume, tmp_path):
    cut = tmp_path / "header_0000.nii.gz"
    cut.write_bytes(gzip.compress(gzip.decompress(volume.read_bytes())[:100]))
    with pytest.raises(ImageFileError, match="header_0000.nii.gz"):
        read_image(cut)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_unless_allowed(tmp_path, value, capsys):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 10
    array[1, 2, 3] = value
    path = write(array, tmp_path / "nan_0000.nii.gz")
    with pytest.raises(ImageFileError, match=f"nan_0000.nii.gz: 1 voxel.*{ALLOW_NONFINITE_FLAG}"):
        read_image(path)
    fixed, _ = read_array(path, allow_nonfinite=True)
    expected = array.copy()
    expected[1, 2, 3] = 10  # the lowest finite value
    assert np.array_equal(fixed, expected)
    assert "nan_0000.nii.gz: 1 NaN or infinite voxel(s) replaced by 10" in capsys.readouterr().err


def test_missing_and_non_image_files_are_named(tmp_path):
    with pytest.raises(ImageFileError, match="absent.nii.gz: file does not exist"):
        read_image(tmp_path / "absent.nii.gz")
    (tmp_path / "text.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ImageFileError, match="text.nii.gz"):
        read_image(tmp_path / "text.nii.gz")
