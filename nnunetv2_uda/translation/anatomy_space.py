"""Per-modality intensity normalization and the spacing-aware 3D Sobel "anatomy space".

CT is in Hounsfield units, MRI in arbitrary units, so each is first brought to a comparable range:
CT is clipped to a soft-tissue window and z-scored, MRI is clipped to its own 0.5/99.5 percentiles and z-scored.
The Sobel gradient magnitude of the result is then computed per millimetre (voxel spacing taken into account, so
thick MRI slices and thin CT slices give comparable edges) and scaled so that its 99th percentile is 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CT_WINDOW_HU: tuple[float, float] = (-125.0, 275.0)
MRI_PERCENTILES: tuple[float, float] = (0.5, 99.5)
SOBEL_SCALE_PERCENTILE = 99.0
MODALITIES = ("ct", "mri")


def modality_of_channel(channel_name: str) -> str:
    """nnU-Net's convention: a channel named 'CT' (any case) is CT, everything else is treated as MRI-like."""
    return "ct" if channel_name.strip().lower() == "ct" else "mri"


def _zscore(volume: np.ndarray) -> np.ndarray:
    return (volume - volume.mean()) / max(float(volume.std()), 1e-8)


def normalize_ct(volume: np.ndarray, window: tuple[float, float] = CT_WINDOW_HU) -> np.ndarray:
    """Clips to a HU window (default the abdominal soft-tissue window [-125, 275]) and z-scores the result."""
    return _zscore(np.clip(volume.astype(np.float32), *window)).astype(np.float32)


def normalize_mri(volume: np.ndarray, percentiles: tuple[float, float] = MRI_PERCENTILES) -> np.ndarray:
    """Clips to the image's own percentiles (MRI has no absolute scale) and z-scores the result."""
    volume = volume.astype(np.float32)
    low, high = np.percentile(volume, percentiles)
    return _zscore(np.clip(volume, low, high)).astype(np.float32)


def normalize(volume: np.ndarray, modality: str) -> np.ndarray:
    if modality not in MODALITIES:
        raise ValueError(f"Unknown modality '{modality}', expected one of {MODALITIES}")
    return normalize_ct(volume) if modality == "ct" else normalize_mri(volume)


def sobel_kernels(spacing_zyx: tuple[float, float, float]) -> torch.Tensor:
    """Three 3x3x3 kernels (d/dz, d/dy, d/dx), each a central difference per mm smoothed by [1, 2, 1]/4."""
    derivative = torch.tensor([-1.0, 0.0, 1.0])
    smoothing = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernels = []
    for axis in range(3):
        factors = [derivative / (2 * spacing_zyx[axis]) if a == axis else smoothing for a in range(3)]
        kernels.append(torch.einsum("i,j,k->ijk", *factors))
    return torch.stack(kernels)[:, None]  # (3, 1, 3, 3, 3)


def sobel_magnitude(volume: torch.Tensor, spacing_zyx: tuple[float, float, float]) -> torch.Tensor:
    """Gradient magnitude (intensity units per mm) of a (Z, Y, X) volume; edges are replicated, not zero-padded.

    Volumes with fewer than 3 slices are treated as 2D stacks (the z-derivative is zero).
    """
    if volume.ndim != 3:
        raise ValueError(f"Expected a (Z, Y, X) volume, got shape {tuple(volume.shape)}")
    kernels = sobel_kernels(tuple(float(s) for s in spacing_zyx)).to(volume.device, torch.float32)
    padded = F.pad(volume[None, None].float(), (1, 1, 1, 1, 1, 1), mode="replicate")
    gradients = F.conv3d(padded, kernels)[0]
    return torch.sqrt((gradients**2).sum(0))


def anatomy_space(volume: np.ndarray, spacing_zyx: tuple[float, float, float], modality: str | None = None,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Normalizes (if ``modality`` is given; pass None for already-normalized input) and maps to anatomy space."""
    if modality is not None:
        volume = normalize(volume, modality)
    magnitude = sobel_magnitude(torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)).to(device),
                                spacing_zyx)
    scale = torch.quantile(magnitude.flatten()[:: max(1, magnitude.numel() // 2_000_000)],
                           SOBEL_SCALE_PERCENTILE / 100)
    return (magnitude / torch.clamp(scale, min=1e-6)).cpu().numpy().astype(np.float32)
