"""Axial slices on a common in-plane grid: extracted once and cached in memory for fast translator training.

Each cached slice has two channels: the image in its domain's own space (channel 0) and in the other generator's
input space (channel 1), see ``losses.TranslationBatch``. Slices are resampled to ``inplane_spacing`` and center
cropped / padded (with the volume's minimum, i.e. background) to ``slice_size`` x ``slice_size``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nnunetv2_uda.command_line import EXPECTED_ERRORS, one_line
from nnunetv2_uda.images import read_header
from nnunetv2_uda.translation.anatomy_space import anatomy_space, normalize
from nnunetv2_uda.translation.raw_dataset import DatasetError, RawDataset, read_volume

TRANSLATION_MODES = ("asit", "cyclegan")


def domain_representations(volume: np.ndarray, spacing_zyx, modality: str, mode: str,
                           device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(own space, other generator's input space) of a raw volume; see losses.TranslationBatch."""
    if mode not in TRANSLATION_MODES:
        raise ValueError(f"Unknown translation mode '{mode}', expected one of {TRANSLATION_MODES}")
    intensity = normalize(volume, modality)
    if mode == "cyclegan":
        return intensity, intensity
    anatomy = anatomy_space(intensity, spacing_zyx, modality=None, device=device)
    return (anatomy, intensity) if modality == "ct" else (intensity, anatomy)


def resample_inplane(stack: torch.Tensor, size_yx: tuple[int, int]) -> torch.Tensor:
    """(Z, C, Y, X) slices bilinearly resampled to ``size_yx``."""
    if tuple(stack.shape[-2:]) == tuple(size_yx):
        return stack
    return F.interpolate(stack, size=size_yx, mode="bilinear", align_corners=False)


def inplane_size(shape_yx, spacing_yx, target_spacing: float) -> tuple[int, int]:
    return tuple(max(1, round(n * s / target_spacing)) for n, s in zip(shape_yx, spacing_yx, strict=True))


def center_crop_or_pad(stack: torch.Tensor, size: int, fill: torch.Tensor) -> torch.Tensor:
    """(Z, C, Y, X) -> (Z, C, size, size); ``fill`` holds one padding value per channel."""
    out = fill.view(1, -1, 1, 1).expand(stack.shape[0], stack.shape[1], size, size).clone()
    src, dst = [], []
    for n in stack.shape[-2:]:
        if n >= size:
            start = (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[:, :, dst[0], dst[1]] = stack[:, :, src[0], src[1]]
    return out


def median_inplane_spacing(dataset: RawDataset) -> float:
    """From the headers only (the voxels are checked when the slices are read)."""
    spacings = []
    for case in dataset.cases:
        spacings.extend(read_header(dataset.image_file(case)).GetSpacing()[:2])
    return float(np.median(spacings))


def extract_slices(dataset: RawDataset, modality: str, mode: str, inplane_spacing: float, slice_size: int,
                   max_slices_per_case: int, device: str = "cpu", allow_nonfinite: bool = False) -> torch.Tensor:
    """A (N, 2, slice_size, slice_size) float16 tensor of evenly spaced axial slices of every case.

    Flat slices (one value throughout, e.g. MRI end slices below the clipping percentile) are left out: they teach
    nothing, and instance normalization of a constant map has a NaN gradient that would end training. Every case is
    needed: bad images are named all at once, after every case was read.
    """
    cached, failures = [], []
    for case in tqdm(dataset.cases, desc=f"caching {modality.upper()} slices ({dataset.folder.name})", unit="case"):
        try:
            volume, spacing, _ = read_volume(dataset.image_file(case), allow_nonfinite)
        except EXPECTED_ERRORS as error:
            failures.append(one_line(error))
            continue
        own, other = domain_representations(volume, spacing, modality, mode, device)
        count = min(max_slices_per_case, volume.shape[0])
        indices = np.unique(np.linspace(0, volume.shape[0] - 1, count).round().astype(int))
        stack = torch.from_numpy(np.stack([own[indices], other[indices]], axis=1))
        fill = torch.tensor([float(own.min()), float(other.min())])
        stack = resample_inplane(stack, inplane_size(volume.shape[1:], spacing[1:], inplane_spacing))
        stack = center_crop_or_pad(stack, slice_size, fill).half()
        flat = (stack.amax(dim=(2, 3)) == stack.amin(dim=(2, 3))).any(dim=1)
        cached.append(stack[~flat])
    if failures:
        raise DatasetError(f"Dataset '{dataset.folder}': {len(failures)} of {len(dataset.cases)} image(s) cannot be "
                           f"used: {'; '.join(failures)}")
    slices = torch.cat(cached)
    if len(slices) == 0:
        raise DatasetError(f"Dataset '{dataset.folder}' has no axial slice with any contrast: every image is flat")
    return slices
