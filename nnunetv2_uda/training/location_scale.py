"""Location-scale augmentation (SLAug): random intensity curves for the whole image, or for each labelled class.

Su et al., "Rethinking data augmentation for single-source domain generalization in medical image segmentation"
(AAAI 2023), reach 88.6 % mean DSC on CHAOS T2 from CT alone with two augmentations. *Global*: the image's
intensities go through a random monotonic Bezier curve, then a random scale and shift. *Class-level*: every class of
the label map gets a curve, scale and shift of its own, the background's always reversed and each organ's reversed
with probability one half, so that which organ is brighter than which, and than the fat around it, is no cue. That
is the gap between CT and MRI: organs brighter than fat in CT are darker than fat in T1 and T2 without fat
suppression. The class-level variant needs the label map: the CT labels, or the pseudo-labels in self-training.
"""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from scipy import ndimage

from nnunetv2_uda.training.augmentation import after_spatial_augmentation

CURVE_POINTS = 256  # samples of each Bezier curve; the mapping interpolates between them
BACKGROUND_LEVEL = 0.05  # voxels this close to the image minimum (air and its noise) keep their intensity, as in SLAug


def air_around_the_body(air: np.ndarray, padding: np.ndarray) -> np.ndarray:
    """The voxels of ``air`` connected, within their slice (the last two axes), to the slice's edge, directly or
    through ``padding`` (what the crop and the spatial augmentation filled in): the air around the body, not the
    lungs or bowel gas inside it."""
    candidate = air | padding
    structure = ndimage.generate_binary_structure(2, 1)
    if candidate.ndim == 3:  # one slice at a time: never connected through the neighbouring slices
        structure = np.stack([np.zeros_like(structure), structure, np.zeros_like(structure)])
    components, _ = ndimage.label(candidate, structure)
    edge = np.zeros_like(candidate)
    edge[..., 0, :] = edge[..., -1, :] = edge[..., :, 0] = edge[..., :, -1] = True
    touching = np.unique(components[edge & candidate])
    return np.isin(components, touching[touching > 0]) & air


def random_curve(reversed_: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A random monotonic curve on [0, 1] through (0, 0) and (1, 1), or from (0, 1) to (1, 0) if ``reversed_``:
    a cubic Bezier curve with two inner control points drawn uniformly, its x and y samples each sorted."""
    inner = torch.rand(2, 2)
    control = torch.cat([torch.zeros(1, 2), inner, torch.ones(1, 2)])  # (4 points, xy)
    t = torch.linspace(0, 1, CURVE_POINTS)[:, None]
    bernstein = torch.cat([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3], dim=1)
    points = bernstein @ control
    x, y = points[:, 0].sort().values, points[:, 1].sort().values
    return x, (1 - y if reversed_ else y)


def interpolate(values: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(values) through the samples (x, y), x ascending (numpy's interp, in torch)."""
    index = torch.searchsorted(x, values.contiguous()).clamp(1, len(x) - 1)
    x0, x1, y0, y1 = x[index - 1], x[index], y[index - 1], y[index]
    weight = ((values - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + weight * (y1 - y0)


def location_scale(values: torch.Tensor, reversed_: bool) -> torch.Tensor:
    """A random curve, then a scale ~ N(1, 0.1) within [0.9, 1.1] and a shift ~ N(0, 0.5) limited so that the
    middle 60 % of ``values`` stays inside [0, 1] (SLAug's settings); the result is clipped to [0, 1]."""
    curved = interpolate(values, *random_curve(reversed_))
    scale = float(torch.normal(1.0, 0.1, ()).clamp(0.9, 1.1))
    low, high = torch.quantile(curved, torch.tensor([0.2, 0.8]))  # every class drawn has voxels
    shift = float(torch.normal(0.0, 0.5, ()).clamp(-float(low), 1 - float(high)))
    return (curved * scale + shift).clamp(0, 1)


class LocationScaleTransform(BasicTransform):
    """Replaces each channel of a sample's image by SLAug's global (probability ``1 - class_level_probability``) or
    class-level location-scale augmentation of it, driven by the first channel of the sample's segmentation.

    The channel is mapped to [0, 1] by its minimum and maximum, remapped, and given back its mean and standard
    deviation, so that z-scored training images stay z-scored, as in the random intensity networks. Random numbers
    come from torch's generator, as nnU-Net's own augmentations draw them.

    At the class level, air (the lowest ``BACKGROUND_LEVEL`` of the range) keeps its intensity; with
    ``keep_inner_air=False`` only the air around the body does, and the air inside it (lungs, bowel gas: in CT as
    dark as the air around, in MRI not) is remapped with the background, so that "as dark as the air outside" is
    never the cue that tells a lung base from the liver or spleen below it.
    """

    def __init__(self, class_level_probability: float = 0.5, organ_reversal_probability: float = 0.5,
                 keep_inner_air: bool = True):
        super().__init__()
        for name, value in (("class_level_probability", class_level_probability),
                            ("organ_reversal_probability", organ_reversal_probability)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.class_level_probability = class_level_probability
        self.organ_reversal_probability = organ_reversal_probability
        self.keep_inner_air = keep_inner_air

    def get_parameters(self, **data_dict) -> dict:
        return {"class_level": bool(torch.rand(()) < self.class_level_probability)}

    def apply(self, data_dict: dict, **params) -> dict:
        image = data_dict["image"]
        labels = data_dict["segmentation"][0] if params["class_level"] else None
        data_dict["image"] = torch.stack([self._channel(channel, labels) for channel in image]).to(image.dtype)
        return data_dict

    def _channel(self, channel: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        original = channel.float()
        low, high = original.min(), original.max()
        if high - low < 1e-8:
            return channel
        unit = (original - low) / (high - low)
        if labels is None:
            remapped = location_scale(unit.flatten(), reversed_=False).view_as(unit)
        else:
            remapped = torch.empty_like(unit)
            marked = labels.round().long()
            classes = marked.clamp_min(0)  # nnU-Net marks voxels outside the image crop -1
            for label in classes.unique().tolist():
                where = classes == label
                reverse = label == 0 or bool(torch.rand(()) < self.organ_reversal_probability)
                remapped[where] = location_scale(unit[where], reversed_=reverse)
            air = unit <= BACKGROUND_LEVEL
            if not self.keep_inner_air:
                # padding: nnU-Net's crop marks the label -1; rotation and scaling fill the image with exact zeros
                padding = (marked < 0) | (original == 0)
                air = torch.from_numpy(air_around_the_body(air.numpy(), padding.numpy()))
            remapped[air] = unit[air]
        standardized = (remapped - remapped.mean()) / (remapped.std() + 1e-8)
        return standardized * original.std() + original.mean()


def with_location_scale(transforms: BasicTransform, **settings) -> ComposeTransforms:
    """nnU-Net's training transforms with a :class:`LocationScaleTransform` after the spatial augmentation."""
    return after_spatial_augmentation(transforms, LocationScaleTransform(**settings))
