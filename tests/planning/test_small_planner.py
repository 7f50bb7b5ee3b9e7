"""nnUNetPlannerUDASmall through the real nnUNetv2_plan_and_preprocess / nnUNetv2_plan_experiment commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest


def _configurations(plans_file: Path) -> dict:
    return json.loads(plans_file.read_text())["configurations"]


def test_plans_hold_the_papers_small_network(tiny_plans):
    plans = json.loads(tiny_plans.read_text())
    assert plans["plans_name"] == "nnUNetPlansUDASmall"
    assert plans["experiment_planner_used"] == "nnUNetPlannerUDASmall"
    assert set(plans["configurations"]) == {"2d", "3d_fullres"}

    fullres = plans["configurations"]["3d_fullres"]
    assert fullres["patch_size"] == [40, 224, 192]
    assert fullres["spacing"] == pytest.approx([2.5, 0.81, 0.81])
    assert fullres["batch_size"] == 2
    arch = fullres["architecture"]["arch_kwargs"]
    assert arch["n_stages"] == 5
    assert arch["features_per_stage"] == [16, 32, 64, 128, 256]
    assert arch["n_conv_per_stage"] == [2, 2, 2, 2, 2]
    assert arch["n_conv_per_stage_decoder"] == [2, 2, 2, 2]
    assert arch["strides"] == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert fullres["architecture"]["network_class_name"].endswith("PlainConvUNet")

    planar = plans["configurations"]["2d"]
    arch_2d = planar["architecture"]["arch_kwargs"]
    assert arch_2d["n_stages"] == 5
    assert arch_2d["features_per_stage"] == [16, 32, 64, 128, 256]
    assert arch_2d["n_conv_per_stage"] == [2, 2, 2, 2, 2]
    assert planar["patch_size"] == [64, 64]  # nnU-Net's own choice: the whole (tiny) slice
    assert planar["batch_size"] >= 2


def test_preprocessed_data_exists_for_2d(tiny_plans):
    preprocessed = tiny_plans.parent / "nnUNetPlansUDASmall_2d"
    assert len(list(preprocessed.glob("*.b2nd"))) + len(list(preprocessed.glob("*.npz"))) >= 4


def test_overwrite_target_spacing_and_plans_name_still_work(tiny_plans, tiny_dataset, run_command):
    run_command(["nnUNetv2_plan_experiment", "-d", tiny_dataset.dataset_id, "-pl", "nnUNetPlannerUDASmall",
                 "-overwrite_target_spacing", "3.0", "1.6", "1.6",
                 "-overwrite_plans_name", "nnUNetPlansUDASmallCoarse"])
    configurations = _configurations(tiny_plans.parent / "nnUNetPlansUDASmallCoarse.json")
    assert configurations["3d_fullres"]["spacing"] == pytest.approx([3.0, 1.6, 1.6])
    assert configurations["2d"]["spacing"] == pytest.approx([1.6, 1.6])
    assert configurations["3d_fullres"]["architecture"]["arch_kwargs"]["n_stages"] == 5


def test_unknown_planner_is_an_error_naming_it(tiny_plans, tiny_dataset, nnunet_env):
    result = subprocess.run(["nnUNetv2_plan_experiment", "-d", str(tiny_dataset.dataset_id),
                             "-pl", "nnUNetPlannerUDATypo"], env=nnunet_env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "nnUNetPlannerUDATypo" in result.stderr
    assert "nnunetv2_uda.planning" in result.stderr


@pytest.mark.slow
def test_labels_missing_from_dataset_json_are_rejected(tmp_path, nnunet_env):
    from conftest import write_tiny_dataset

    dataset = write_tiny_dataset(Path(nnunet_env["nnUNet_raw"]) / "Dataset909_BadLabels", num_cases=2)
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    del dataset_json["labels"]["spleen"]  # spleen voxels remain in the label maps
    (dataset / "dataset.json").write_text(json.dumps(dataset_json))
    result = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "909", "-pl", "nnUNetPlannerUDASmall",
                             "--verify_dataset_integrity", "--no_pp", "-np", "1"],
                            env=nnunet_env, capture_output=True, text=True)
    assert result.returncode != 0
    assert not (Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset909_BadLabels" / "nnUNetPlansUDASmall.json").exists()


@pytest.mark.slow
def test_unset_nnunet_folders_are_reported(tiny_dataset):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    result = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", str(tiny_dataset.dataset_id),
                             "-pl", "nnUNetPlannerUDASmall"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "nnUNet_raw" in result.stdout + result.stderr


def test_fullres_matches_the_reference_in_plans_folder(tiny_plans):
    reference_file = Path(__file__).resolve().parents[2] / "plans" / "nnUNetPlansUDASmall_3d_fullres.reference.json"
    reference = json.loads(reference_file.read_text())["3d_fullres"]
    planned = _configurations(tiny_plans)["3d_fullres"]
    assert {key: planned[key] for key in reference} == reference


def test_large_images_plan_the_same_small_network(tiny_plans, tiny_dataset, nnunet_env):
    """nnU-Net's patch search tries deeper networks for big images (CT at 512x512) before we cut them to 5 stages."""
    from nnunetv2_uda.planning.small_planner import nnUNetPlannerUDASmall

    fingerprint_file = tiny_plans.parent / "dataset_fingerprint.json"
    fingerprint = json.loads(fingerprint_file.read_text())
    large = {**fingerprint, "shapes_after_crop": [[100, 512, 512]] * len(fingerprint["shapes_after_crop"])}
    fingerprint_file.write_text(json.dumps(large))
    try:
        planner = nnUNetPlannerUDASmall(tiny_dataset.dataset_id, plans_name="nnUNetPlansUDASmallLarge")
        plans = planner.plan_experiment()
    finally:
        fingerprint_file.write_text(json.dumps(fingerprint))
    for configuration in ("2d", "3d_fullres"):
        arch = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
        assert arch["n_stages"] == 5 and len(arch["n_conv_per_stage"]) == 5
    assert list(plans["configurations"]["3d_fullres"]["patch_size"]) == [40, 224, 192]
