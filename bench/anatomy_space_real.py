"""Real-data row "anatomy space, no translation": a CT network trained on Sobel-CT, applied to Sobel-MRI.

Not run in CI (it needs ../shared/data and takes ~25 minutes on 2 cores); without the data it says so and exits.

    python3 bench/anatomy_space_real.py --output /tmp/anatomy_real

ASIT's premise is that CT and MRI are close in anatomy space (bench/domain_distance.py measures it). This row
tests the premise without a translator: nnU-Net's own pipeline trains on BTCV CT with the plugin's
``AnatomySpacePreprocessor`` + ``CTAnatomySpaceNormalization`` and predicts the CHAOS T2 images through a copy of
the model folder whose plans say ``MRIAnatomySpaceNormalization`` (docs/translation.md). Every setting is the CT
network's in bench/ct2mr_real.py (trainer, iterations, spacing, batch size, predictor), fixed by the rules in
docs/pipeline.md ("Real-data benchmark") before any score of this row was seen; labelsEval is read only by the
final ``nnUNetv2_uda_evaluate``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from ct2mr_real import BUDGET, CT_DATASET, DEFAULT_DATA, MRI_DATASET, ORGANS  # noqa: E402

from nnunetv2_uda.pipeline.datasets import labeled_cases, read_dataset_json, write_raw_dataset  # noqa: E402
from nnunetv2_uda.training.budget import budget_trainer_name  # noqa: E402

DATASET_ID = 819
DATASET_NAME = f"Dataset{DATASET_ID}_BTCVAnatomySpace"
PLANS = "nnUNetPlansAnatomy"
MRI_PLANS = "nnUNetPlansAnatomyMRI"


def run(args: list, log: Path) -> None:
    """Runs one command with its output appended to ``log``; stops the benchmark, naming the log, if it fails."""
    args = [str(a) for a in args]
    print("$ " + " ".join(args), flush=True)
    with open(log, "ab") as handle:
        if subprocess.run(args, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"anatomy_space_real: '{args[0]}' failed; see {log}")


def plan(configuration: str, log: Path) -> Path:
    """nnU-Net plans with the anatomy-space preprocessor and CT normalization, batch size as in ct2mr_real."""
    run(["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-pl", "nnUNetPlannerUDASmall", "-c", configuration,
         "-np", 2, "-npfp", 2, "--no_pp", "-preprocessor_name", "AnatomySpacePreprocessor",
         "-overwrite_plans_name", PLANS, "-overwrite_target_spacing", *BUDGET["target_spacing"]], log)
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / DATASET_NAME / f"{PLANS}.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"][configuration].update(normalization_schemes=["CTAnatomySpaceNormalization"],
                                                  batch_size=BUDGET["batch_size"])
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans_file


def mri_model_folder(ct_model: Path, trainer: str, configuration: str) -> Path:
    """A model folder that shares the CT checkpoint but normalizes its input as MRI."""
    folder = ct_model.parent / f"{trainer}__{MRI_PLANS}__{configuration}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "fold_all").mkdir(parents=True)
    plans = json.loads((ct_model / "plans.json").read_text())
    plans["plans_name"] = MRI_PLANS
    plans["configurations"][configuration]["normalization_schemes"] = ["MRIAnatomySpaceNormalization"]
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    for name in ("dataset.json", "dataset_fingerprint.json"):
        shutil.copy(ct_model / name, folder / name)
    os.symlink(ct_model / "fold_all" / "checkpoint_final.pth", folder / "fold_all" / "checkpoint_final.pth")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding {CT_DATASET} and {MRI_DATASET}. Default: {DEFAULT_DATA}")
    parser.add_argument("--output", type=Path, default=REPO / "bench_output" / "anatomy_space_real",
                        help="output folder (nnU-Net folders, predictions, scores, log). "
                             "Default: bench_output/anatomy_space_real")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="Default: cpu")
    args = parser.parse_args()
    ct, mri = args.data / CT_DATASET, args.data / MRI_DATASET
    if not ct.is_dir() or not mri.is_dir():
        print(f"anatomy_space_real: {args.data} does not hold {CT_DATASET} and {MRI_DATASET}; this benchmark needs "
              f"the real data and is not run in CI. Nothing to do.")
        return
    output = args.output.resolve()
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(output / variable)
        Path(os.environ[variable]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_n_proc_DA", "0")
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    log = output / "anatomy_space_real.log"
    configuration = BUDGET["configuration"]
    training = BUDGET["ct_training"]
    trainer = budget_trainer_name(BUDGET["trainer"], training["epochs"], training["iterations_per_epoch"],
                                  final_validation=False)
    wall: dict[str, float] = {}

    start = time.time()
    raw = Path(os.environ["nnUNet_raw"]) / DATASET_NAME
    shutil.rmtree(raw, ignore_errors=True)
    write_raw_dataset(raw, labeled_cases(ct), read_dataset_json(ct)["labels"], "CT")
    plan(configuration, log)
    run(["nnUNetv2_preprocess", "-d", DATASET_ID, "-plans_name", PLANS, "-c", configuration, "-np", 2], log)
    wall["plan + preprocess (Sobel)"] = time.time() - start

    start = time.time()
    run(["nnUNetv2_train", DATASET_ID, configuration, "all", "-p", PLANS, "-tr", trainer, "-device", args.device],
        log)
    wall["train on Sobel-CT"] = time.time() - start
    ct_model = Path(os.environ["nnUNet_results"]) / DATASET_NAME / f"{trainer}__{PLANS}__{configuration}"
    mri_model_folder(ct_model, trainer, configuration)

    start = time.time()
    predictions = output / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    run(["nnUNetv2_predict_fast", "-i", mri / "imagesTr", "-o", predictions, "-d", DATASET_ID, "-p", MRI_PLANS,
         "-tr", trainer, "-c", configuration, "-f", "all", "-device", args.device, "--disable_progress_bar"], log)
    wall["predict the MRI (Sobel-MRI)"] = time.time() - start

    scores = output / "scores"
    run(["nnUNetv2_uda_evaluate", predictions, mri / "labelsEval", "-o", scores, "-np", 2], log)
    summary = json.loads((scores / "summary.json").read_text())["summary"]
    header = f"{'Method':<26}" + "".join(f"{organ:>16}" for organ in (*ORGANS, "mean"))
    print("\nDSC / NSD (%) on CHAOS T2 labelsEval\n" + header + "\n" + "-" * len(header))
    cells = [f"{100 * summary[o]['DSC']['mean']:.1f} / {100 * summary[o]['NSD']['mean']:.1f}" if o in summary
             else "n/a" for o in (*ORGANS, "mean")]
    print(f"{'anatomy space, no transl.':<26}" + "".join(f"{cell:>16}" for cell in cells))
    print("\nWall time per step (s)")
    for step, seconds in wall.items():
        print(f"  {step:<30}{seconds:>8.1f}")
    print(f"\nscores: {scores}; log: {log}")


if __name__ == "__main__":
    main()
