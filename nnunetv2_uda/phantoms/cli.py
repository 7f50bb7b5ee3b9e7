"""``nnUNetv2_uda_make_phantoms``: writes the phantom CT -> MRI problem as two nnU-Net raw datasets."""

from __future__ import annotations

import argparse

from nnunetv2_uda.command_line import command, non_negative_int, positive_int
from nnunetv2_uda.phantoms.datasets import (
    DEFAULT_NUM_CT,
    DEFAULT_NUM_MRI,
    DEFAULT_SEED,
    DEFAULT_SHAPE,
    MAX_DATASET_ID,
    make_phantom_datasets,
)
from nnunetv2_uda.phantoms.tissues import SEQUENCES


def dataset_id(text: str) -> int:
    """An nnU-Net dataset id: a whole number from 1 to 999 (nnU-Net names datasets with three digits)."""
    value = positive_int(text)
    if value > MAX_DATASET_ID:
        raise argparse.ArgumentTypeError(f"must be an nnU-Net dataset id from 1 to {MAX_DATASET_ID}, got '{text}'")
    return value


@command
def make_phantoms_entry() -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_uda_make_phantoms",
        description="Writes a synthetic CT -> multi-sequence MRI problem into OUTPUT_FOLDER (typically $nnUNet_raw): "
                    "a labeled CT dataset (imagesTr, labelsTr) and an unlabeled MRI dataset (T1, T2 and DWI cases, "
                    "imagesTr with a JSON sidecar per case, labelsEval for evaluation only), plus a PNG contact "
                    "sheet. CT case i and MRI case i show the same subject (unless --series_per_patient). "
                    "Deterministic for a given seed.")
    parser.add_argument("output_folder", metavar="OUTPUT_FOLDER", help="where the Dataset###_Name folders go")
    parser.add_argument("--num_ct", type=positive_int, default=DEFAULT_NUM_CT,
                        help=f"number of labeled CT cases (default {DEFAULT_NUM_CT})")
    parser.add_argument("--num_mri", type=positive_int, default=DEFAULT_NUM_MRI,
                        help=f"number of MRI cases, cycling T1, T2, DWI (default {DEFAULT_NUM_MRI})")
    parser.add_argument("--shape", type=positive_int, nargs=3, metavar=("Z", "Y", "X"), default=list(DEFAULT_SHAPE),
                        help="CT array shape (slices, rows, columns); MRI has half the slices, DWI half the matrix "
                             f"(default {' '.join(map(str, DEFAULT_SHAPE))}; tests use 32 64 64, the demo "
                             "64 192 192)")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                        help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--ct_id", type=dataset_id, default=991, help="dataset id of the CT dataset (default 991)")
    parser.add_argument("--mri_id", type=dataset_id, default=992, help="dataset id of the MRI dataset (default 992)")
    parser.add_argument("--series_per_patient", type=positive_int, default=1,
                        choices=range(1, len(SEQUENCES) + 1),
                        help="MRI series per subject: with 3, MRI cases 0-2 are the T1, T2 and DWI series of one "
                             "subject (each with its own coverage and position), 3-5 of the next, and their sidecars "
                             "name the same patient, as in a clinical study; 1 (default): every MRI case a subject "
                             "of its own")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing phantom dataset folders of the same names, once the new ones are "
                             "complete (default: refuse)")
    args = parser.parse_args()
    result = make_phantom_datasets(args.output_folder, num_ct=args.num_ct, num_mri=args.num_mri,
                                   shape=tuple(args.shape), seed=args.seed, ct_dataset_id=args.ct_id,
                                   mri_dataset_id=args.mri_id, overwrite=args.overwrite,
                                   series_per_patient=args.series_per_patient)
    print(f"CT dataset:    {result.ct_folder}\nMRI dataset:   {result.mri_folder}\n"
          f"contact sheet: {result.contact_sheet}")
