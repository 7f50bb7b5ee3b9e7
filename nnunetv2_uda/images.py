"""The one image reader: every command reads images through here, so a bad file is named, never used.

SimpleITK alone reads a truncated ``.nii.gz`` with zero fill and turns NaN voxels into 0. Here a gzip-compressed
file is decompressed to its end first (zlib checks the stream's length and CRC-32, so a cut or damaged file fails),
a NIfTI file must hold every voxel its header promises, and its stored floating-point voxels must be finite unless
the caller allows replacing them (by the image's lowest finite value, i.e. background), which is then said on
stderr. The check costs about one more decompression of the file.
"""

from __future__ import annotations

import io
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.command_line import UserInputError

GZIP_CHUNK_BYTES = 1 << 22
ALLOW_NONFINITE_FLAG = "--allow_nonfinite"
NIFTI2_HEADER_BYTES = 540


class ImageFileError(UserInputError):
    """An image file that is missing, unreadable, truncated, corrupt or holds non-finite voxels."""


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def read_header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """A reader with the header read (size, spacing, pixel type); the pixels are not loaded or checked."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: file does not exist")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ImageFileError(f"{path}: cannot be read as an image ({_last_line(error)})") from error
    return reader


def _chunks(path: Path, compressed: bool) -> Iterator[bytes]:
    """The file's content in chunks; a gzip file decompressed to its end (zlib checks length and CRC-32)."""
    with open(path, "rb") as handle:
        if not compressed:
            while chunk := handle.read(GZIP_CHUNK_BYTES):
                yield chunk
            return
        decompressor = zlib.decompressobj(wbits=31)
        try:
            while chunk := handle.read(GZIP_CHUNK_BYTES):
                while chunk:
                    yield decompressor.decompress(chunk)
                    chunk = decompressor.unused_data  # a further gzip member, as gzip allows
                    if chunk:
                        decompressor = zlib.decompressobj(wbits=31)
        except zlib.error as error:
            raise ImageFileError(f"{path}: corrupt gzip data ({error})") from error
    if not decompressor.eof:
        raise ImageFileError(f"{path}: truncated (the gzip stream ends early: the file was cut while being "
                             f"written or copied)")


def _nifti_header(start: bytes, path: Path):
    import nibabel

    header_class = nibabel.Nifti2Header if start[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") \
        else nibabel.Nifti1Header
    try:
        return header_class.from_fileobj(io.BytesIO(start))
    except Exception as error:  # noqa: BLE001 - nibabel raises several types for a broken header
        raise ImageFileError(f"{path}: cannot be read as NIfTI ({_last_line(error)})") from error


def verify_voxels(path: str | os.PathLike) -> np.ndarray | None:
    """Checks that a file holds every voxel its header promises and returns the (z, y, x) mask of its NaN or
    infinite voxels (None if there are none).

    NIfTI (``.nii``, ``.nii.gz``) is checked on the stored values, because ITK's reader turns NaN into 0; any other
    gzip-compressed file is checked for truncation and damage only.
    """
    path = Path(path)
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if not name.endswith((".nii", ".nii.gz")):
        if compressed:
            for _ in _chunks(path, compressed):
                pass
        return None
    chunks = _chunks(path, compressed)
    start = b""
    for chunk in chunks:
        start += chunk
        if len(start) >= NIFTI2_HEADER_BYTES:
            break
    header = _nifti_header(start, path)
    dtype, shape = header.get_data_dtype(), header.get_data_shape()
    offset = int(header["vox_offset"])
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    floating = np.issubdtype(dtype, np.floating)
    parts, size = [start], len(start)
    for chunk in chunks:
        size += len(chunk)
        if floating:
            parts.append(chunk)
    if size < needed:
        raise ImageFileError(f"{path}: truncated ({size} bytes where its header needs {needed})")
    if not floating:
        return None
    stored = np.frombuffer(b"".join(parts), dtype=dtype, count=int(np.prod(shape)), offset=offset)
    bad = ~np.isfinite(stored.reshape(shape, order="F"))
    if not bad.any():
        return None
    return np.ascontiguousarray(bad.reshape(bad.shape[:3] + (-1,)).any(axis=3).transpose(2, 1, 0))


def fill_nonfinite(array: np.ndarray, bad: np.ndarray, path: str | os.PathLike, allow_nonfinite: bool) -> np.ndarray:
    """An error naming the file, or (allowed) ``array`` (z, y, x[, components], as ITK reads it) with the ``bad``
    voxels (from :func:`verify_voxels`) set to its lowest finite value, in place, said on stderr."""
    count = int(bad.sum())
    if not allow_nonfinite:
        raise ImageFileError(f"{path}: {count} voxel(s) are NaN or infinite; fix the file, or pass "
                             f"{ALLOW_NONFINITE_FLAG} to replace them by the image's lowest finite value")
    if array.shape[:3] != bad.shape:
        raise ImageFileError(f"{path}: NaN or infinite voxels in an image of unexpected layout {array.shape}")
    finite = array[~bad]
    fill = float(finite.min()) if finite.size else 0.0
    array[bad] = fill
    print(f"warning: {path}: {count} NaN or infinite voxel(s) replaced by {fill:g} ({ALLOW_NONFINITE_FLAG})",
          file=sys.stderr)
    return array


def replace_nonfinite(image: sitk.Image, bad: np.ndarray, path: str | os.PathLike, allow_nonfinite: bool) -> sitk.Image:
    """An error naming the file, or (allowed) the image with the ``bad`` voxels set to its lowest finite value,
    said on stderr."""
    array = fill_nonfinite(sitk.GetArrayFromImage(image), bad, path, allow_nonfinite)
    fixed = sitk.GetImageFromArray(array, isVector=image.GetNumberOfComponentsPerPixel() > 1)
    fixed.CopyInformation(image)
    return fixed


def _pixels(reader: sitk.ImageFileReader, path: str | os.PathLike) -> sitk.Image:
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise ImageFileError(f"{path}: cannot be read as an image ({_last_line(error)})") from error


def read_image(path: str | os.PathLike, allow_nonfinite: bool = False) -> sitk.Image:
    """Reads an image after checking that it is complete and finite (see the module docstring)."""
    reader = read_header(path)
    bad = verify_voxels(path)
    image = _pixels(reader, path)
    return image if bad is None else replace_nonfinite(image, bad, path, allow_nonfinite)


def check_label_map(path: str | os.PathLike) -> sitk.ImageFileReader:
    """The header of a label map checked whole: complete, and no NaN or infinite voxel, which no flag allows (no
    value could stand in for a label id)."""
    reader = read_header(path)
    bad = verify_voxels(path)
    if bad is not None:
        raise ImageFileError(f"{path}: {int(bad.sum())} voxel(s) are NaN or infinite; a label map must hold label "
                             f"ids only")
    return reader


def read_label_map(path: str | os.PathLike) -> sitk.Image:
    """Reads a label map after :func:`check_label_map`."""
    return _pixels(check_label_map(path), path)


def read_array(path: str | os.PathLike, allow_nonfinite: bool = False) -> tuple[np.ndarray, sitk.Image]:
    """The (z, y, x) voxel array (a copy) and the image, for its geometry."""
    image = read_image(path, allow_nonfinite)
    return sitk.GetArrayFromImage(image), image
