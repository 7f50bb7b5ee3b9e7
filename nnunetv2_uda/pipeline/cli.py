"""``nnUNetv2_uda_run CONFIG`` (the whole pipeline) and ``nnUNetv2_uda_demo`` (phantoms + a small CPU run)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from nnunetv2_uda.pipeline.commands import StageCommandError
from nnunetv2_uda.pipeline.config import ConfigError, config_from_dict, load_config
from nnunetv2_uda.pipeline.runner import run_pipeline

DEMO_SHAPE = (24, 96, 96)  # z, y, x voxels of the demo's CT phantoms (about 4 mm in-plane)
DEMO_CASES = {"num_ct": 8, "num_mri": 12}


def _fail(error: Exception) -> None:
    print(f"nnUNetv2_uda_run: error: {error}", file=sys.stderr)
    raise SystemExit(1 if isinstance(error, StageCommandError) else 2)


def run_entry() -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_uda_run",
        description="Runs the whole CT -> MRI adaptation pipeline (translation, pseudo-labels, MDM, self-training with "
                    "uncertainty filtering, final network, prediction, evaluation) from one config file. Stages "
                    "already finished with the same inputs and settings are skipped; see docs/pipeline.md and "
                    "docs/config.md for every config key.")
    parser.add_argument("config", type=str, help="YAML (.yaml/.yml) or JSON (.json) config file.")
    parser.add_argument("--part_id", type=int, default=None,
                        help="With num_parts > 1: run only this part of the prediction steps here (nnU-Net's "
                             "-part_id). Without --worker this process also runs every other step and waits for the "
                             "other parts. Default: run all parts here.")
    parser.add_argument("--worker", action="store_true",
                        help="Run only part --part_id of the prediction steps (on another machine sharing the output "
                             "and nnU-Net folders), waiting for the main run to reach them. Default: off.")
    parser.add_argument("--check", action="store_true",
                        help="Only check the config and the inputs, list the steps with what a run would do with each "
                             "(skip, or run and why: not run before, settings or input folders changed, an earlier "
                             "step reruns), then exit; nothing is trained or recorded. Default: off.")
    args = parser.parse_args()
    try:
        config = load_config(args.config)
        if args.check:
            from nnunetv2_uda.pipeline.runner import plan_run, prepare

            context, steps, _, rows, notes = prepare(config, args.part_id, args.worker)
            for note in notes:
                print(f"note: {note}")
            print(f"config OK; rows: {', '.join(rows)}")
            for planned in plan_run(context, steps):
                print(f"  {planned.step.name}: {planned.status}: {planned.step.description}")
            return
        run_pipeline(config, args.part_id, args.worker)
    except (ConfigError, StageCommandError, FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        _fail(error)


def demo_config(root: Path, device: str) -> dict:
    """The demo's settings: 2d at a coarse spacing (96 x 96 slices), batch 12, the short-schedule trainer, warm
    starts, and a budget that fits about 20 minutes on 2 CPU cores (~0.7 s per nnU-Net iteration there)."""
    return {
        "ct_dataset": str(root / "inputs" / "Dataset991_PhantomCT"),
        "mri_dataset": str(root / "inputs" / "Dataset992_PhantomMRI"),
        "validation_labels": str(root / "inputs" / "Dataset992_PhantomMRI" / "labelsEval"),
        "output_folder": str(root / "pipeline"),
        "dataset_id_base": 600,
        "device": device,
        "configuration": "2d",
        "trainer": "nnUNetTrainerUDAQuick",
        "target_spacing": [10.0, 4.0, 4.0],
        "batch_size": 12,
        "num_processes": 2,
        "ablation": ["only_ct", "asit", "asit_mdm", "asit_mdm_plf"],
        "source_warm_start": True,
        "translator": {"iterations": 200, "batch_size": 4, "extra_args": ["--slice_size", "96"]},
        "ct_training": {"epochs": 8, "iterations_per_epoch": 25},
        "source_training": {"epochs": 6, "iterations_per_epoch": 25},
        "self_training": {"epochs": 4, "iterations_per_epoch": 15, "num_snapshots": 4, "keep_fraction": 0.75},
        "final": {"epochs": 3, "iterations_per_epoch": 15, "max_mri_cases": 300, "max_ct_cases": 4},
    }


def demo_entry() -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_uda_demo",
        description="Makes phantom CT and multi-sequence MRI datasets and runs the whole pipeline on them with a small "
                    "budget (about 20 minutes on 2 CPU cores), ending with OUTPUT_FOLDER/pipeline/report.md. nnU-Net's "
                    "folder variables default to subfolders of OUTPUT_FOLDER when unset.")
    parser.add_argument("output_folder", nargs="?", default="nnunetv2_uda_demo",
                        help="Where phantoms, nnU-Net folders and the pipeline output go. Default: ./nnunetv2_uda_demo")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="Default: cpu")
    args = parser.parse_args()
    root = Path(args.output_folder).resolve()
    for variable, sub in (("nnUNet_raw", "nnUNet_raw"), ("nnUNet_preprocessed", "nnUNet_preprocessed"),
                          ("nnUNet_results", "nnUNet_results")):
        if not os.environ.get(variable):
            os.environ[variable] = str(root / sub)
            (root / sub).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_n_proc_DA", "0")  # a 2-core machine gains nothing from augmentation workers
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    inputs = root / "inputs"
    if not (inputs / "Dataset992_PhantomMRI" / "dataset.json").is_file():
        subprocess.run(["nnUNetv2_uda_make_phantoms", str(inputs), "--num_ct", str(DEMO_CASES["num_ct"]),
                        "--num_mri", str(DEMO_CASES["num_mri"]), "--shape", *map(str, DEMO_SHAPE), "--seed", "0",
                        "--ct_id", "991", "--mri_id", "992", "--overwrite"], check=True)
    config_file = root / "demo_config.yaml"
    config_file.write_text(yaml.safe_dump(demo_config(root, args.device), sort_keys=False))
    print(f"nnUNetv2_uda_demo: config {config_file}")
    try:
        run_pipeline(config_from_dict(demo_config(root, args.device), str(config_file)))
    except (ConfigError, StageCommandError, FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        _fail(error)
