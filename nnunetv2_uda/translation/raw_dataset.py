"""Reading and writing nnU-Net raw datasets for the translation stage.

Images are read through the one image reader (:mod:`nnunetv2_uda.images`), so a truncated, corrupt or non-finite
file is named, never used. A new dataset is built in a staging folder that becomes the output folder only when
complete (:func:`nnunetv2_uda.output_folders.new_output_folder`); a case whose input is bad is left out and named,
the others are kept. Hidden names (the temporaries of a killed run) are never cases.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.atomic_files import copy_atomically, is_hidden, write_image_atomically
from nnunetv2_uda.command_line import EXPECTED_ERRORS, UserInputError, one_line
from nnunetv2_uda.images import check_label_map, read_array
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.output_folders import new_output_folder


class DatasetError(UserInputError):
    """A raw dataset that cannot be used; the message names the dataset or file and what is wrong."""


@dataclass(frozen=True)
class RawDataset:
    folder: Path
    dataset_json: dict
    file_ending: str
    cases: tuple[str, ...]
    labeled: bool

    @property
    def channel_names(self) -> dict:
        return self.dataset_json["channel_names"]

    def image_file(self, case: str, channel: int = 0) -> Path:
        return self.folder / "imagesTr" / f"{case}_{channel:04d}{self.file_ending}"

    def label_file(self, case: str) -> Path | None:
        """The case's label map; None in an unlabeled dataset. In a labeled one a case without a label map is an
        error naming the file (a dataset written without it would fail nnU-Net's checks later)."""
        path = self.folder / "labelsTr" / f"{case}{self.file_ending}"
        if path.is_file():
            return path
        if self.labeled:
            raise DatasetError(f"{path}: label map missing (the dataset's other cases have one in labelsTr)")
        return None


def open_raw_dataset(folder: str | os.PathLike, expected_channels: int | None = 1) -> RawDataset:
    """Checks the layout (dataset.json, imagesTr, channel count) and lists the cases of a raw dataset; hidden files
    (temporaries of a killed run) are never cases."""
    folder = Path(folder)
    json_file = folder / "dataset.json"
    if not json_file.is_file():
        raise DatasetError(f"Dataset '{folder}': no dataset.json (is this an nnU-Net raw dataset folder?)")
    dataset_json = read_json_object(json_file, "not an nnU-Net dataset.json", DatasetError)
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetError(f"Dataset '{folder}': dataset.json has no 'channel_names'")
    if set(channels) != {str(i) for i in range(len(channels))} or \
            not all(isinstance(name, str) for name in channels.values()):
        raise DatasetError(f"Dataset '{folder}': dataset.json's 'channel_names' must map \"0\", \"1\", ... to names "
                           f"such as \"CT\", got {channels}")
    dataset_json.setdefault("channel_names", channels)
    if expected_channels is not None and len(channels) != expected_channels:
        raise DatasetError(f"Dataset '{folder}' has {len(channels)} channels {channels}, but translation needs "
                           f"{expected_channels} (one CT or MRI image per case)")
    file_ending = dataset_json.get("file_ending", ".nii.gz")
    if not isinstance(file_ending, str) or not file_ending.startswith("."):
        raise DatasetError(f"Dataset '{folder}': dataset.json's 'file_ending' must be a suffix such as '.nii.gz', "
                           f"got {file_ending!r}")
    images = folder / "imagesTr"
    suffix = f"_0000{file_ending}"
    cases = tuple(sorted(p.name[: -len(suffix)] for p in images.glob(f"*{suffix}")
                         if not is_hidden(p) and p.is_file())) if images.is_dir() else ()
    if not cases:
        raise DatasetError(f"Dataset '{folder}' is empty: no '*{suffix}' images in {images}")
    for case in cases:
        for channel in range(1, len(channels)):
            path = images / f"{case}_{channel:04d}{file_ending}"
            if not path.is_file():
                raise DatasetError(f"Dataset '{folder}': case '{case}' lacks channel {channel} ({path.name})")
    image_names = {f"{case}_{channel:04d}{file_ending}" for case in cases for channel in range(len(channels))}
    for path in _visible_files(images, file_ending):
        if path.name not in image_names:
            raise DatasetError(f"{path}: not an image of a case: nnU-Net names them <case>_0000{file_ending} (one "
                               f"per channel of dataset.json: {len(channels)}); rename or move it")
    labeled = any(_visible_files(folder / "labelsTr", file_ending))
    return RawDataset(folder, dataset_json, file_ending, cases, labeled)


def _visible_files(folder: Path, file_ending: str) -> list[Path]:
    """The files of ``folder`` with ``file_ending``, hidden ones (temporaries of a killed run) left out."""
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if path.name.endswith(file_ending) and not is_hidden(path)
            and path.is_file()]


def read_volume(path: str | os.PathLike,
                allow_nonfinite: bool = False) -> tuple[np.ndarray, tuple[float, float, float], sitk.Image]:
    """The (Z, Y, X) array, its (z, y, x) spacing and the image (for its geometry) of a single-channel 3D image."""
    array, image = read_array(path, allow_nonfinite)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"Image '{path}' is not a single-channel 3D image "
                           f"(dimension {image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} components)")
    return array, tuple(image.GetSpacing()[::-1]), image


def check_label(path: Path) -> Path:
    """A label map is copied byte for byte, so it is checked first: an image, complete, with finite voxels."""
    check_label_map(path)
    return path


def write_volume_like(array: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> None:
    """Writes ``array`` with the reference's spacing, origin and direction."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    write_image_atomically(image, path)


def copy_label(label: Path | None, output: Path) -> None:
    if label is not None:
        copy_atomically(label, output / "labelsTr" / label.name)


def build_dataset(dataset: RawDataset, output_folder: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                  overwrite: bool, write_case: Callable[[str, Path], None],
                  finish: Callable[[Path, list[str]], None], description: str) -> Path:
    """Builds a new raw dataset from ``dataset``'s cases in a staging folder that becomes ``output_folder`` once
    complete; returns the output folder.

    ``write_case(case, staging)`` reads and checks every input of the case before it writes anything, so a case
    whose input is bad (an expected error) leaves no file behind: it is named and left out, the other cases are
    written, and ``finish(staging, written_cases)`` writes dataset.json and the like. A dataset with some cases
    left out is still put in place, then a :class:`DatasetError` names every bad case; if no case could be written
    nothing is.
    """
    failures: list[str] = []
    with new_output_folder(output_folder, [dataset.folder, *inputs], overwrite) as staging:
        (staging / "imagesTr").mkdir()
        (staging / "labelsTr").mkdir()
        written = []
        for case in tqdm(dataset.cases, desc=description, unit="case"):
            try:
                write_case(case, staging)
            except EXPECTED_ERRORS as error:
                failures.append(f"case '{case}': {one_line(error)}")
                continue
            written.append(case)
        if not written:
            raise DatasetError(f"no case of '{dataset.folder}' could be used, nothing written: {'; '.join(failures)}")
        finish(staging, written)
    if failures:
        raise DatasetError(f"{len(failures)} of {len(dataset.cases)} case(s) left out of '{output_folder}' (the "
                           f"other {len(dataset.cases) - len(failures)} are written): {'; '.join(failures)}")
    return Path(output_folder)
