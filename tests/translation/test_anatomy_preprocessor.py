"""Anatomy space through nnU-Net's own pipeline: plans name our preprocessor and normalization, stock commands run."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from nnunetv2_uda.translation.anatomy_preprocessor import CTAnatomySpaceNormalization, MRIAnatomySpaceNormalization
from nnunetv2_uda.translation.anatomy_space import anatomy_space, normalize_ct, normalize_mri

DATASET_ID = 931
DATASET_NAME = f"Dataset{DATASET_ID}_TinyCTAnatomy"
PLANS = "nnUNetPlansAnatomy"
TRAINER = "nnUNetTrainerUDASmall_1epochs_2iters_noval"  # nnU-Net's final validation: tiny_trained_model


def test_normalization_schemes_are_the_anatomy_space_normalizations():
    image = np.random.default_rng(0).normal(100, 300, (4, 8, 8))
    ct = CTAnatomySpaceNormalization(use_mask_for_norm=False, intensityproperties={}).run(image.copy())
    mri = MRIAnatomySpaceNormalization(use_mask_for_norm=False, intensityproperties={}).run(image.copy())
    assert ct.dtype == np.float32 and np.allclose(ct, normalize_ct(image))
    assert np.allclose(mri, normalize_mri(image))


@pytest.mark.slow
def test_plans_with_anatomy_space_preprocess_train_and_predict(tiny_dataset, nnunet_env, run_command, tmp_path):
    raw = Path(nnunet_env["nnUNet_raw"]) / DATASET_NAME
    shutil.copytree(tiny_dataset.folder, raw)
    run_command(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-pl", "nnUNetPlannerUDASmall", "-c", "2d",
                 "-np", "1", "--no_pp", "-preprocessor_name", "AnatomySpacePreprocessor",
                 "-overwrite_plans_name", PLANS])
    plans_file = Path(nnunet_env["nnUNet_preprocessed"]) / DATASET_NAME / f"{PLANS}.json"
    plans = json.loads(plans_file.read_text())
    assert plans["configurations"]["2d"]["preprocessor_name"] == "AnatomySpacePreprocessor"
    plans["configurations"]["2d"]["normalization_schemes"] = ["CTAnatomySpaceNormalization"]
    plans_file.write_text(json.dumps(plans, indent=2))
    run_command(["nnUNetv2_preprocess", "-d", DATASET_ID, "-plans_name", PLANS, "-c", "2d", "-np", "1"])

    # the preprocessed case is the anatomy space of the raw image (the tiny dataset needs no cropping/resampling)
    case = "tiny_000"
    image = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
    preprocessed_folder = Path(nnunet_env["nnUNet_preprocessed"]) / DATASET_NAME / f"{PLANS}_2d"
    data = np.asarray(nnUNetDatasetBlosc2(str(preprocessed_folder), [case]).load_case(case)[0][0])
    expected = anatomy_space(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1], "ct")
    assert data.shape == expected.shape
    assert np.allclose(data, expected, atol=1e-4)

    run_command(["nnUNetv2_train", DATASET_ID, "2d", "all", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"])
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(raw / "imagesTr" / f"{case}_0000.nii.gz", inputs)
    run_command(["nnUNetv2_predict", "-i", inputs, "-o", outputs, "-d", DATASET_ID, "-c", "2d", "-f", "all",
                 "-tr", TRAINER, "-p", PLANS, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                env={**nnunet_env, "OMP_NUM_THREADS": "1"})
    prediction = sitk.ReadImage(str(outputs / f"{case}.nii.gz"))
    assert prediction.GetSize() == image.GetSize() and prediction.GetSpacing() == image.GetSpacing()
    assert os.path.isfile(outputs / "plans.json")
