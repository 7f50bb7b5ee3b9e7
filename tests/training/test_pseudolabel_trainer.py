"""nnUNetTrainerUDAPseudoLabel driven through the real nnUNetv2_plan_and_preprocess / nnUNetv2_train commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from conftest import write_tiny_dataset

from nnunetv2_uda.pseudolabels.label_io import image_channel_files, same_geometry
from nnunetv2_uda.pseudolabels.snapshots import (
    SnapshotRecord,
    default_snapshot_epochs,
    resume_record,
    snapshot_epochs_from_config,
)
from nnunetv2_uda.training.pseudolabel_trainer import nnUNetTrainerUDAPseudoLabel

DATASET_ID = 955
DATASET_NAME = f"Dataset{DATASET_ID}_TinyPseudoLabel"
TRAINER = "nnUNetTrainerUDAPseudoLabel_2epochs_3iters_noval"


def test_default_snapshot_epochs_end_equal_chunks():
    assert default_snapshot_epochs(1000, 4) == [249, 499, 749, 999]
    assert default_snapshot_epochs(2, 2) == [0, 1]
    assert snapshot_epochs_from_config({"target_images": "x", "snapshot_epochs": [3, 7]}, 8) == [3, 7]
    with pytest.raises(ValueError, match="snapshot_epochs"):
        snapshot_epochs_from_config({"snapshot_epochs": [3, 8]}, 8)
    with pytest.raises(ValueError, match="num_snapshots"):
        default_snapshot_epochs(3, 4)


def test_continued_training_keeps_only_snapshots_of_trained_epochs():
    previous = SnapshotRecord("/t", [9, 19, 29], [9, 19], {})
    assert resume_record(previous, SnapshotRecord("/t", [9, 19, 29]), current_epoch=20).complete == [9, 19]
    assert resume_record(previous, SnapshotRecord("/t", [9, 19, 29]), current_epoch=15).complete == [9]
    assert resume_record(previous, SnapshotRecord("/t", [9, 19, 29]), current_epoch=0).complete == []
    assert resume_record(previous, SnapshotRecord("/other", [9, 19, 29]), current_epoch=20).complete == []


@pytest.mark.slow
def test_trainer_writes_k_snapshots_in_original_geometry(nnunet_env, run_command, tmp_path):
    raw = Path(nnunet_env["nnUNet_raw"]) / DATASET_NAME
    write_tiny_dataset(raw, num_cases=2, seed=40)
    target = tmp_path / "target"
    write_tiny_dataset(target, num_cases=1, seed=50)
    target_images = target / "imagesTr"
    (image_file,) = target_images.iterdir()  # a target in another geometry than the training data
    image = sitk.ReadImage(str(image_file))
    image.SetOrigin((12.0, -30.0, 5.0))
    image.SetSpacing((0.9, 0.9, 3.0))
    sitk.WriteImage(image, str(image_file))
    dataset_json = json.loads((raw / "dataset.json").read_text())
    dataset_json["uda_pseudolabel"] = {"target_images": str(target_images), "num_snapshots": 2}
    (raw / "dataset.json").write_text(json.dumps(dataset_json))

    run_command(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-pl", "nnUNetPlannerUDASmall", "-c", "2d",
                 "-np", "1"])
    run_command(["nnUNetv2_train", DATASET_ID, "2d", "all", "-tr", TRAINER, "-p", "nnUNetPlansUDASmall",
                 "-device", "cpu"])

    snapshots = (Path(nnunet_env["nnUNet_results"]) / DATASET_NAME / f"{TRAINER}__nnUNetPlansUDASmall__2d"
                 / "fold_all" / "pseudolabel_snapshots")
    record = json.loads((snapshots / "snapshots.json").read_text())
    assert record["epochs"] == [0, 1] and record["complete"] == [0, 1]
    assert record["target_images"] == str(target_images)
    assert record["dataset_json"]["labels"]["liver"] == 1
    assert sorted(p.name for p in snapshots.iterdir() if p.is_dir()) == ["epoch_0000", "epoch_0001"]
    for epoch_folder in ("epoch_0000", "epoch_0001"):
        for case, (image_file,) in image_channel_files(target_images).items():
            label = sitk.ReadImage(str(snapshots / epoch_folder / f"{case}.nii.gz"))
            assert same_geometry(label, sitk.ReadImage(str(image_file))), (epoch_folder, case)

    # the same dataset without the "uda_pseudolabel" key: the trainer refuses to start and names the key
    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / DATASET_NAME
    plans = json.loads((preprocessed / "nnUNetPlansUDASmall.json").read_text())
    del dataset_json["uda_pseudolabel"]
    with pytest.raises(ValueError, match="'uda_pseudolabel'"):
        nnUNetTrainerUDAPseudoLabel(plans, "2d", 0, dataset_json, torch.device("cpu"))
