"""Label maps next to their images: listings of cases, geometry checks, the pseudo-label commands' errors."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.atomic_files import is_hidden
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.images import read_header, read_label_map

NIFTI = ".nii.gz"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii\.gz$")


class PseudoLabelError(UserInputError):
    """A snapshot folder, label map, CSV or option of the pseudo-label commands is wrong (the message names it)."""


class FailedCasesError(UserInputError):
    """Some cases could not be processed; the others were written (exit status 1, as a partial result)."""

    exit_code = 1

    def __init__(self, failures: dict[str, str], total: int, output: Path | None):
        self.failures = failures
        written = f"the other {total - len(failures)} were written to {output}" if output else "nothing was written"
        super().__init__(f"{len(failures)} of {total} case(s) failed ({written}): "
                         + "; ".join(failures[case] for case in sorted(failures)))


def case_name(label_file: Path) -> str:
    return label_file.name[: -len(NIFTI)]


def _nifti_files(folder: Path) -> Iterable[Path]:
    """``*.nii.gz`` files of a folder; hidden names (temporaries of a killed run) are never cases."""
    return (path for path in sorted(Path(folder).glob(f"*{NIFTI}")) if not is_hidden(path) and path.is_file())


def label_files(folder: Path) -> dict[str, Path]:
    """``<case>.nii.gz`` files of a folder, by case name."""
    return {case_name(path): path for path in _nifti_files(folder)}


def image_channel_files(folder: Path) -> dict[str, list[Path]]:
    """``<case>_<CCCC>.nii.gz`` files of an nnU-Net images folder, by case name, channels in order."""
    cases: dict[str, list[Path]] = {}
    for path in _nifti_files(folder):
        match = CHANNEL_FILE.match(path.name)
        if match:
            cases.setdefault(match["case"], []).append(path)
    return cases


def require_cases(cases: dict, folder: Path, what: str, expected: str = f"<case>{NIFTI}") -> None:
    """Refuses a missing folder, or one without a file named ``expected``."""
    if not Path(folder).is_dir():
        raise PseudoLabelError(f"{what} folder {folder} does not exist")
    if not cases:
        raise PseudoLabelError(f"{what} folder {folder} holds no cases (expected files named {expected})")


def same_geometry(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def describe_geometry(image: sitk.Image) -> str:
    return (f"size {image.GetSize()}, spacing {tuple(round(s, 4) for s in image.GetSpacing())}, "
            f"origin {tuple(round(o, 3) for o in image.GetOrigin())}")


def read_label_matching(label_file: Path, reference: sitk.Image, case: str) -> sitk.Image:
    """Reads a label map (checked whole by the shared reader) and checks that it lies on its image's voxel grid;
    the error names the case and the file."""
    label = read_label_map(label_file)
    if not same_geometry(label, reference):
        raise PseudoLabelError(f"case '{case}': label map {label_file} does not match its image's geometry "
                               f"(label: {describe_geometry(label)}; image: {describe_geometry(reference)})")
    return label


def read_reference(image_file: Path) -> sitk.Image:
    """The image's geometry only (pixel data not needed) for geometry checks and resampling targets."""
    header = read_header(image_file)
    reference = sitk.Image(header.GetSize(), sitk.sitkUInt8)
    reference.SetSpacing(header.GetSpacing())
    reference.SetOrigin(header.GetOrigin())
    reference.SetDirection(header.GetDirection())
    return reference


def label_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A uint8 label image with ``array``'s voxels on ``reference``'s grid."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def read_csv_rows(path: Path, columns: tuple[str, ...], flag: str) -> list[dict[str, str]]:
    """The rows of a CSV given with ``flag``, each with a non-empty value in every required column; an unreadable
    file or a bad row is an error naming the file (and row)."""
    if not Path(path).is_file():
        raise PseudoLabelError(f"{flag} {path}: file does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise PseudoLabelError(f"{flag} {path}: needs a header with the columns {', '.join(columns)}, "
                                       f"found {reader.fieldnames or 'none'}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise PseudoLabelError(f"{flag} {path}: not a readable CSV file ({error})") from error
    for number, row in enumerate(rows, start=1):
        empty = [column for column in columns if not (row.get(column) or "").strip()]
        if empty:
            raise PseudoLabelError(f"{flag} {path}, row {number}: no value in column(s) {', '.join(empty)}")
    return rows
