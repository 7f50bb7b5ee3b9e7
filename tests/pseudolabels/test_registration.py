"""Affine registration of label maps recovers a known synthetic affine."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_uda.pseudolabels.label_io import same_geometry
from nnunetv2_uda.pseudolabels.registration import body_mask, register_affine, warp_label

ORGANS = {  # label: (centre, radii) in [-1, 1] coordinates (z, y, x)
    1: ((0.1, -0.1, -0.3), (0.6, 0.4, 0.35)),
    2: ((-0.3, 0.4, -0.45), (0.35, 0.2, 0.15)),
    3: ((0.2, 0.1, 0.5), (0.4, 0.25, 0.2)),
    4: ((-0.3, 0.4, 0.45), (0.35, 0.2, 0.15)),
}


def organ_label_map(shape=(20, 40, 40), spacing=(2.4, 2.4, 4.8), origin=(10.0, -20.0, 5.0)) -> sitk.Image:
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    label = np.zeros(shape, dtype=np.uint8)
    for value, (centre, radii) in ORGANS.items():
        inside = sum(((axis - c) / r) ** 2 for axis, c, r in zip((z, y, x), centre, radii, strict=True)) < 1
        label[inside & (label == 0)] = value
    image = sitk.GetImageFromArray(label)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def known_affine(reference: sitk.Image) -> sitk.AffineTransform:
    angle = np.deg2rad(8)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((rotation @ np.diag([1.08, 0.95, 1.0])).ravel().tolist())
    transform.SetTranslation((5.0, -4.0, 3.0))
    transform.SetCenter(reference.TransformContinuousIndexToPhysicalPoint([s / 2 for s in reference.GetSize()]))
    return transform


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum((a == b) & (a > 0)) / (np.sum(a > 0) + np.sum(b > 0)))


@pytest.mark.parametrize("kind", ["labels", "images"])
def test_registration_recovers_known_affine(kind):
    fixed = organ_label_map()
    moving_grid = sitk.Image((42, 38, 22), sitk.sitkUInt8)  # the moving case has its own geometry
    moving_grid.SetSpacing((2.3, 2.5, 4.6))
    moving_grid.SetOrigin((14.0, -16.0, 1.0))
    moving = sitk.Resample(fixed, moving_grid, known_affine(fixed).GetInverse(), sitk.sitkNearestNeighbor, 0)
    assert dice(sitk.GetArrayFromImage(warp_label(moving, fixed, sitk.Transform())),
                sitk.GetArrayFromImage(fixed)) < 0.8  # misaligned to begin with

    result = register_affine(fixed, moving, kind)
    warped = warp_label(moving, fixed, result.transform)

    assert same_geometry(warped, fixed)
    assert dice(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(fixed)) >= 0.95
    assert result.metric_after < result.metric_before


def test_empty_label_cannot_be_registered():
    fixed = organ_label_map()
    with pytest.raises(ValueError, match="empty"):
        register_affine(fixed, fixed * 0)


def body_image(label: sitk.Image, organ_intensities: dict[int, float]) -> sitk.Image:
    """An image of ``label``'s case: a body (an ellipsoid with a block at its back, so no rotation maps it onto itself)
    at 100 on air at 0, each organ at its own intensity (darker than the body or brighter, as sequences differ)."""
    shape = label.GetSize()[::-1]
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = ((z / 0.95) ** 2 + (y / 0.8) ** 2 + (x / 0.95) ** 2 < 1) | ((np.abs(x) < 0.25) & (y > 0.5) & (y < 0.95))
    array = np.where(body, 100.0, 0.0).astype(np.float32)
    labels = sitk.GetArrayFromImage(label)
    for value, intensity in organ_intensities.items():
        array[labels == value] = intensity
    array[2:4, 2:4, 2:4] = 500.0  # a bright speck in the air: not the body
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(label)
    return image


def test_body_mask_fills_dark_organs_and_drops_specks():
    label = organ_label_map()
    mask = sitk.GetArrayFromImage(body_mask(body_image(label, {1: 5.0, 2: 300.0, 3: 5.0, 4: 300.0})))
    labels = sitk.GetArrayFromImage(label)
    assert mask[labels > 0].all()  # dark organs inside the body are body
    assert not mask[2:4, 2:4, 2:4].any() and not mask[0, 0, 0]


def test_body_registration_ignores_contrast_and_the_own_label():
    """The moving case is another sequence (organ contrast reversed) in its own geometry; aligning body outlines
    recovers the affine without reading either case's label."""
    fixed_label = organ_label_map()
    fixed = body_image(fixed_label, {1: 20.0, 2: 250.0, 3: 20.0, 4: 250.0})
    grid = sitk.Image((42, 38, 22), sitk.sitkFloat32)
    grid.SetSpacing((2.3, 2.5, 4.6))
    grid.SetOrigin((14.0, -16.0, 1.0))
    inverse = known_affine(fixed_label).GetInverse()
    moving = sitk.Resample(body_image(fixed_label, {1: 250.0, 2: 20.0, 3: 250.0, 4: 20.0}), grid, inverse,
                           sitk.sitkLinear, 0.0)
    moving_label = sitk.Resample(fixed_label, grid, inverse, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)

    result = register_affine(fixed, moving, "body")
    warped = sitk.GetArrayFromImage(warp_label(moving_label, fixed, result.transform))
    assert dice(warped, sitk.GetArrayFromImage(fixed_label)) >= 0.85
    assert dice(sitk.GetArrayFromImage(warp_label(moving_label, fixed, sitk.Transform())),
                sitk.GetArrayFromImage(fixed_label)) < 0.8
