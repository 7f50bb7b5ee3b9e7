"""Reading and writing label maps next to their images: geometry checks and writes that are never half-done."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

NIFTI = ".nii.gz"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii\.gz$")


def case_name(label_file: Path) -> str:
    return label_file.name[: -len(NIFTI)]


def label_files(folder: Path) -> dict[str, Path]:
    """``<case>.nii.gz`` files of a folder, by case name."""
    return {case_name(p): p for p in sorted(Path(folder).glob(f"*{NIFTI}"))}


def image_channel_files(folder: Path) -> dict[str, list[Path]]:
    """``<case>_<CCCC>.nii.gz`` files of an nnU-Net images folder, by case name, channels in order."""
    cases: dict[str, list[Path]] = {}
    for path in sorted(Path(folder).glob(f"*{NIFTI}")):
        match = CHANNEL_FILE.match(path.name)
        if match:
            cases.setdefault(match["case"], []).append(path)
    return cases


def require_cases(cases: dict, folder: Path, what: str) -> None:
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    if not cases:
        raise ValueError(f"{what} folder {folder} holds no cases (expected *{NIFTI} files)")


def same_geometry(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def describe_geometry(image: sitk.Image) -> str:
    return (f"size {image.GetSize()}, spacing {tuple(round(s, 4) for s in image.GetSpacing())}, "
            f"origin {tuple(round(o, 3) for o in image.GetOrigin())}")


def read_label_matching(label_file: Path, reference: sitk.Image, case: str) -> sitk.Image:
    """Reads a label map and checks that it lies on its image's voxel grid; the error names the case."""
    label = sitk.ReadImage(str(label_file))
    if not same_geometry(label, reference):
        raise ValueError(f"case '{case}': label map {label_file} does not match its image's geometry "
                         f"(label: {describe_geometry(label)}; image: {describe_geometry(reference)})")
    return label


def read_reference(image_file: Path) -> sitk.Image:
    """The image's geometry only (pixel data not needed) for geometry checks and resampling targets."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_file))
    reader.ReadImageInformation()
    reference = sitk.Image(reader.GetSize(), sitk.sitkUInt8)
    reference.SetSpacing(reader.GetSpacing())
    reference.SetOrigin(reader.GetOrigin())
    reference.SetDirection(reader.GetDirection())
    return reference


def label_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A uint8 label image with ``array``'s voxels on ``reference``'s grid."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(temporary_path)`` and renames the result to ``path``: a killed run never leaves a
    finished-looking file. The temporary file has ``path``'s own name (writers pick the format from it) inside a
    hidden folder next to it, so folder listings (``*.nii.gz``) never see it and the rename stays on one disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=path.parent))
    try:
        write(staging / path.name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_image_atomically(image: sitk.Image, path: Path) -> None:
    write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), True))


def write_text_atomically(text: str, path: Path) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text))


def copy_atomically(source: Path, destination: Path) -> None:
    write_atomically(destination, lambda temporary: shutil.copyfile(source, temporary))
