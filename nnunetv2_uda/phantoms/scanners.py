"""Imaging a phantom subject: the CT and MRI acquisition grids and how each modality renders tissue.

CT: a field of view fitted to the patient, slices of about the nominal thickness, Hounsfield units with quantum
noise. MRI: slices twice as thick, a field of view and position of its own per case, per-case contrast jitter, a
smooth multiplicative bias field and Rician noise (the magnitude of complex Gaussian noise); DWI is acquired on a
coarser in-plane matrix and is noisier. Arrays are (z, y, x); intensities are stored as int16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunetv2_uda.phantoms.anatomy import Subject, rasterize
from nnunetv2_uda.phantoms.geometry import Grid, SmoothField
from nnunetv2_uda.phantoms.tissues import LABEL_OF_TISSUE, SEQUENCES, TISSUE_CODE, intensity_table

CT_Z_EXTENT_MM = 240.0  # cranio-caudal coverage of the phantom CT: lung bases to the iliac crests
CT_Z_CENTER_MM = 5.0
DWI_MATRIX_FRACTION = 0.5


@dataclass(frozen=True)
class Scan:
    """One rendered case: image and label arrays (z, y, x) on ``grid``."""

    image: np.ndarray
    label: np.ndarray
    grid: Grid
    modality: str  # 'CT' or a sequence of SEQUENCES


def _acquisition_rng(seed: int, modality_stream: int, case: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, modality_stream, case]))


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance spatially correlated noise: parenchymal texture."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=1.0)
    return noise / max(float(noise.std()), 1e-6)


def ct_grid(subject: Subject, shape: tuple[int, int, int], rng: np.random.Generator) -> Grid:
    half_y, half_x = subject.body_half_axes
    field_of_view = 2 * max(half_y, half_x) * rng.uniform(1.08, 1.22)
    spacing = field_of_view / max(shape[1:])
    extent = (CT_Z_EXTENT_MM * rng.uniform(0.96, 1.04), spacing * shape[1], spacing * shape[2])
    center = (CT_Z_CENTER_MM + rng.uniform(-8, 8), rng.uniform(-5, 5), rng.uniform(-5, 5))
    return Grid.centered(shape, extent, center)


def mri_grid(subject: Subject, shape: tuple[int, int, int], sequence: str, rng: np.random.Generator) -> Grid:
    """Twice the nominal CT slice thickness, its own coverage, field of view and table position."""
    slice_thickness = 2 * CT_Z_EXTENT_MM / shape[0]
    num_slices = max(4, round(CT_Z_EXTENT_MM * rng.uniform(0.85, 1.1) / slice_thickness))
    matrix = shape[1:] if sequence != "DWI" else tuple(max(16, round(n * DWI_MATRIX_FRACTION)) for n in shape[1:])
    half_y, half_x = subject.body_half_axes
    spacing = 2 * max(half_y, half_x) * rng.uniform(1.05, 1.4) / max(matrix)
    extent = (num_slices * slice_thickness, spacing * matrix[0], spacing * matrix[1])
    center = (CT_Z_CENTER_MM + rng.uniform(-20, 20), rng.uniform(-12, 12), rng.uniform(-12, 12))
    return Grid.centered((num_slices, *matrix), extent, center)


def render_ct(tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = intensity_table("CT")[tissue]
    image += np.float32(rng.uniform(5, 10)) * _texture(rng, tissue.shape)
    image = ndimage.gaussian_filter(image, sigma=(0.4, 0.6, 0.6))  # scanner point spread / partial volume
    image += rng.normal(0, rng.uniform(8, 18), tissue.shape).astype(np.float32)
    return np.clip(np.round(image), -1024, 3071).astype(np.int16)


def render_mri(tissue: np.ndarray, grid: Grid, sequence: str, rng: np.random.Generator) -> np.ndarray:
    table = intensity_table(sequence) * rng.uniform(0.9, 1.1, len(intensity_table(sequence))).astype(np.float32)
    table[TISSUE_CODE["air"]] = 0
    image = table[tissue] * (1 + np.float32(0.05) * _texture(rng, tissue.shape))
    blur = (0.5, 0.9, 0.9) if sequence == "DWI" else (0.5, 0.6, 0.6)
    image = ndimage.gaussian_filter(image, sigma=blur)
    bias = SmoothField.random(rng, 1, 0.15, (250.0, 600.0), components=4)(*grid.axes())[0]
    image *= np.exp(bias)
    sigma = np.float32(rng.uniform(0.035, 0.055) if sequence == "DWI" else rng.uniform(0.015, 0.03))
    real = image + sigma * rng.standard_normal(tissue.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(tissue.shape, dtype=np.float32)
    image = np.sqrt(real ** 2 + imaginary ** 2) * np.float32(rng.uniform(600, 2000))
    return np.clip(np.round(image), 0, 32767).astype(np.int16)


def scan_ct(subject: Subject, shape: tuple[int, int, int], seed: int, case: int) -> Scan:
    """CT case ``case`` of ``subject`` on a grid of ``shape``."""
    rng = _acquisition_rng(seed, 1, case)
    grid = ct_grid(subject, shape, rng)
    tissue = rasterize(subject, grid)
    return Scan(render_ct(tissue, rng), LABEL_OF_TISSUE[tissue], grid, "CT")


def scan_mri(subject: Subject, shape: tuple[int, int, int], sequence: str, seed: int, case: int) -> Scan:
    """MRI case ``case`` of ``subject``; ``shape`` is the CT shape it is derived from."""
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown MRI sequence '{sequence}', expected one of {SEQUENCES}")
    rng = _acquisition_rng(seed, 2, case)
    grid = mri_grid(subject, shape, sequence, rng)
    tissue = rasterize(subject, grid)
    return Scan(render_mri(tissue, grid, sequence, rng), LABEL_OF_TISSUE[tissue], grid, sequence)
