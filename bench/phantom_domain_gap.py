"""Shows the phantom CT -> MRI domain gap is real: a small nnU-Net trained on phantom CT, tested on held-out phantom
CT and on phantom MRI of the same held-out subjects (so only the appearance differs). Prints Dice per organ for both.

Runs the real commands (nnUNetv2_plan_and_preprocess / nnUNetv2_train / nnUNetv2_predict) on CPU in a scratch
folder. Not run in CI; the defaults take about 8 minutes on two idle cores (docs/phantoms.md has a run's table).

    python3 bench/phantom_domain_gap.py [--shape 32 96 96] [--num_train 12] [--num_test 6] [--epochs 20] [--iters 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.flare_labels import FLARE_ORGANS
from nnunetv2_uda.phantoms import ct_case_name, make_phantom_datasets, mri_sequence
from nnunetv2_uda.training.budget import budget_trainer_name

PLANS = "nnUNetPlansUDASmallPhantom"  # the paper's small net at the phantoms' own (coarse, CPU-friendly) spacing


def run(args: list[str], env: dict[str, str]) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)


def hold_out_ct(ct_folder: Path, num_test: int, target: Path) -> tuple[Path, Path]:
    """Moves CT subjects 0..num_test-1 out of the training set (they are the subjects the MRI cases show)."""
    images, labels = target / "images", target / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for case in range(num_test):
        shutil.move(ct_folder / "imagesTr" / f"{ct_case_name(case)}_0000.nii.gz", images)
        shutil.move(ct_folder / "labelsTr" / f"{ct_case_name(case)}.nii.gz", labels)
    dataset_json = json.loads((ct_folder / "dataset.json").read_text())
    dataset_json["numTraining"] -= num_test
    (ct_folder / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    return images, labels


def dice_per_organ(predictions: Path, references: Path) -> dict[str, dict[str, float]]:
    """{case: {organ: Dice}} over organs present in the reference."""
    scores = {}
    for reference_file in sorted(references.glob("*.nii.gz")):
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_file)))
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(predictions / reference_file.name)))
        scores[reference_file.name.removesuffix(".nii.gz")] = {
            organ: 2 * float(((reference == i) & (prediction == i)).sum())
            / float((reference == i).sum() + (prediction == i).sum())
            for organ, i in FLARE_ORGANS.items() if (reference == i).any()}
    return scores


def mean_by_organ(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {organ: float(np.mean([s[organ] for s in scores.values() if organ in s]))
            for organ in FLARE_ORGANS if any(organ in s for s in scores.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 96, 96], metavar=("Z", "Y", "X"),
                        help="phantom CT shape (default 32 96 96)")
    parser.add_argument("--num_train", type=int, default=12, help="CT training cases (default 12)")
    parser.add_argument("--num_test", type=int, default=6,
                        help="held-out subjects, imaged as CT and as MRI, T1/T2/DWI in turn (default 6)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    parser.add_argument("--iters", type=int, default=20, help="iterations per epoch (default 20)")
    parser.add_argument("--trainer", default="nnUNetTrainerUDAQuick",
                        help="base trainer, given the budget above (default nnUNetTrainerUDAQuick, the short-schedule "
                             "settings; nnUNetTrainerUDASmall for the paper's)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder, kept afterwards (default: a temporary folder, deleted)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="phantom_gap_"))
    env = {**os.environ, "nnUNet_raw": str(workdir / "raw"), "nnUNet_preprocessed": str(workdir / "preprocessed"),
           "nnUNet_results": str(workdir / "results"), "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}
    trainer = budget_trainer_name(args.trainer, args.epochs, args.iters, final_validation=False)
    start = time.time()
    try:
        phantoms = make_phantom_datasets(workdir / "raw", num_ct=args.num_train + args.num_test,
                                         num_mri=args.num_test, shape=tuple(args.shape), seed=args.seed)
        ct_images, ct_labels = hold_out_ct(phantoms.ct_folder, args.num_test, workdir / "heldout_ct")
        spacing = sitk.ReadImage(str(next((phantoms.ct_folder / "imagesTr").iterdir()))).GetSpacing()[::-1]
        run(["nnUNetv2_plan_and_preprocess", "-d", "991", "-pl", "nnUNetPlannerUDASmall", "-c", "2d", "-np", "1",
             "-overwrite_target_spacing", *(f"{s:.2f}" for s in spacing), "-overwrite_plans_name", PLANS], env)
        run(["nnUNetv2_train", "991", "2d", "all", "-tr", trainer, "-p", PLANS, "-device", "cpu"], env)
        scores = {}
        for domain, images, labels in (("CT", ct_images, ct_labels),
                                       ("MRI", phantoms.mri_folder / "imagesTr", phantoms.mri_folder / "labelsEval")):
            output = workdir / f"predictions_{domain}"
            run(["nnUNetv2_predict", "-i", str(images), "-o", str(output), "-d", "991", "-tr", trainer, "-p", PLANS,
                 "-c", "2d", "-f", "all", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"], env)
            scores[domain] = dice_per_organ(output, labels)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    ct, mri = mean_by_organ(scores["CT"]), mean_by_organ(scores["MRI"])
    by_sequence = {seq: mean_by_organ({c: s for c, s in scores["MRI"].items() if f"_{seq}_" in c})
                   for seq in {mri_sequence(i) for i in range(args.num_test)}}
    print(f"\nphantom shape {args.shape}, {args.num_train} CT training cases, {args.num_test} held-out subjects, "
          f"{trainer}, {time.time() - start:.0f} s in all")
    print(f"{'organ':<22}{'CT Dice':>9}{'MRI Dice':>10}" + "".join(f"{s:>8}" for s in sorted(by_sequence)))
    for organ in FLARE_ORGANS:
        if organ in ct:
            print(f"{organ:<22}{ct[organ]:>9.3f}{mri.get(organ, float('nan')):>10.3f}"
                  + "".join(f"{by_sequence[s].get(organ, float('nan')):>8.3f}" for s in sorted(by_sequence)))
    print(f"{'mean':<22}{np.mean(list(ct.values())):>9.3f}{np.mean(list(mri.values())):>10.3f}"
          + "".join(f"{np.mean(list(by_sequence[s].values())):>8.3f}" for s in sorted(by_sequence)))


if __name__ == "__main__":
    main()
