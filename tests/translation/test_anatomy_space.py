"""Anatomy space: per-modality normalization, the spacing-aware Sobel, and nnUNetv2_uda_sobel on a raw dataset."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from commands import run_in_process
from conftest import write_tiny_dataset

from nnunetv2_uda.atomic_files import is_hidden
from nnunetv2_uda.output_folders import OutputFolderError
from nnunetv2_uda.translation.anatomy_space import (
    anatomy_space,
    modality_of_channel,
    normalize_ct,
    normalize_mri,
    sobel_magnitude,
)
from nnunetv2_uda.translation.raw_dataset import DatasetError, open_raw_dataset
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


@pytest.mark.slow
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

    with pytest.raises(OutputFolderError, match=f"{target} exists and is not empty"):
        convert_dataset_to_anatomy_space(source, target)
    with pytest.raises(OutputFolderError, match="is the input"):
        convert_dataset_to_anatomy_space(source, source, overwrite=True)


SINGLE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _source_dataset(folder, cases, shape=(6, 16, 20)):
    """A small CT raw dataset with labels; returns its folder."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(2)
    for case in cases:
        _write(rng.normal(0, 100, shape).astype(np.float32), folder / "imagesTr" / f"{case}_0000.nii.gz")
        _write(rng.integers(0, 2, shape).astype(np.uint8), folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                         "liver": 1}, "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return folder


def _sobel(*args):
    return run_in_process("nnUNetv2_uda_sobel", *args)


def _one_line_error(result, *names):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) >= 1
    error = lines[-1]
    assert error.startswith(f"{result.args[0]}: error: "), result.stderr
    for name in names:
        assert str(name) in error, error
    return error


