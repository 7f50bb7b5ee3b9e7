"""Random intensity networks (GIN): new contrast, same shape, same statistics; placed in nnU-Net's augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_uda.training.random_intensity_networks import (
    RandomIntensityNetworkTransform,
    with_random_intensity_networks,
)


def two_region_image(shape: tuple[int, ...], channels: int = 1) -> torch.Tensor:
    """Left half 1, right half 3 (per channel scaled): two flat regions and one edge."""
    image = torch.ones(channels, *shape)
    image[..., shape[-1] // 2:] = 3.0
    return image * torch.arange(1, channels + 1).view(-1, *[1] * len(shape))


@pytest.mark.parametrize("shape,channels", [((32, 40), 1), ((12, 20, 24), 1), ((32, 40), 2)])
def test_keeps_shape_dtype_and_each_channels_mean_and_std(shape, channels):
    torch.manual_seed(0)
    image = two_region_image(shape, channels) + 0.1 * torch.randn(channels, *shape)
    out = RandomIntensityNetworkTransform()(image=image.clone())["image"]
    assert out.shape == image.shape and out.dtype == image.dtype
    axes = tuple(range(1, image.ndim))
    assert torch.allclose(out.mean(axes), image.mean(axes), atol=1e-4)
    assert torch.allclose(out.std(axes), image.std(axes), atol=1e-4)


def test_changes_contrast_not_shape():
    """A network of small kernels maps flat regions to flat regions: away from the edges each of three tissues
    stays flat, so the outlines survive, while how the tissues' intensities relate is redrawn every time."""
    torch.manual_seed(1)
    image = torch.ones(1, 32, 48)
    image[..., 16:32], image[..., 32:] = 2.0, 4.0
    image = (image - image.mean()) / image.std()  # z-scored, as nnU-Net hands images to the augmentation
    transform = RandomIntensityNetworkTransform()
    middle_positions = []
    for _ in range(100):
        out = transform(image=image.clone())["image"][0]
        # the receptive field of 4 layers of 3x3 kernels reaches 4 pixels: tissue interiors are 5 pixels from edges
        tissues = [out[5:-5, 5:11], out[5:-5, 21:27], out[5:-5, 37:43]]
        assert all(tissue.std() < 1e-3 for tissue in tissues)
        low, middle, high = (float(tissue.mean()) for tissue in tissues)
        middle_positions.append((middle - low) / (high - low))  # 1/3 in the input
    # over seeds 0-39: 50-71 of 100 non-linear, 5-18 with the middle tissue darkest, 1-12 with it brightest
    assert sum(abs(p - 1 / 3) > 0.02 for p in middle_positions) >= 35  # many new, non-linear contrasts
    assert any(p < 0 for p in middle_positions) and any(p > 1 for p in middle_positions)  # tissues reordered


def test_leaves_the_segmentation_alone():
    torch.manual_seed(2)
    segmentation = torch.randint(0, 3, (1, 16, 16))
    out = RandomIntensityNetworkTransform()(image=torch.randn(1, 16, 16), segmentation=segmentation.clone())
    assert torch.equal(out["segmentation"], segmentation)


@pytest.mark.parametrize("settings", [{"num_layers": 0}, {"hidden_channels": 0}, {"kernel_sizes": (2,)},
                                      {"kernel_sizes": ()}])
def test_bad_settings_are_named(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        RandomIntensityNetworkTransform(**settings)


def test_runs_inside_nnunets_composed_augmentation():
    torch.manual_seed(3)
    transforms = with_random_intensity_networks(
        nnUNetTrainer.get_training_transforms((48, 48), (-0.5, 0.5), None, (0, 1), False))
    image = two_region_image((64, 64))
    out = transforms(image=image, segmentation=(image > 2).to(torch.int16))
    assert out["image"].shape == (1, 48, 48) and out["segmentation"].shape == (1, 48, 48)
    assert np.isfinite(out["image"].numpy()).all()
