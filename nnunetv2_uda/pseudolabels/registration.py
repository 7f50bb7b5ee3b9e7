"""Affine registration of one case's pseudo-label onto another case (multi-domain matching's warp step).

Data term mean squares (L2), no regularizer, three resolution levels, initialized by aligning centres of mass, as
the paper describes. By default the label maps themselves are registered (label ids as intensities, the same
mapping on both sides): the two cases come from different MRI sequences, whose intensities are not comparable, so
an L2 term on the images would pull organs of opposite contrast onto each other. The images option (z-scored
intensities) is there for cases of the same sequence. The body option registers the body outlines (each image's body
mask): contrast does not enter it, and neither does the case's own pseudo-label, which is wrong where MDM is needed
most (a label registered onto a wrong label lands where the wrong one is). The world option registers nothing (the
identity; its metric is that of the label maps as they lie): the matched label is resampled where the scanner placed
it, which is right for series of one patient from one session (they share the scanner's coordinates, as DICOM's
frame of reference says) and meaningless across patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk

RegistrationInput = Literal["labels", "images", "body", "world"]
REGISTRATION_INPUTS: tuple[RegistrationInput, ...] = ("labels", "images", "body", "world")


@dataclass
class RegistrationResult:
    transform: sitk.Transform  # maps points of the fixed case to the moving case (SimpleITK's convention)
    metric_before: float  # mean squares with the cases as they lie in the world (identity transform)
    metric_after: float  # mean squares after registration


def body_mask(image: sitk.Image) -> sitk.Image:
    """The body: voxels above Otsu's threshold, holes filled (dark organs and lungs inside), largest component."""
    foreground = sitk.BinaryFillhole(sitk.OtsuThreshold(image, 0, 1))
    return sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True) == 1


def registration_input(image: sitk.Image, kind: RegistrationInput) -> sitk.Image:
    """The float image the L2 term compares: label ids as they are, z-scored intensities, or the body mask."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    if kind in ("labels", "world"):
        return image
    if kind == "body":
        return sitk.Cast(body_mask(image), sitk.sitkFloat32)
    if kind != "images":
        raise ValueError(f"registration input must be one of {', '.join(REGISTRATION_INPUTS)}, got {kind!r}")
    array = sitk.GetArrayViewFromImage(image)
    normalized = sitk.ShiftScale(image, -float(array.mean()), 1.0 / max(float(array.std()), 1e-8))
    return sitk.Cast(normalized, sitk.sitkFloat32)


def mean_squares(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Mean over the fixed grid of (fixed - moving warped by ``transform``)^2, outside the moving image 0."""
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    difference = sitk.GetArrayViewFromImage(fixed) - sitk.GetArrayViewFromImage(warped)
    return float(np.mean(difference ** 2))


def _centre_of_mass_initializer(fixed: sitk.Image, moving: sitk.Image, kind: RegistrationInput) -> sitk.Transform:
    """Affine transform that maps the fixed centre of mass onto the moving one (of the foreground for labels and
    body masks)."""
    def weights(image: sitk.Image) -> sitk.Image:
        return sitk.Cast(image > 0, sitk.sitkFloat32) if kind in ("labels", "body") else image - float(
            np.min(sitk.GetArrayViewFromImage(image)))

    return sitk.CenteredTransformInitializer(weights(fixed), weights(moving),
                                             sitk.AffineTransform(fixed.GetDimension()),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)


def register_affine(fixed: sitk.Image, moving: sitk.Image, kind: RegistrationInput = "labels",
                    iterations: int = 300) -> RegistrationResult:
    """Registers ``moving`` onto ``fixed`` (both label maps, or both images for ``images`` and ``body``); ``world``
    returns the identity, whatever the labels hold (the case's own may be empty: that is when it needs another's)."""
    fixed_input, moving_input = registration_input(fixed, kind), registration_input(moving, kind)
    identity = sitk.Transform(fixed.GetDimension(), sitk.sitkIdentity)
    if kind == "world":
        metric = mean_squares(fixed_input, moving_input, identity)
        return RegistrationResult(identity, metric, metric)
    if not np.any(sitk.GetArrayViewFromImage(fixed_input)) or not np.any(sitk.GetArrayViewFromImage(moving_input)):
        raise ValueError("cannot register an empty image or label map")
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=iterations,
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(_centre_of_mass_initializer(fixed_input, moving_input, kind), inPlace=False)
    transform = method.Execute(fixed_input, moving_input)
    return RegistrationResult(transform, mean_squares(fixed_input, moving_input, identity),
                              mean_squares(fixed_input, moving_input, transform))


def warp_label(label: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """``label`` resampled onto ``reference``'s grid through ``transform`` (nearest neighbour, 0 outside)."""
    return sitk.Resample(label, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
