"""Synthetic abdominal CT and multi-sequence MRI phantoms: a CT -> MRI domain adaptation problem with no download.

``make_phantom_datasets`` (command ``nnUNetv2_uda_make_phantoms``) writes a labeled CT nnU-Net raw dataset and an
unlabeled T1/T2/DWI MRI dataset of the same random subjects, with the 13 FLARE 2024 organs. See docs/phantoms.md.
"""

from nnunetv2_uda.phantoms.datasets import (
    PhantomDatasets,
    ct_case_name,
    make_ct_case,
    make_mri_case,
    make_phantom_datasets,
    mri_case_name,
    mri_sequence,
)

__all__ = ["PhantomDatasets", "ct_case_name", "make_ct_case", "make_mri_case", "make_phantom_datasets",
           "mri_case_name", "mri_sequence"]