def test_sobel_refuses_a_non_empty_output_folder_and_leaves_it_untouched(tmp_path):
    source = _source_dataset(tmp_path / "Dataset952_CT", ("a",))
    target = tmp_path / "my_folder"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    error = _one_line_error(_sobel(source, target), target, "not empty", "--overwrite")
    assert "exists" in error
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and (target / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset952_CT", "my_folder"]  # no staging left


def test_sobel_output_inside_its_input_is_refused(tmp_path):
    source = _source_dataset(tmp_path / "Dataset953_CT", ("a",))
    with pytest.raises(OutputFolderError, match="lies inside the input"):
        convert_dataset_to_anatomy_space(source, source / "anatomy")
    with pytest.raises(OutputFolderError, match="holds the input"):
        convert_dataset_to_anatomy_space(source, tmp_path, overwrite=True)
    assert sorted(p.name for p in source.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]


def test_sobel_overwrite_replaces_the_whole_folder_so_no_stale_case_survives(tmp_path):
    source = _source_dataset(tmp_path / "Dataset954_CT", ("a", "b"))
    target = tmp_path / "Dataset955_CTAnatomy"
    convert_dataset_to_anatomy_space(source, target)
    (source / "imagesTr" / "b_0000.nii.gz").unlink()
    (source / "labelsTr" / "b.nii.gz").unlink()
    convert_dataset_to_anatomy_space(source, target, overwrite=True)
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == ["a_0000.nii.gz"]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == ["a.nii.gz"]
    assert json.loads((target / "dataset.json").read_text())["numTraining"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset954_CT", "Dataset955_CTAnatomy"]


def test_sobel_names_truncated_and_nan_images_keeps_the_good_cases_and_never_lists_leftovers(tmp_path, capsys):
    source = _source_dataset(tmp_path / "Dataset956_CT", ("a", "b", "c"))
    truncated = source / "imagesTr" / "b_0000.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    nan_image = source / "imagesTr" / "c_0000.nii.gz"
    array = np.random.default_rng(3).normal(0, 100, (6, 16, 20)).astype(np.float32)
    array[2, 3, 4] = np.nan
    _write(array, nan_image)
    # what a killed run leaves: a temporary file of the old writer and a staging folder of the new one
    shutil.copyfile(source / "imagesTr" / "a_0000.nii.gz", source / "imagesTr" / ".tmp_4242_d_0000.nii.gz")
    staging = source / "imagesTr" / ".partial-4242-e_0000.nii.gz-x1y2"
    staging.mkdir()
    shutil.copyfile(source / "imagesTr" / "a_0000.nii.gz", staging / "e_0000.nii.gz")
    assert open_raw_dataset(source).cases == ("a", "b", "c")

    target = tmp_path / "Dataset957_CTAnatomy"
    error = _one_line_error(_sobel(source, target), "2 of 3 case(s) left out", truncated, "truncated", nan_image,
                            "NaN or infinite", "--allow_nonfinite")
    assert "case 'a'" not in error
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == ["a_0000.nii.gz"]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == ["a.nii.gz"]
    assert json.loads((target / "dataset.json").read_text())["numTraining"] == 1

    allowed = tmp_path / "Dataset958_CTAnatomy"
    with pytest.raises(DatasetError, match="1 of 3 case.*b_0000.nii.gz: truncated"):
        convert_dataset_to_anatomy_space(source, allowed, allow_nonfinite=True)
    assert "c_0000.nii.gz: 1 NaN or infinite voxel(s) replaced" in capsys.readouterr().err
    converted = sitk.GetArrayFromImage(sitk.ReadImage(str(allowed / "imagesTr" / "c_0000.nii.gz")))
    assert np.isfinite(converted).all()
    assert sorted(p.name for p in (allowed / "imagesTr").iterdir()) == ["a_0000.nii.gz", "c_0000.nii.gz"]


def test_sobel_with_no_usable_case_writes_nothing(tmp_path):
    source = _source_dataset(tmp_path / "Dataset959_CT", ("a",))
    (source / "labelsTr" / "a.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="no case of .* could be used, nothing written: case 'a': .*a.nii.gz"):
        convert_dataset_to_anatomy_space(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset959_CT"]


@pytest.mark.slow
def test_sobel_terminated_mid_run_leaves_no_staging_and_no_output(tmp_path):
    source = write_tiny_dataset(tmp_path / "Dataset960_TinyCT", num_cases=10)
    target = tmp_path / "Dataset961_CTAnatomy"
    process = subprocess.Popen(["nnUNetv2_uda_sobel", str(source), str(target)], env=SINGLE_THREAD_ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".partial-*/imagesTr/*_0000.nii.gz")):  # a case written, others not yet
        assert process.poll() is None, f"finished before it could be terminated: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.terminate()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset960_TinyCT"]
    assert not any(is_hidden(p) for p in source.rglob("*"))


@pytest.mark.parametrize(("dataset_json", "message"), [
    ([{"channel_names": {"0": "CT"}}], "/dataset.json: holds a list, not an nnU-Net dataset.json"),
    ({"channel_names": {"a": "CT"}}, "'channel_names' must map \"0\", \"1\", ... to names"),
    ({"channel_names": {"0": 7}}, "'channel_names' must map"),
    ({"channel_names": {"0": "CT"}, "file_ending": 5}, "'file_ending' must be a suffix"),
])
def test_malformed_dataset_json_is_named(tmp_path, dataset_json, message):
    source = _source_dataset(tmp_path / "Dataset962_CT", ("a",))
    (source / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(DatasetError, match=re.escape(str(source)) + ".*" + re.escape(message)):
        convert_dataset_to_anatomy_space(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_image_not_named_as_a_case_is_named_before_anything_is_written(tmp_path):
    source = _source_dataset(tmp_path / "Dataset963_CT", ("a",))
    stray = source / "imagesTr" / "b.nii.gz"  # no _0000: nnU-Net cannot tell its case or channel
    shutil.copyfile(source / "imagesTr" / "a_0000.nii.gz", stray)
    error = _one_line_error(_sobel(source, tmp_path / "out"), stray, "not an image of a case", "_0000.nii.gz")
    assert "left out" not in error
    shutil.move(stray, source / "imagesTr" / "a_0001.nii.gz")  # a second channel of a one-channel dataset
    with pytest.raises(DatasetError, match="a_0001.nii.gz: not an image of a case"):
        convert_dataset_to_anatomy_space(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset963_CT"]


def test_a_case_without_its_label_map_in_a_labeled_dataset_is_named_and_the_others_written(tmp_path):
    source = _source_dataset(tmp_path / "Dataset964_CT", ("a", "b"))
    (source / "labelsTr" / "b.nii.gz").unlink()
    target = tmp_path / "Dataset965_CTAnatomy"
    _one_line_error(_sobel(source, target), "1 of 2 case(s) left out", "case 'b'", source / "labelsTr" / "b.nii.gz",
                    "label map missing")
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == ["a_0000.nii.gz"]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == ["a.nii.gz"]


def test_an_unlabeled_dataset_converts_without_label_maps(tmp_path):
    source = _source_dataset(tmp_path / "Dataset966_MRI", ("a",))
    shutil.rmtree(source / "labelsTr")
    target = convert_dataset_to_anatomy_space(source, tmp_path / "Dataset967_MRIAnatomy")
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == ["a_0000.nii.gz"]
    assert not any((target / "labelsTr").iterdir())
