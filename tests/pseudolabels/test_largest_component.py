"""``nnUNetv2_uda_largest_component``: each label keeps its largest component; geometry, voxel type and the input are
kept; a bad file is named and the other cases are still written."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from commands import run_in_process

from nnunetv2_uda.pseudolabels.largest_component import REMOVED_CSV, keep_largest_components


def two_organs_with_islands() -> np.ndarray:
    """Label 1: a 27-voxel cube, a 2-voxel island and a voxel touching the cube only at a corner (connected under
    full connectivity); label 2: an 8-voxel cube and a 1-voxel island."""
    segmentation = np.zeros((8, 12, 12), dtype=np.uint8)
    segmentation[1:4, 1:4, 1:4] = 1
    segmentation[4, 4, 4] = 1  # diagonal neighbour of the cube's corner (3, 3, 3)
    segmentation[6, 9:11, 9] = 1
    segmentation[1:3, 8:10, 1:3] = 2
    segmentation[6, 1, 10] = 2
    return segmentation


def write_label(path: Path, array: np.ndarray, spacing=(0.8, 0.9, 2.5), origin=(10.0, -5.0, 3.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path))


def test_every_label_keeps_its_largest_component_with_full_connectivity():
    segmentation = two_organs_with_islands()
    cleaned = keep_largest_components(segmentation.copy())
    assert (cleaned == 1).sum() == 28 and cleaned[4, 4, 4] == 1 and cleaned[6, 9, 9] == 0
    assert (cleaned == 2).sum() == 8 and cleaned[6, 1, 10] == 0
    assert cleaned.dtype == np.uint8


def test_only_the_chosen_labels_are_touched():
    segmentation = two_organs_with_islands()
    cleaned = keep_largest_components(segmentation.copy(), labels=[2, 7])  # 7 is absent: nothing to do
    assert (cleaned == 1).sum() == (segmentation == 1).sum() and (cleaned == 2).sum() == 8


def test_command_writes_cleaned_maps_with_their_geometry_and_names_a_bad_file(tmp_path):
    source = tmp_path / "predictions"
    source.mkdir()
    write_label(source / "case_a.nii.gz", two_organs_with_islands())
    write_label(source / "case_b.nii.gz", np.where(two_organs_with_islands() == 2, 2, 0).astype(np.uint8))
    (source / "case_c.nii.gz").write_bytes(b"not an image")
    (source / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2}}))
    before = {p.name: p.read_bytes() for p in source.iterdir()}

    result = run_in_process("nnUNetv2_uda_largest_component", str(source), str(tmp_path / "cleaned"))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "1 of 3 case(s) failed (the other 2 were written to" in line
    assert f"{source / 'case_c.nii.gz'}: cannot be read as an image" in line
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # the input is not changed
    written = sitk.ReadImage(str(tmp_path / "cleaned" / "case_a.nii.gz"))
    reference = sitk.ReadImage(str(source / "case_a.nii.gz"))
    assert written.GetSpacing() == pytest.approx(reference.GetSpacing())
    assert written.GetOrigin() == pytest.approx(reference.GetOrigin())
    assert written.GetDirection() == pytest.approx(reference.GetDirection())
    assert written.GetPixelID() == reference.GetPixelID()
    array = sitk.GetArrayFromImage(written)
    assert (array == 1).sum() == 28 and (array == 2).sum() == 8
    assert not (tmp_path / "cleaned" / "case_c.nii.gz").exists()
    assert json.loads((tmp_path / "cleaned" / "dataset.json").read_text())["labels"]["spleen"] == 2
    with open(tmp_path / "cleaned" / REMOVED_CSV) as table:
        rows = list(csv.DictReader(table))
    removed = {(row["case"], row["label"]): row["voxels_removed"] for row in rows if not row["error"]}
    assert removed == {("case_a", "1"): "2", ("case_a", "2"): "1", ("case_b", "2"): "1"}
    assert [row["case"] for row in rows if row["error"]] == ["case_c"]


def test_command_refuses_an_empty_folder_and_writing_over_its_input(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_in_process("nnUNetv2_uda_largest_component", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert result.returncode != 0 and "holds no cases" in result.stderr and str(tmp_path / "empty") in result.stderr
    write_label(tmp_path / "empty" / "case.nii.gz", two_organs_with_islands())
    result = run_in_process("nnUNetv2_uda_largest_component", str(tmp_path / "empty"), str(tmp_path / "empty"))
    assert result.returncode != 0 and "is the input" in result.stderr


@pytest.mark.slow
def test_parallel_processes_give_the_same_maps(tmp_path):
    source = tmp_path / "predictions"
    source.mkdir()
    for index in range(3):
        write_label(source / f"case_{index}.nii.gz", np.roll(two_organs_with_islands(), index, axis=2))
    assert run_in_process("nnUNetv2_uda_largest_component", source, tmp_path / "1").returncode == 0
    subprocess.run(["nnUNetv2_uda_largest_component", str(source), str(tmp_path / "2"), "-np", "2"], check=True,
                   capture_output=True, timeout=300)  # a fresh interpreter forks the workers, as a user's does
    for index in range(3):
        one, two = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / p / f"case_{index}.nii.gz"))) for p in "12")
        assert np.array_equal(one, two) and (one == 1).sum() == 28
