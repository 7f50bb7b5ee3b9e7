"""SLAug's location-scale augmentation: monotonic random curves, globally or per labelled class, background reversed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunetv2_uda.training.location_scale import (
    LocationScaleTransform,
    air_around_the_body,
    interpolate,
    random_curve,
)


@pytest.mark.parametrize("reversed_", [False, True])
def test_a_curve_is_monotonic_from_corner_to_corner(reversed_):
    torch.manual_seed(0)
    for _ in range(20):
        x, y = random_curve(reversed_)
        assert (x.diff() >= 0).all() and x[0] == 0 and x[-1] == 1
        assert ((y.diff() <= 0) if reversed_ else (y.diff() >= 0)).all()
        assert (y[0], y[-1]) == ((1, 0) if reversed_ else (0, 1))


def test_interpolation_is_numpys():
    x, y = torch.tensor([0.0, 0.2, 0.2, 0.7, 1.0]), torch.tensor([0.0, 0.5, 0.6, 0.9, 1.0])
    values = torch.linspace(-0.1, 1.1, 50)
    assert np.allclose(interpolate(values, x, y).numpy(), np.interp(values.numpy(), x.numpy(), y.numpy()), atol=1e-6)


def ramp_with_organ(shape=(40, 40)) -> tuple[torch.Tensor, torch.Tensor]:
    """An intensity ramp along x over the whole image (its first columns, near the minimum, count as air), with a square
    label 1."""
    image = torch.linspace(0.5, 3.0, shape[1]).expand(1, *shape).clone()
    labels = torch.zeros(1, *shape, dtype=torch.int16)
    labels[:, 10:30, 10:30] = 1
    return image, labels


def order_along_ramp(out: torch.Tensor, mask: torch.Tensor) -> set[int]:
    """The signs of the output's differences along x inside ``mask``: {1} increasing, {-1} decreasing."""
    row = out[0, 20][mask[0, 20]]
    return {int(v) for v in torch.sign(row.diff()).unique().tolist() if v != 0}


def test_global_keeps_the_order_of_intensities_and_the_statistics():
    torch.manual_seed(1)
    image, labels = ramp_with_organ()
    for _ in range(10):
        out = LocationScaleTransform(class_level_probability=0)(image=image.clone(), segmentation=labels)["image"]
        assert order_along_ramp(out, torch.ones_like(labels, dtype=torch.bool)) <= {1}
        assert torch.isclose(out.mean(), image.mean(), atol=1e-4) and torch.isclose(out.std(), image.std(), atol=1e-4)


@pytest.mark.parametrize("organ_reversal,organ_order", [(0.0, {1}), (1.0, {-1})])
def test_class_level_reverses_the_background_and_organs_as_drawn(organ_reversal, organ_order):
    torch.manual_seed(2)
    image, labels = ramp_with_organ()
    transform = LocationScaleTransform(class_level_probability=1, organ_reversal_probability=organ_reversal)
    organ = labels.bool()
    background_left = ~organ & (torch.arange(40) >= 5) & (torch.arange(40) < 10)  # air (5 % of the range) out
    organ_seen, background_seen = set(), set()
    for _ in range(10):
        out = transform(image=image.clone(), segmentation=labels.clone())
        assert torch.equal(out["segmentation"], labels)
        organ_seen |= order_along_ramp(out["image"], organ)
        background_seen |= order_along_ramp(out["image"], background_left)
    assert organ_seen == organ_order and background_seen == {-1}  # a clipped, flat sample alone would show nothing


def test_air_keeps_its_place_and_voxels_outside_the_crop_count_as_background():
    torch.manual_seed(3)
    image, labels = ramp_with_organ()
    image[:, :, :5] = -1.0  # air: the image minimum
    labels[:, :, :3] = -1  # nnU-Net's mark for voxels outside the crop
    out = LocationScaleTransform(class_level_probability=1)(image=image.clone(), segmentation=labels)["image"]
    air = out[0, :, :5]
    assert torch.allclose(air, air[0, 0]) and (out[0, :, 5:] > air[0, 0]).any()
    assert torch.isfinite(out).all()


def body_with_lung(size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """A slice of air (-1) around a body (tissue 0.5 to 3.0, a ramp) holding a lung (air, -1) and an organ (label 1)."""
    image = torch.full((1, size, size), -1.0)
    image[:, 5:35, 5:35] = torch.linspace(0.5, 3.0, 30).expand(30, 30)
    image[:, 10:18, 10:18] = -1.0  # the lung: as dark as the air around the body, as in CT
    labels = torch.zeros(1, size, size, dtype=torch.int16)
    labels[:, 22:30, 22:30] = 1
    return image, labels


@pytest.mark.parametrize("keep_inner_air", [True, False])
def test_air_inside_the_body_is_kept_or_remapped_as_asked(keep_inner_air):
    image, labels = body_with_lung()
    lung_remapped = 0
    for seed in range(5):
        torch.manual_seed(seed)
        out = LocationScaleTransform(class_level_probability=1, keep_inner_air=keep_inner_air)(
            image=image.clone(), segmentation=labels.clone())["image"][0]
        outside = out[:5, :]
        assert torch.allclose(outside, outside[0, 0])  # the air around the body keeps one intensity either way
        lung = out[10:18, 10:18]
        lung_remapped += not torch.allclose(lung, outside[0, 0])
    assert lung_remapped == (0 if keep_inner_air else 5)


def test_the_air_around_the_body_reaches_the_edge_through_padding_and_never_through_other_slices():
    air = np.zeros((2, 12, 12), dtype=bool)
    air[:, 1:11, 1:3] = True  # air beside the body, separated from the edge by padding in both slices
    air[:, 5:7, 6:8] = True  # a lung in both slices
    air[1, 0, 6:8] = True  # in slice 1 only, the lung's column reaches the edge: slice 0's lung stays inside
    air[1, 1:5, 6:8] = True
    padding = np.zeros_like(air)
    padding[:, :, 0] = True  # the spatial augmentation's fill along the first column
    around = air_around_the_body(air, padding)
    assert around[:, 1:11, 1:3].all()
    assert not around[0, 5:7, 6:8].any() and around[1, 5:7, 6:8].all()
    assert not air_around_the_body(air, np.zeros_like(air))[0, 1:11, 1:3].any()  # without the padding, enclosed


def test_a_flat_channel_is_left_as_it_is_and_each_channel_is_remapped_on_its_own():
    image = torch.stack([torch.full((16, 16), 2.0), torch.linspace(0, 1, 16).expand(16, 16)])
    torch.manual_seed(4)
    out = LocationScaleTransform()(image=image.clone(), segmentation=torch.zeros(1, 16, 16))["image"]
    assert torch.equal(out[0], image[0]) and out.dtype == image.dtype
    assert not torch.allclose(out[1], image[1], atol=1e-3)  # the second channel got a curve of its own
    assert torch.isclose(out[1].mean(), image[1].mean(), atol=1e-4) and torch.isclose(out[1].std(), image[1].std())


@pytest.mark.parametrize("settings", [{"class_level_probability": 1.5}, {"organ_reversal_probability": -0.1}])
def test_bad_settings_are_named(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        LocationScaleTransform(**settings)
