"""Reading one case for prediction: the plans' own reader, after every file is checked.

nnU-Net's ``SimpleITKIO`` reads a truncated ``.nii.gz`` as zeros and NaN voxels as 0 without a word. Each file is
therefore also checked with :func:`nnunetv2_uda.images.verify_voxels` (the shared reader's check), in a thread
beside the read: both spend their time decompressing, which releases the GIL, so on two or more cores the check
costs little wall time.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter

from nnunetv2_uda.images import fill_nonfinite, verify_voxels
from nnunetv2_uda.inference.input_checks import check_case_files


def read_case(files: Sequence[str], dataset_json: dict, reader: BaseReaderWriter,
              allow_nonfinite: bool = False) -> tuple[np.ndarray, dict]:
    """(C, z, y, x) image and nnU-Net's properties; an error names the first bad file. NaN or infinite voxels are
    an error unless ``allow_nonfinite`` (then replaced by the channel's lowest finite value, said on stderr)."""
    check_case_files(files, dataset_json)
    with ThreadPoolExecutor(max_workers=len(files) + 1) as pool:
        read = pool.submit(reader.read_images, list(files))
        checks = [pool.submit(verify_voxels, path) for path in files]
        nonfinite = [check.result() for check in checks]  # a damaged file is named before the reader's own error
        images, properties = read.result()
    for channel, (path, bad) in enumerate(zip(files, nonfinite, strict=True)):
        if bad is not None:
            fill_nonfinite(images[channel], bad, path, allow_nonfinite)
    return images, properties
