"""Our intensity augmentations sit right after nnU-Net's spatial augmentation and run inside its composed transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_uda.training.location_scale import LocationScaleTransform, with_location_scale
from nnunetv2_uda.training.random_intensity_networks import (
    RandomIntensityNetworkTransform,
    with_random_intensity_networks,
)

AUGMENTATIONS = [(with_random_intensity_networks, RandomIntensityNetworkTransform),
                 (with_location_scale, LocationScaleTransform)]


@pytest.mark.parametrize("wrap,step_class", AUGMENTATIONS)
@pytest.mark.parametrize("patch_size,dummy_2d", [((64, 64), False), ((16, 64, 64), True), ((32, 32, 32), False)])
def test_inserted_right_after_nnunets_spatial_augmentation(wrap, step_class, patch_size, dummy_2d):
    stock = nnUNetTrainer.get_training_transforms(patch_size, (-0.5, 0.5), None, (0, 1), dummy_2d)
    steps = wrap(stock).transforms
    position = next(i for i, step in enumerate(steps) if isinstance(step, step_class))
    expected_before = Convert2DTo3DTransform if dummy_2d else SpatialTransform
    assert isinstance(steps[position - 1], expected_before)
    assert [type(s) for s in steps[:position] + steps[position + 1:]] == [type(s) for s in stock.transforms]


@pytest.mark.parametrize("wrap,step_class", AUGMENTATIONS)
def test_runs_inside_nnunets_composed_augmentation_with_its_deep_supervision(wrap, step_class):
    torch.manual_seed(3)
    transforms = wrap(nnUNetTrainer.get_training_transforms((48, 48), (-0.5, 0.5), [[1, 1], [0.5, 0.5]], (0, 1),
                                                           False))
    image = torch.ones(1, 64, 64)
    image[:, 16:48, 16:48] = 3.0
    out = transforms(image=image + 0.1 * torch.randn(1, 64, 64), segmentation=(image > 2).to(torch.int16))
    assert out["image"].shape == (1, 48, 48) and [s.shape for s in out["segmentation"]] == [(1, 48, 48), (1, 24, 24)]
    assert np.isfinite(out["image"].numpy()).all()


@pytest.mark.parametrize("wrap", [wrap for wrap, _ in AUGMENTATIONS])
def test_only_composed_transforms_are_accepted(wrap):
    with pytest.raises(TypeError, match="ComposeTransforms"):
        wrap(SpatialTransform((8, 8), 0, False))
    with pytest.raises(ValueError, match="SpatialTransform"):
        wrap(ComposeTransforms([]))
