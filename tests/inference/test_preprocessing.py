"""Preprocessing in torch (the fast predictor's default) against nnU-Net's own ``run_case_npy`` with the same
input resampling: same crop box, shapes and properties, same values up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_uda.inference.predictor import nnUNetPredictorFast
from nnunetv2_uda.inference.preprocessing import TorchCasePreprocessor, nonzero_box

DATASET_JSON = {"channel_names": {"0": "MRI", "1": "CT"}, "labels": {"background": 0, "liver": 1},
                "numTraining": 1, "file_ending": ".nii.gz"}
INTENSITIES = {"0": {"mean": 300.0, "std": 80.0, "percentile_00_5": 10.0, "percentile_99_5": 600.0},
               "1": {"mean": 60.0, "std": 40.0, "percentile_00_5": -100.0, "percentile_99_5": 250.0}}


def plans(transpose_forward: list[int], use_mask_for_norm: list[bool], spacing: list[float]) -> dict:
    configuration = {
        "data_identifier": "test", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [16, 32, 32], "median_image_size_in_voxels": [20, 40, 40], "spacing": spacing,
        "normalization_schemes": ["ZScoreNormalization", "CTNormalization"], "use_mask_for_norm": use_mask_for_norm,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "unused", "arch_kwargs": {}, "_kw_requires_import": []},
        "batch_dice": False,
    }
    return {"dataset_name": "Dataset999_Test", "plans_name": "test", "image_reader_writer": "SimpleITKIO",
            "transpose_forward": transpose_forward,
            "transpose_backward": [int(i) for i in np.argsort(transpose_forward)],
            "foreground_intensity_properties_per_channel": INTENSITIES, "configurations": {"3d_fullres": configuration}}


def case(seed: int) -> np.ndarray:
    """Two channels, zero border on every side (something to crop), a zero hole inside (which nnU-Net's filled
    mask covers), intensities spread beyond the CT clipping range."""
    rng = np.random.default_rng(seed)
    images = np.zeros((2, 14, 30, 26), dtype=np.float32)
    images[:, 2:12, 3:27, 5:24] = rng.normal([[[[300.0]]], [[[60.0]]]], 150.0, (2, 10, 24, 19))
    images[:, 6:8, 10:14, 10:14] = 0
    return images


@pytest.mark.parametrize(("transpose_forward", "use_mask_for_norm", "spacing"), [
    ([0, 1, 2], [False, False], [2.5, 0.81, 0.81]),  # anisotropic: in-plane and along z separately
    ([2, 0, 1], [True, False], [1.0, 1.2, 0.7]),  # transposed axes, z-score inside the filled nonzero mask
], ids=["anisotropic", "transposed_masked"])
def test_torch_preprocessing_matches_nnunets(transpose_forward, use_mask_for_norm, spacing):
    plans_manager = PlansManager(plans(transpose_forward, use_mask_for_norm, spacing))
    configuration = plans_manager.get_configuration("3d_fullres")
    predictor = nnUNetPredictorFast(device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(None, plans_manager, configuration, None, DATASET_JSON, "nnUNetTrainer", None)
    resampling = predictor.preprocessing_configuration()  # nnU-Net's torch resampling, as both paths use it
    properties = {"spacing": [4.0, 0.8, 0.8], "sitk_stuff": {}}

    stock_properties = {**properties}
    stock, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(case(0), None, stock_properties, plans_manager,
                                                                 resampling, DATASET_JSON)
    fast_properties = {**properties}
    fast = TorchCasePreprocessor(plans_manager, resampling, torch.device("cpu")).run(case(0), fast_properties)

    for key in ("shape_before_cropping", "bbox_used_for_cropping", "shape_after_cropping_and_before_resampling"):
        assert np.array_equal(np.asarray(fast_properties[key]), np.asarray(stock_properties[key])), key
    assert fast.dtype == torch.float32 and tuple(fast.shape) == stock.shape
    np.testing.assert_allclose(fast.numpy(), stock, rtol=1e-5, atol=1e-5)


def test_nonzero_box_is_the_whole_image_when_all_is_zero():
    """As nnU-Net's ``get_bbox_from_mask``: an empty image is not cropped to nothing."""
    assert nonzero_box(torch.zeros((1, 3, 4, 5))) == [[0, 3], [0, 4], [0, 5]]
    data = torch.zeros((2, 3, 4, 5))
    data[1, 1, 2, 3] = 1.0
    assert nonzero_box(data) == [[1, 2], [2, 3], [3, 4]]
