"""Real-data rows beside bench/ct2mr_real.py's Table 7: a CT network trained one other way, applied to CHAOS T2.

Not run in CI (it needs ../shared/data and takes ~25 minutes on 2 cores); without the data it says so and exits.

    python3 bench/extra_rows_real.py --row anatomy_space --output /tmp/anatomy_real
    python3 bench/extra_rows_real.py --row gin --output /tmp/gin_real

Rows (rules in docs/pipeline.md, each written before the row's scores were seen):

- ``anatomy_space``: tests ASIT's premise (CT and MRI are close in anatomy space) without a translator. nnU-Net's
  own pipeline trains on BTCV CT with the plugin's ``AnatomySpacePreprocessor`` + ``CTAnatomySpaceNormalization``
  and predicts the CHAOS T2 images through a copy of the model folder whose plans say
  ``MRIAnatomySpaceNormalization`` (docs/translation.md).
- ``gin``: the pipeline's CT network (z-score normalization) trained with ``nnUNetTrainerUDAQuickGIN``: random
  intensity networks as augmentation, no MRI image seen in training (docs/training.md).

Every other setting is the CT network's in bench/ct2mr_real.py (planner, iterations, spacing, batch size,
predictor); labelsEval is read only by the final ``nnUNetv2_uda_evaluate``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk
import torch
from ct2mr_real import BUDGET
from real_data import (
    CT_DATASET,
    MRI_DATASET,
    ORGANS,
    REPO,
    add_common_arguments,
    nnunet_environment,
    real_data_present,
)

from nnunetv2_uda.atomic_files import save_figure
from nnunetv2_uda.pipeline.datasets import labeled_cases, read_dataset_json, write_raw_dataset
from nnunetv2_uda.pipeline.stages import PLANNER, PLANS, ZSCORE_CHANNEL
from nnunetv2_uda.training.budget import budget_trainer_name
from nnunetv2_uda.training.random_intensity_networks import RandomIntensityNetworkTransform

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the file-only backend)

EXAMPLES_FIGURE = "gin_examples.png"
ANATOMY_PLANS = "nnUNetPlansAnatomy"
ANATOMY_MRI_PLANS = "nnUNetPlansAnatomyMRI"


@dataclass(frozen=True)
class Row:
    title: str
    dataset_id: int
    dataset_name: str
    trainer: str
    anatomy_space: bool  # Sobel preprocessing, CT normalization to train, MRI normalization to predict

    @property
    def channel_name(self) -> str:
        return "CT" if self.anatomy_space else ZSCORE_CHANNEL  # the anatomy plans overwrite the normalization

    @property
    def plans(self) -> str:
        return ANATOMY_PLANS if self.anatomy_space else PLANS

    @property
    def prediction_plans(self) -> str:
        return ANATOMY_MRI_PLANS if self.anatomy_space else PLANS


ROWS = {
    "anatomy_space": Row("anatomy space, no transl.", 819, "Dataset819_BTCVAnatomySpace", BUDGET["trainer"], True),
    "gin": Row("CT + GIN, no MRI", 820, "Dataset820_BTCVGIN", "nnUNetTrainerUDAQuickGIN", False),
}


def run(args: list, log: Path) -> None:
    """Runs one command with its output appended to ``log``; stops the benchmark, naming the log, if it fails."""
    args = [str(a) for a in args]
    print("$ " + " ".join(args), flush=True)
    with open(log, "ab") as handle:
        if subprocess.run(args, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"extra_rows_real: '{args[0]}' failed; see {log}")


def plan(row: Row, configuration: str, log: Path) -> None:
    """The pipeline's planning (our planner, the budget's spacing and batch size); for anatomy space, with the
    anatomy-space preprocessor and CT normalization."""
    extra = ["-preprocessor_name", "AnatomySpacePreprocessor", "-overwrite_plans_name", row.plans] \
        if row.anatomy_space else []
    run(["nnUNetv2_plan_and_preprocess", "-d", row.dataset_id, "-pl", PLANNER, "-c", configuration, "-np", 2,
         "-npfp", 2, "--no_pp", *extra, "-overwrite_target_spacing", *BUDGET["target_spacing"]], log)
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / row.dataset_name / f"{row.plans}.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"][configuration]["batch_size"] = BUDGET["batch_size"]
    if row.anatomy_space:
        plans["configurations"][configuration]["normalization_schemes"] = ["CTAnatomySpaceNormalization"]
    plans_file.write_text(json.dumps(plans, indent=2))


def anatomy_mri_model_folder(ct_model: Path, trainer: str, configuration: str) -> Path:
    """A model folder that shares the anatomy-space CT checkpoint but normalizes its input as MRI."""
    folder = ct_model.parent / f"{trainer}__{ANATOMY_MRI_PLANS}__{configuration}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "fold_all").mkdir(parents=True)
    plans = json.loads((ct_model / "plans.json").read_text())
    plans["plans_name"] = ANATOMY_MRI_PLANS
    plans["configurations"][configuration]["normalization_schemes"] = ["MRIAnatomySpaceNormalization"]
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    for name in ("dataset.json", "dataset_fingerprint.json"):
        shutil.copy(ct_model / name, folder / name)
    os.symlink(ct_model / "fold_all" / "checkpoint_final.pth", folder / "fold_all" / "checkpoint_final.pth")
    return folder


def write_gin_examples(ct_image: Path, mri_image: Path, path: Path, num_examples: int = 7) -> Path:
    """What the GIN network trains on: a CT slice, random intensity network versions of it, and a real MRI slice
    for comparison (each z-scored, as nnU-Net normalizes them)."""
    def middle_slice(file: Path) -> np.ndarray:
        volume = sitk.GetArrayFromImage(sitk.ReadImage(str(file))).astype(np.float32)
        image = volume[volume.shape[0] // 2]
        return (image - image.mean()) / image.std()

    torch.manual_seed(0)
    ct = middle_slice(ct_image)
    transform = RandomIntensityNetworkTransform()
    panels = [("CT", ct)] + [(f"GIN {i + 1}", transform(image=torch.from_numpy(ct)[None])["image"][0].numpy())
                             for i in range(num_examples)] + [("real T2 MRI (other subject)", middle_slice(mri_image))]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for axis, (title, image) in zip(axes, panels, strict=True):
        axis.imshow(image, cmap="gray", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99))
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    return save_figure(figure, path)


def print_scores(row: Row, summary: dict, wall: dict[str, float]) -> None:
    header = f"{'Method':<26}" + "".join(f"{organ:>16}" for organ in (*ORGANS, "mean"))
    print("\nDSC / NSD (%) on CHAOS T2 labelsEval\n" + header + "\n" + "-" * len(header))
    cells = [f"{100 * summary[o]['DSC']['mean']:.1f} / {100 * summary[o]['NSD']['mean']:.1f}" if o in summary
             else "n/a" for o in (*ORGANS, "mean")]
    print(f"{row.title:<26}" + "".join(f"{cell:>16}" for cell in cells))
    print("\nWall time per step (s)")
    for step, seconds in wall.items():
        print(f"  {step:<30}{seconds:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", required=True, choices=sorted(ROWS),
                        help="anatomy_space: train on Sobel-CT, predict Sobel-MRI; gin: train on CT with random "
                             "intensity networks as augmentation")
    add_common_arguments(parser, "<row>_real")
    args = parser.parse_args()
    row = ROWS[args.row]
    if not real_data_present(args.data, "extra_rows_real"):
        return
    ct, mri = args.data / CT_DATASET, args.data / MRI_DATASET
    output = (args.output or REPO / "bench_output" / f"{args.row}_real").resolve()
    os.environ.update(nnunet_environment(output))
    log = output / f"{args.row}_real.log"
    configuration = BUDGET["configuration"]
    training = BUDGET["ct_training"]
    trainer = budget_trainer_name(row.trainer, training["epochs"], training["iterations_per_epoch"],
                                  final_validation=False)
    wall: dict[str, float] = {}

    start = time.time()
    raw = Path(os.environ["nnUNet_raw"]) / row.dataset_name
    shutil.rmtree(raw, ignore_errors=True)
    write_raw_dataset(raw, labeled_cases(ct), read_dataset_json(ct)["labels"], row.channel_name)
    plan(row, configuration, log)
    run(["nnUNetv2_preprocess", "-d", row.dataset_id, "-plans_name", row.plans, "-c", configuration, "-np", 2], log)
    wall["plan + preprocess"] = time.time() - start
    if args.row == "gin":
        first = sorted((raw / "imagesTr").glob("*_0000.nii.gz"))[0]
        figure = write_gin_examples(first, sorted((mri / "imagesTr").glob("*_0000.nii.gz"))[0],
                                    output / EXAMPLES_FIGURE)
        print(f"training images after random intensity networks: {figure}")

    start = time.time()
    run(["nnUNetv2_train", row.dataset_id, configuration, "all", "-p", row.plans, "-tr", trainer,
         "-device", args.device], log)
    wall["train on CT"] = time.time() - start
    if row.anatomy_space:
        model = Path(os.environ["nnUNet_results"]) / row.dataset_name / f"{trainer}__{row.plans}__{configuration}"
        anatomy_mri_model_folder(model, trainer, configuration)

    start = time.time()
    predictions = output / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    run(["nnUNetv2_predict_fast", "-i", mri / "imagesTr", "-o", predictions, "-d", row.dataset_id,
         "-p", row.prediction_plans, "-tr", trainer, "-c", configuration, "-f", "all", "-device", args.device,
         "--disable_progress_bar"], log)
    wall["predict the MRI"] = time.time() - start

    scores = output / "scores"
    run(["nnUNetv2_uda_evaluate", predictions, mri / "labelsEval", "-o", scores, "-np", 2], log)
    print_scores(row, json.loads((scores / "summary.json").read_text())["summary"], wall)
    print(f"\nscores: {scores}; log: {log}")


if __name__ == "__main__":
    main()
