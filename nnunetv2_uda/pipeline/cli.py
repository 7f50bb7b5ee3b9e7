"""``nnUNetv2_uda_run`` (the whole pipeline from a recipe, a config file or both; docs/run.md) and
``nnUNetv2_uda_demo`` (phantoms + recipe ``demo``)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import yaml

from nnunetv2_uda.atomic_files import write_text_atomically
from nnunetv2_uda.command_line import UserInputError, command
from nnunetv2_uda.pipeline.commands import StageCommandError
from nnunetv2_uda.pipeline.recipes import recipe_file, recipe_header, recipe_names, recipe_purpose, run_config
from nnunetv2_uda.pipeline.runner import plan_run, prepare, run_pipeline

# the demo's phantoms: CT 32 x 96 x 96 voxels (about 4 mm in-plane, the demo recipe's spacing); MRI T1, T2, DWI in
# turn, each three consecutive cases the series of one subject (the multi-sequence study MDM within the patient needs)
DEMO_SHAPE = (32, 96, 96)
DEMO_CASES = {"num_ct": 10, "num_mri": 12, "series_per_patient": 3}


VERBOSE_HELP = "on an error, show the Python traceback too"


# why a call with neither a recipe nor a config file is an error rather than a default (docs/run.md)
BARE_CALL_REASON = "the recipes differ about a hundredfold in time (CPU hour vs GPU day), so the choice is yours"


def recipe_menu() -> str:
    return "; ".join(f"{name}: {recipe_purpose(name)}" for name in recipe_names())


def list_recipes() -> None:
    for name in recipe_names():
        print(f"{name} ({recipe_file(name)}):")
        print("\n".join(f"    {line}" for line in recipe_header(name).splitlines()))
        print()


@command
def run_entry() -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_uda_run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Runs the whole CT -> MRI adaptation pipeline (translation, pseudo-labels, MDM, self-training with "
            "uncertainty filtering, final network, prediction, evaluation) and ends with OUTPUT/report.md, which names "
            "the final network and the nnUNetv2_predict_fast command for new MRI. Stages already finished with the "
            "same inputs and settings are skipped, so rerunning resumes.", 100),
        epilog=textwrap.fill("Settings are layered, later ones winning key by key: the recipe, the config file, then "
                             "--ct/--mri/-o/--test_images and --set. Every config key is in docs/config.md; see "
                             "docs/run.md.", 100) + "\n\n"
               "examples:\n"
               "  nnUNetv2_uda_run --list_recipes\n"
               "  nnUNetv2_uda_run --recipe cpu --ct $nnUNet_raw/Dataset801_CT --mri $nnUNet_raw/Dataset802_MRI "
               "-o uda_run\n"
               "  nnUNetv2_uda_run --recipe gpu --ct CT --mri MRI -o uda_run --set num_processes=16 "
               "--set self_training.epochs=500\n"
               "  nnUNetv2_uda_run my_run.yaml --set parallel_steps=2   # independent steps at once, as Dask tasks\n"
               "  nnUNetv2_uda_run my_run.yaml --set num_parts=8 --set scheduler=tcp://host:8786   # Dask workers\n"
               "  nnUNetv2_uda_run my_run.yaml --check      # a config file: 'recipe: cpu' plus its own keys")
    parser.add_argument("config", nargs="?", default=None,
                        help="Optional YAML (.yaml/.yml) or JSON (.json) config file: any keys of docs/config.md, and "
                             "'recipe: NAME' to start from a recipe. Relative paths in it are relative to the file.")
    parser.add_argument("--recipe", default=None, metavar="NAME",
                        help="Start from the packaged recipe NAME (--list_recipes shows each with its measured score "
                             "and time). A bare call with neither a recipe nor a config file is an error listing the "
                             "recipes: " + BARE_CALL_REASON + ".")
    parser.add_argument("--ct", default=None, metavar="CT_DATASET",
                        help="Labeled CT nnU-Net raw dataset folder (imagesTr, labelsTr, dataset.json); sets "
                             "'ct_dataset'.")
    parser.add_argument("--mri", default=None, metavar="MRI_DATASET",
                        help="Unlabeled MRI nnU-Net raw dataset folder (imagesTr, a <case>.json sequence sidecar per "
                             "case, dataset.json); sets 'mri_dataset'.")
    parser.add_argument("-o", "--output_folder", default=None, metavar="OUTPUT",
                        help="The run's own folder (new, empty, or an earlier run's to resume); sets 'output_folder'.")
    parser.add_argument("--test_images", default=None, metavar="DIR",
                        help="A folder of MRI images <case>_0000.nii.gz that the final network of every PLF row "
                             "predicts at the end of the run (into OUTPUT/predictions/<row>/test); sets "
                             "'test_images'. Default: none.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="Override one config key; repeat for more. Nested keys are dotted and values are YAML, "
                             "e.g. --set self_training.epochs=5 --set 'ablation=[only_ct, only_ct_plf]' --set "
                             "device=cpu. Wins over the recipe and the config file.")
    parser.add_argument("--list_recipes", action="store_true",
                        help="Print every packaged recipe with its header (what it is for, measured score and time, "
                             "or 'not measured') and exit.")
    parser.add_argument("--check", action="store_true",
                        help="Only check the config and the inputs, list the steps with what a run would do with each "
                             "(skip, or run and why: not run before, settings or input folders changed, an earlier "
                             "step reruns), then exit; nothing is trained or recorded. Default: off.")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args()
    if args.list_recipes:
        list_recipes()
        return
    if args.recipe is None and args.config is None:
        raise UserInputError(f"choose a recipe (--recipe NAME) or give a config file; {BARE_CALL_REASON}. Recipes: "
                             f"{recipe_menu()} (nnUNetv2_uda_run --list_recipes shows their measured scores)")
    paths = {"ct_dataset": args.ct, "mri_dataset": args.mri, "output_folder": args.output_folder,
             "test_images": args.test_images}
    config = run_config(args.recipe, args.config, paths, args.assignments)
    if args.check:
        context, steps, _, rows, notes = prepare(config)
        for note in notes:
            print(f"note: {note}")
        print(f"config OK; rows: {', '.join(rows)}")
        for planned in plan_run(context, steps):
            print(f"  {planned.step.name}: {planned.status}: {planned.step.description}")
        return
    run_pipeline(config)


def demo_config(root: Path, device: str) -> dict:
    """The demo's config file: recipe 'demo' (its budgets, rows and phantom spacing) plus the phantoms' paths; a user
    can rerun or change it with ``nnUNetv2_uda_run demo_config.yaml``."""
    mri = root / "inputs" / "Dataset992_PhantomMRI"
    values = {"recipe": "demo", "ct_dataset": str(root / "inputs" / "Dataset991_PhantomCT"), "mri_dataset": str(mri),
              "validation_labels": str(mri / "labelsEval"), "output_folder": str(root / "pipeline")}
    return values if device == "cpu" else {**values, "device": device}


@command
def demo_entry() -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_uda_demo",
        description="Makes phantom CT and multi-sequence MRI datasets (nnUNetv2_uda_make_phantoms; three series per "
                    "subject) and runs the pipeline on them with recipe 'demo' (the cpu recipe's chain plus MDM within "
                    "the patient at a small budget, 6-12 minutes on 2 CPU cores; its header in "
                    "nnunetv2_uda/recipes/demo.yaml gives the measured scores and time), "
                    "ending with OUTPUT_FOLDER/pipeline/report.md. It writes OUTPUT_FOLDER/demo_config.yaml, which "
                    "nnUNetv2_uda_run takes to rerun or change it. nnU-Net's folder variables default to subfolders "
                    "of OUTPUT_FOLDER when unset.")
    parser.add_argument("output_folder", nargs="?", default="nnunetv2_uda_demo",
                        help="Where phantoms, nnU-Net folders and the pipeline output go. Default: ./nnunetv2_uda_demo")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="Default: cpu")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
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
        phantoms = ["nnUNetv2_uda_make_phantoms", str(inputs), "--num_ct", str(DEMO_CASES["num_ct"]),
                    "--num_mri", str(DEMO_CASES["num_mri"]), "--series_per_patient",
                    str(DEMO_CASES["series_per_patient"]), "--shape", *map(str, DEMO_SHAPE), "--seed", "0",
                    "--ct_id", "991", "--mri_id", "992", "--overwrite"]
        if subprocess.run(phantoms).returncode != 0:
            raise StageCommandError(f"'{shlex.join(phantoms)}' failed (its output is above)")
    config_file = root / "demo_config.yaml"
    write_text_atomically(yaml.safe_dump(demo_config(root, args.device), sort_keys=False), config_file)
    print(f"nnUNetv2_uda_demo: config {config_file} (recipe demo: {recipe_file('demo')})")
    run_pipeline(run_config(config_file=config_file))
