"""nnUNetv2_uda_filter_pseudolabels on crafted snapshot folders."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.flare_labels import FLARE_LABELS
from nnunetv2_uda.output_folders import OutputFolderError
from nnunetv2_uda.pseudolabels.filtering import filter_pseudolabels, select_cases
from nnunetv2_uda.pseudolabels.label_io import FailedCasesError, PseudoLabelError, same_geometry
from nnunetv2_uda.pseudolabels.snapshots import SnapshotRecord
from nnunetv2_uda.pseudolabels.uncertainty import snapshot_uncertainty, union_ensemble

SHAPE = (4, 6, 5)  # z, y, x
EPOCHS = [3, 7, 11]


def _image(array: np.ndarray, origin=(3.0, -7.0, 11.0), spacing=(0.8, 0.9, 2.5)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    return image


def _snapshots_of(case: int) -> list[np.ndarray]:
    base = np.zeros(SHAPE, dtype=np.uint8)
    base[1:3, 1:4, 1:4] = 1
    base[1:3, 4:6, 0:2] = 3
    snapshots = [base.copy() for _ in EPOCHS]
    if case == 1:  # a few voxels change class or appear
        snapshots[1][1, 1, 1] = 2
        snapshots[2][0, 0, 0] = 1
    elif case == 2:  # the network once saw nothing
        snapshots[1][:] = 0
    elif case == 3:  # large changes
        snapshots[0][1:3, 1:4, 1:4] = 0
        snapshots[2][3, :, :] = 5
    return snapshots


def make_snapshot_setup(tmp_path: Path) -> tuple[Path, Path]:
    """Four target cases: identical snapshots, small changes, an empty snapshot, large changes."""
    target = tmp_path / "Dataset850_Target"
    images = target / "imagesTr"
    images.mkdir(parents=True)
    (target / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2"}, "labels": FLARE_LABELS}))
    snapshot_folder = tmp_path / "fold_all" / "pseudolabel_snapshots"
    for case in range(4):
        sitk.WriteImage(_image(np.random.default_rng(case).normal(size=SHAPE).astype(np.float32)),
                        str(images / f"mri_{case:03d}_0000.nii.gz"))
        for epoch, snapshot in zip(EPOCHS, _snapshots_of(case), strict=True):
            folder = snapshot_folder / f"epoch_{epoch:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(_image(snapshot), str(folder / f"mri_{case:03d}.nii.gz"))
    SnapshotRecord(str(images), EPOCHS, EPOCHS, {"labels": FLARE_LABELS}).save(snapshot_folder)
    return snapshot_folder, images


@pytest.fixture
def snapshot_setup(tmp_path: Path) -> tuple[Path, Path]:
    return make_snapshot_setup(tmp_path)


def test_select_cases_threshold_fraction_and_inf():
    u = {"a": 0.1, "b": 0.3, "c": math.inf, "d": 0.2}
    assert select_cases(u, threshold=0.25) == (["a", "d"], 0.25)
    kept, cut = select_cases(u, keep_fraction=0.5)
    assert kept == ["a", "d"] and 0.2 < cut < 0.3
    assert select_cases(u, keep_fraction=1.0)[0] == ["a", "d", "b"]  # inf is never kept
    with pytest.raises(ValueError, match="not both"):
        select_cases(u, threshold=0.2, keep_fraction=0.5)


def test_filter_writes_csv_ensemble_and_dataset(snapshot_setup, tmp_path):
    snapshot_folder, images = snapshot_setup
    output = tmp_path / "Dataset851_Pseudo"
    result = filter_pseudolabels(snapshot_folder.parent, output, keep_fraction=0.5)  # fold folder is accepted

    expected_u = {f"mri_{c:03d}": snapshot_uncertainty(_snapshots_of(c)) for c in range(4)}
    assert result.uncertainty == pytest.approx(expected_u)
    assert expected_u["mri_000"] == 0 and expected_u["mri_002"] == math.inf
    assert result.kept == ["mri_000", "mri_001"]

    with open(output / "uncertainty.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["mri_002"]["u"] == "inf" and rows["mri_002"]["kept"] == "False"
    assert rows["mri_001"]["kept"] == "True" and float(rows["mri_001"]["u"]) == pytest.approx(expected_u["mri_001"])
    assert (output / "uncertainty_histogram.png").stat().st_size > 1000

    dataset_json = json.loads((output / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T2"} and dataset_json["numTraining"] == 2
    assert dataset_json["labels"] == FLARE_LABELS and dataset_json["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (output / "imagesTr").iterdir()) == ["mri_000_0000.nii.gz", "mri_001_0000.nii.gz"]
    for case in result.kept:
        label = sitk.ReadImage(str(output / "labelsTr" / f"{case}.nii.gz"))
        assert same_geometry(label, sitk.ReadImage(str(images / f"{case}_0000.nii.gz")))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label),
                                      union_ensemble(_snapshots_of(int(case[-3:]))))
    assert not list(output.rglob("*partial*"))

    # a stricter rerun into the same folder needs overwrite, and then drops the case it no longer keeps
    with pytest.raises(OutputFolderError, match="--overwrite"):
        filter_pseudolabels(snapshot_folder, output, threshold=1e-9)
    assert len(list((output / "labelsTr").iterdir())) == 2
    filter_pseudolabels(snapshot_folder, output, threshold=1e-9, overwrite=True)
    assert sorted(p.name for p in (output / "labelsTr").iterdir()) == ["mri_000.nii.gz"]
    assert sorted(p.name for p in (output / "imagesTr").iterdir()) == ["mri_000_0000.nii.gz"]
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]  # no staging or old folder left


def test_command_line(snapshot_setup, tmp_path):
    snapshot_folder, _ = snapshot_setup
    output = tmp_path / "Dataset852_Pseudo"
    result = subprocess.run(["nnUNetv2_uda_filter_pseudolabels", str(snapshot_folder), str(output),
                             "--threshold", "0.5"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "kept 2 of 4" in result.stdout
    assert json.loads((output / "dataset.json").read_text())["numTraining"] == 2


def test_bad_cases_are_named_and_the_others_written(snapshot_setup, tmp_path):
    snapshot_folder, _ = snapshot_setup
    misplaced = snapshot_folder / "epoch_0007" / "mri_001.nii.gz"
    sitk.WriteImage(_image(_snapshots_of(1)[1], origin=(0.0, 0.0, 0.0)), str(misplaced))
    (snapshot_folder / "epoch_0011" / "mri_003.nii.gz").unlink()
    with pytest.raises(FailedCasesError, match=r"2 of 4 case\(s\) failed") as failed:
        filter_pseudolabels(snapshot_folder, tmp_path / "out", keep_fraction=1.0)
    assert "mri_001.nii.gz does not match its image's geometry" in str(failed.value)
    assert "epoch_0011/mri_003.nii.gz is missing" in str(failed.value)
    assert sorted(p.name for p in (tmp_path / "out" / "labelsTr").iterdir()) == ["mri_000.nii.gz"]
    with open(tmp_path / "out" / "uncertainty.csv", newline="") as handle:
        assert sorted(row["case"] for row in csv.DictReader(handle)) == ["mri_000", "mri_002"]


def test_incomplete_snapshots_and_empty_target_are_errors(snapshot_setup, tmp_path):
    snapshot_folder, images = snapshot_setup
    SnapshotRecord(str(images), EPOCHS, EPOCHS[:2], {"labels": FLARE_LABELS}).save(snapshot_folder)
    with pytest.raises(PseudoLabelError, match=r"epoch\(s\) \[11\]"):
        filter_pseudolabels(snapshot_folder, tmp_path / "out")
    SnapshotRecord(str(images), EPOCHS, EPOCHS, {"labels": FLARE_LABELS}).save(snapshot_folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PseudoLabelError, match="no cases"):
        filter_pseudolabels(snapshot_folder, tmp_path / "out", images_folder=tmp_path / "empty")
    with pytest.raises(PseudoLabelError, match="snapshots.json"):
        filter_pseudolabels(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("channel_names", [["T2"], {}, "T2"])
def test_channel_names_that_are_no_mapping_are_named_before_any_work(snapshot_setup, tmp_path, channel_names):
    snapshot_folder, images = snapshot_setup
    dataset_json = images.parent / "dataset.json"
    dataset_json.write_text(json.dumps({"channel_names": channel_names, "labels": FLARE_LABELS}))
    with pytest.raises(PseudoLabelError, match=f"{dataset_json}: 'channel_names' must map channel numbers"):
        filter_pseudolabels(snapshot_folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_all_empty_snapshots_say_the_network_learned_nothing(snapshot_setup, tmp_path):
    snapshot_folder, _ = snapshot_setup
    empty = np.zeros(SHAPE, dtype=np.uint8)
    for snapshot in snapshot_folder.glob("epoch_*/mri_*.nii.gz"):
        sitk.WriteImage(_image(empty), str(snapshot))
    with pytest.raises(PseudoLabelError, match="every snapshot pseudo-label .* is empty.*Train longer"):
        filter_pseudolabels(snapshot_folder, tmp_path / "out", keep_fraction=1.0)
    assert not (tmp_path / "out").exists()  # a run that keeps nothing writes nothing


def test_a_threshold_nothing_passes_names_the_lowest_u(snapshot_setup, tmp_path):
    snapshot_folder, images = snapshot_setup
    (images / "mri_000_0000.nii.gz").unlink()  # the case with u = 0
    lowest = snapshot_uncertainty(_snapshots_of(1))
    with pytest.raises(PseudoLabelError, match=rf"--threshold 1e-06: .* lowest is u = {lowest:.6g}, case 'mri_001'"):
        filter_pseudolabels(snapshot_folder, tmp_path / "out", threshold=1e-6)
    assert not (tmp_path / "out").exists()
