"""How well MDM's transport step alone carries a correct label to another series of the same subject.

    python3 bench/mdm_transport.py [--registrations world body]

Makes the demo's phantoms (three series per subject: T1, T2, DWI, each on its own grid), carries each DWI series'
evaluation label onto the T1 and T2 series of its subject with each registration of ``nnUNetv2_uda_mdm
--registration_on`` (the body outline is registered image to image; ``labels`` is left out, since registering onto
the target's evaluation label would score itself), and prints the mean DSC over liver, kidneys and spleen against the
target series' evaluation label. A diagnostic of the registration: evaluation labels on both sides, no network, and
nothing chosen from it for real data. Not run in CI.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.evaluation.surface_metrics import dice
from nnunetv2_uda.images import read_image, read_label_map
from nnunetv2_uda.phantoms.datasets import make_phantom_datasets, mri_case_name, mri_sequence
from nnunetv2_uda.pipeline.cli import DEMO_CASES, DEMO_SHAPE
from nnunetv2_uda.pseudolabels.registration import register_affine, warp_label

ORGANS = {"liver": 1, "right kidney": 2, "spleen": 3, "left kidney": 13}  # FLARE ids
SERIES = 3


def organ_dice(label: np.ndarray, reference: np.ndarray) -> float:
    return float(np.nanmean([dice(reference == value, label == value) for value in ORGANS.values()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", nargs="+", default=["world", "body"], choices=("world", "body", "images"),
                        help="registration inputs to compare (default: world body)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mdm_transport_") as scratch:
        mri = make_phantom_datasets(Path(scratch), num_ct=1, num_mri=DEMO_CASES["num_mri"], shape=DEMO_SHAPE,
                                    seed=0, series_per_patient=SERIES).mri_folder
        scores: dict[tuple[str, str], list[float]] = {}
        for first in range(0, DEMO_CASES["num_mri"] - SERIES + 1, SERIES):
            cases = {mri_sequence(case): mri_case_name(case) for case in range(first, first + SERIES)}
            source = cases.pop("DWI")
            source_image = read_image(mri / "imagesTr" / f"{source}_0000.nii.gz")
            source_label = read_label_map(mri / "labelsEval" / f"{source}.nii.gz")
            for sequence, target in cases.items():
                image = read_image(mri / "imagesTr" / f"{target}_0000.nii.gz")
                truth = sitk.GetArrayFromImage(read_label_map(mri / "labelsEval" / f"{target}.nii.gz"))
                for kind in args.registrations:
                    transform = register_affine(image, source_image, kind).transform  # world: the identity
                    carried = sitk.GetArrayFromImage(warp_label(source_label, image, transform))
                    scores.setdefault((kind, sequence), []).append(organ_dice(carried, truth))
    print("DWI evaluation label carried to the same subject's series, mean DSC over liver, kidneys and spleen:")
    for (kind, sequence), values in sorted(scores.items()):
        print(f"  {kind:6s} -> {sequence}: {np.mean(values):.2f} ({len(values)} subjects, "
              f"{min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
