"""Writes the phantom CT -> MRI problem as two nnU-Net raw datasets.

``DatasetXXX_PhantomCT`` (labeled source domain: imagesTr, labelsTr) and ``DatasetYYY_PhantomMRI`` (unlabeled
target domain: imagesTr with a JSON sidecar per case naming its sequence and patient (the subject), and labelsEval
for evaluation only). CT case ``i`` and MRI case ``i`` image the same subject ``i``, so anatomy is shared and only the
appearance differs. Both datasets are built in hidden staging folders beside their final names and renamed only when
both are complete, so a folder with a final name is always a finished dataset, and an existing one is replaced (only
with ``overwrite``) only by a finished one. Nothing else in the output folder is touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from tqdm import tqdm

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.flare_labels import FLARE_LABELS
from nnunetv2_uda.output_folders import OutputFolderError, check_output_folder
from nnunetv2_uda.phantoms.anatomy import sample_subject
from nnunetv2_uda.phantoms.contact_sheet import write_contact_sheet
from nnunetv2_uda.phantoms.geometry import Grid
from nnunetv2_uda.phantoms.scanners import Scan, scan_ct, scan_mri
from nnunetv2_uda.phantoms.tissues import SEQUENCES

DEFAULT_NUM_CT = 30
DEFAULT_NUM_MRI = 30
DEFAULT_SHAPE = (48, 128, 128)
DEFAULT_SEED = 0
FILE_ENDING = ".nii.gz"
MIN_SHAPE = (8, 32, 32)
MAX_EDGE = 1024
MAX_VOXELS = 128 * 512 * 512
MAX_CASES = 9999
MAX_DATASET_ID = 999


class PhantomArgumentError(UserInputError):
    """Arguments that cannot make a phantom problem, or a dataset id that another dataset already uses."""


@dataclass(frozen=True)
class PhantomDatasets:
    ct_folder: Path
    mri_folder: Path
    contact_sheet: Path


def mri_sequence(case: int) -> str:
    """The sequence of MRI case ``case``: the collection cycles T1, T2, DWI."""
    return SEQUENCES[case % len(SEQUENCES)]


def ct_case_name(case: int) -> str:
    return f"PhantomCT_{case:04d}"


def mri_case_name(case: int) -> str:
    return f"PhantomMRI_{mri_sequence(case)}_{case:04d}"


def make_ct_case(case: int, shape: tuple[int, int, int], seed: int) -> Scan:
    """CT case ``case`` (subject ``case``) of the phantom population ``seed``."""
    return scan_ct(sample_subject(seed, case), shape, seed, case)


def mri_subject(case: int, series_per_patient: int = 1) -> int:
    """The subject MRI case ``case`` images: consecutive cases are series of one subject, ``series_per_patient``
    of them (1: every case a subject of its own, the subject of the CT case with the same number)."""
    return case // series_per_patient


def make_mri_case(case: int, shape: tuple[int, int, int], seed: int, series_per_patient: int = 1) -> Scan:
    """MRI case ``case`` (subject :func:`mri_subject`, sequence :func:`mri_sequence`) of the phantom population
    ``seed``; each case has a grid of its own, so the series of one subject differ in coverage and position."""
    return scan_mri(sample_subject(seed, mri_subject(case, series_per_patient)), shape, mri_sequence(case), seed, case)


def _check_arguments(output_folder: Path, num_ct: int, num_mri: int, shape: tuple[int, ...], seed: int,
                     ct_dataset_id: int, mri_dataset_id: int, series_per_patient: int) -> tuple[int, int, int]:
    for name, value in (("num_ct", num_ct), ("num_mri", num_mri)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_CASES:
            raise PhantomArgumentError(f"{name} must be a whole number from 1 to {MAX_CASES}, got {value!r}")
    if len(shape) != 3 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in shape):
        raise PhantomArgumentError(f"shape must be three whole numbers (Z, Y, X), got {tuple(shape)!r}")
    if any(n < low for n, low in zip(shape, MIN_SHAPE, strict=True)) or max(shape) > MAX_EDGE:
        raise PhantomArgumentError(f"shape {tuple(shape)} is impossible: need Z >= {MIN_SHAPE[0]}, Y and X >= "
                                   f"{MIN_SHAPE[1]} (MRI halves the slices and DWI the matrix) and every edge <= "
                                   f"{MAX_EDGE}")
    if int(np.prod(shape)) > MAX_VOXELS:
        raise PhantomArgumentError(f"shape {tuple(shape)} has {int(np.prod(shape))} voxels, more than the "
                                   f"{MAX_VOXELS} a phantom may have")
    if isinstance(series_per_patient, bool) or not isinstance(series_per_patient, (int, np.integer)) or \
            not 1 <= series_per_patient <= len(SEQUENCES):
        raise PhantomArgumentError(f"series_per_patient must be a whole number from 1 to {len(SEQUENCES)} (one series "
                                   f"per sequence), got {series_per_patient!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomArgumentError(f"seed must be a whole number >= 0, got {seed!r}")
    for name, value in (("ct_dataset_id", ct_dataset_id), ("mri_dataset_id", mri_dataset_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_DATASET_ID:
            raise PhantomArgumentError(f"{name} must be an nnU-Net dataset id from 1 to {MAX_DATASET_ID}, got "
                                       f"{value!r}")
    if ct_dataset_id == mri_dataset_id:
        raise PhantomArgumentError(f"ct_dataset_id and mri_dataset_id must differ, both are {ct_dataset_id}")
    if output_folder.exists() and not output_folder.is_dir():
        raise PhantomArgumentError(f"output folder {output_folder} exists and is not a folder")
    return tuple(int(n) for n in shape)


def _check_target(output_folder: Path, dataset_id: int, name: str, overwrite: bool) -> Path:
    """Refuses an existing dataset folder (unless ``overwrite``) and any other folder claiming the same id."""
    for existing in sorted(output_folder.glob(f"Dataset{dataset_id:03d}_*")) if output_folder.is_dir() else []:
        if existing.name != name:
            raise PhantomArgumentError(f"{existing} already uses dataset id {dataset_id}; nnU-Net could not tell it "
                                       f"from {name}. Choose another id (--ct_id/--mri_id)")
    return check_output_folder(output_folder / name, overwrite=overwrite)


def _write_image(array: np.ndarray, grid: Grid, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in grid.spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in grid.origin[::-1]))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


def make_phantom_datasets(output_folder: str | os.PathLike, num_ct: int = DEFAULT_NUM_CT,
                          num_mri: int = DEFAULT_NUM_MRI, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                          seed: int = DEFAULT_SEED, ct_dataset_id: int = 991, mri_dataset_id: int = 992,
                          overwrite: bool = False, series_per_patient: int = 1) -> PhantomDatasets:
    """Writes ``Dataset<ct_dataset_id>_PhantomCT`` and ``Dataset<mri_dataset_id>_PhantomMRI`` into
    ``output_folder`` plus a contact sheet PNG. Arguments are checked before anything is written.
    ``series_per_patient`` > 1 makes consecutive MRI cases series (T1, T2, DWI) of one subject, as in a clinical
    study, which multi-domain matching can use (their sidecars name the same patient)."""
    output_folder = Path(output_folder)
    shape = _check_arguments(output_folder, num_ct, num_mri, tuple(shape), seed, ct_dataset_id, mri_dataset_id,
                             series_per_patient)
    ct_name, mri_name = f"Dataset{ct_dataset_id:03d}_PhantomCT", f"Dataset{mri_dataset_id:03d}_PhantomMRI"
    ct_folder = _check_target(output_folder, ct_dataset_id, ct_name, overwrite)
    mri_folder = _check_target(output_folder, mri_dataset_id, mri_name, overwrite)
    sheet = output_folder / f"phantoms_{ct_dataset_id:03d}_{mri_dataset_id:03d}.png"
    if sheet.exists() and not overwrite:
        raise OutputFolderError(f"contact sheet {sheet} already exists; choose another output folder, or pass "
                                f"--overwrite to replace it")
    examples: dict[str, Scan] = {}

    def write_ct(folder: Path) -> None:
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        for case in tqdm(range(num_ct), desc=f"{ct_name}", unit="case"):
            scan = make_ct_case(case, shape, seed)
            examples.setdefault("CT", scan)
            _write_image(scan.image, scan.grid, folder / "imagesTr" / f"{ct_case_name(case)}_0000{FILE_ENDING}")
            _write_image(scan.label, scan.grid, folder / "labelsTr" / f"{ct_case_name(case)}{FILE_ENDING}")
        generate_dataset_json(str(folder), {0: "CT"}, dict(FLARE_LABELS), num_ct, FILE_ENDING,
                              dataset_name=ct_name, license="CC0 (synthetic)", converted_by="nnunetv2_uda.phantoms",
                              description=f"Synthetic contrast-enhanced abdominal CT phantoms, seed {seed}, "
                                          f"shape {list(shape)} (z, y, x); labeled source domain.")

    def write_mri(folder: Path) -> None:
        for sub in ("imagesTr", "labelsEval"):
            (folder / sub).mkdir()
        for case in tqdm(range(num_mri), desc=f"{mri_name}", unit="case"):
            scan = make_mri_case(case, shape, seed, series_per_patient)
            examples.setdefault(scan.modality, scan)
            name = mri_case_name(case)
            _write_image(scan.image, scan.grid, folder / "imagesTr" / f"{name}_0000{FILE_ENDING}")
            (folder / "imagesTr" / f"{name}.json").write_text(
                json.dumps({"sequence": scan.modality, "patient": mri_subject(case, series_per_patient)}, indent=2))
            _write_image(scan.label, scan.grid, folder / "labelsEval" / f"{name}{FILE_ENDING}")
        generate_dataset_json(str(folder), {0: "MRI"}, dict(FLARE_LABELS), num_mri, FILE_ENDING,
                              dataset_name=mri_name, license="CC0 (synthetic)", converted_by="nnunetv2_uda.phantoms",
                              description=f"Synthetic multi-sequence abdominal MRI phantoms (T1, T2, DWI), seed "
                                          f"{seed}; unlabeled target domain. labelsEval is for evaluation only, "
                                          "never for training.")

    with folder_built_atomically(ct_folder, replace=True) as ct_staging, \
            folder_built_atomically(mri_folder, replace=True) as mri_staging:
        write_ct(ct_staging)
        write_mri(mri_staging)
        rows = [(key, examples[key]) for key in ("CT", *SEQUENCES) if key in examples]
        write_contact_sheet(rows, sheet)
    return PhantomDatasets(ct_folder, mri_folder, sheet)
