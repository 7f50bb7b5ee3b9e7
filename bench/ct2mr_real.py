"""Real-data benchmark: BTCV CT -> CHAOS MRI through ``nnUNetv2_uda_run``, one experiment of bench/experiments.

Not run in CI (it needs ../shared/data and takes up to 90 minutes on 2 cores); without the data it says so and exits.

    python3 bench/ct2mr_real.py --list                   # every experiment's header: what it is for, rules, scores
    python3 bench/ct2mr_real.py --experiment NAME --dry_run   # write the config, check it and the inputs, list steps
    python3 bench/ct2mr_real.py --experiment NAME        # run, print the Table 7 form, file the report under runs/

An experiment is a folder ``bench/experiments/NAME``: ``recipe.yaml`` (the whole pipeline config but this machine's
paths), ``rules.md`` (fixed before its first run), ``notes.md`` (what its runs showed) and ``runs/<n>/`` (each run's
report, figures and config, this machine's paths written as ``$DATA``, ``$OUTPUT`` and ``$nnUNet_*``). The target is
CHAOS T2 (Dataset802) unless the experiment has a ``target.yaml`` naming several MRI datasets (``mri_datasets``), which
the bench then joins into one under the output folder (images and sequence sidecars linked, labelsEval too).
labelsEval is given to the pipeline as ``validation_labels``, which only its ``evaluate_*`` steps read
(``nnUNetv2_uda_evaluate``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from nnunetv2_uda.atomic_files import folder_built_atomically, is_hidden
from nnunetv2_uda.evaluation.tables import format_table7
from nnunetv2_uda.pipeline.datasets import NNUNET_FOLDERS, link_or_copy, nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pipeline.rows import ROW_TITLES

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "bench" / "experiments"
DEFAULT_DATA = REPO.parent / "shared" / "data"
CT_DATASET = "Dataset801_BTCVCT"
MRI_DATASET = "Dataset802_CHAOST2"
ORGANS = ("liver", "right kidney", "left kidney", "spleen")  # the organs labelsEval holds
DEFAULT_EXPERIMENT = "organs13_ls_lcc_nomirror"  # the chain of nnunetv2_uda/recipes/cpu.yaml
CONFIG_NAME = "ct2mr_real.yaml"
TARGET_FILE = "target.yaml"  # optional in an experiment folder: {"mri_datasets": [names in --data]}
JOINED_TARGET = "mri_target"  # the joined MRI dataset's folder in the output folder


def experiment_names() -> list[str]:
    return sorted(folder.name for folder in EXPERIMENTS.iterdir() if (folder / "recipe.yaml").is_file())


def load_recipe(experiment: str) -> dict:
    """The experiment's pipeline config without this machine's paths."""
    return yaml.safe_load((EXPERIMENTS / experiment / "recipe.yaml").read_text())


def mri_datasets(experiment: str) -> list[str]:
    """The MRI datasets of the experiment's target: its target.yaml's, or CHAOS T2 alone."""
    target = EXPERIMENTS / experiment / TARGET_FILE
    return yaml.safe_load(target.read_text())["mri_datasets"] if target.is_file() else [MRI_DATASET]


def real_data_present(data: Path, experiment: str) -> bool:
    """False, after saying so, where the real data is absent (CI): the benchmark then exits successfully."""
    needed = [CT_DATASET, *mri_datasets(experiment)]
    if all((data / name).is_dir() for name in needed):
        return True
    print(f"ct2mr_real: {data} does not hold {' and '.join(needed)}; this benchmark needs the real data and is not "
          f"run in CI. Nothing to do.")
    return False


def joined_target(datasets: list[Path], target: Path) -> Path:
    """One raw MRI dataset made of several (case names must not repeat): images, sequence sidecars and labelsEval
    linked, dataset.json the first one's with the total case count. Rebuilt on every call (the bench wrote it)."""
    with folder_built_atomically(target, replace=True) as staging:
        for dataset in datasets:
            for subfolder in ("imagesTr", "labelsEval"):
                for source in sorted((dataset / subfolder).iterdir()):
                    link_or_copy(source, staging / subfolder / source.name)
        dataset_json = json.loads((datasets[0] / "dataset.json").read_text())
        dataset_json["numTraining"] = len(list((staging / "labelsEval").glob("*.nii.gz")))
        dataset_json["source"] = " + ".join(dataset.name for dataset in datasets)
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return target


def nnunet_environment(output: Path) -> dict[str, str]:
    """The environment for nnU-Net's commands: its folders under ``output`` unless already set, augmentation in
    the trainer's process and 2 worker processes (a 2-core machine)."""
    env = dict(os.environ)
    for variable in NNUNET_FOLDERS:
        if not env.get(variable):
            env[variable] = str(output / variable)
        Path(env[variable]).mkdir(parents=True, exist_ok=True)
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("nnUNet_def_n_proc", "2")
    return env


def header(experiment: str) -> str:
    """The comment lines that open the experiment's recipe.yaml."""
    lines = (EXPERIMENTS / experiment / "recipe.yaml").read_text().splitlines()
    return "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))


def bench_config(data: Path, output: Path, device: str, experiment: str) -> dict:
    """The recipe plus the paths and device of this machine (and the joined target where it has several)."""
    names = mri_datasets(experiment)
    mri = data / names[0] if len(names) == 1 else joined_target([data / name for name in names], output / JOINED_TARGET)
    return {"ct_dataset": str(data / CT_DATASET), "mri_dataset": str(mri), "validation_labels": str(mri / "labelsEval"),
            "output_folder": str(output / "pipeline"), "device": device, **load_recipe(experiment)}


def chosen_rows(rows: list[str], asked: list[str] | None) -> list[str]:
    """The experiment's rows, or those of them ``--rows`` asks for, in the experiment's order."""
    if asked is None:
        return rows
    unknown = [row for row in asked if row not in rows]
    if unknown:
        raise ValueError(f"--rows: {', '.join(unknown)} not among the experiment's rows ({', '.join(rows)})")
    return [row for row in rows if row in asked]


def print_results(pipeline_folder: Path, env: dict[str, str]) -> None:
    """Table 7 form (DSC / NSD per organ, %) from the pipeline's evaluate steps, and every step's wall time."""
    manifest = Manifest(pipeline_folder, roots=nnunet_folders(env)).stages
    run = json.loads((pipeline_folder / "run.json").read_text())
    summaries = {}
    for row in run["rows"]:
        record = manifest.get(f"evaluate_{row}")
        finished = record and record.get("finished")
        summaries[ROW_TITLES.get(row, row)] = json.loads(Path(record["outputs"]["summary"]).read_text())["summary"] \
            if finished else None  # not scored: n/a
    print("\nTable 7 form: DSC / NSD (%) on the target's labelsEval")
    print(format_table7(summaries, organs=ORGANS, digits=1))
    print("\nWall time per step (s)")
    total = 0.0
    for step in run["steps"]:
        seconds = manifest.get(step, {}).get("wall_time_s", 0.0)
        total += seconds
        print(f"  {step:<26}{seconds:>10.1f}")
    print(f"  {'total':<26}{total:>10.1f}")
    print(f"\nreport: {pipeline_folder / 'report.md'}")


def machine_paths(data: Path, output: Path, env: dict[str, str]) -> dict[str, str]:
    """This machine's paths -> the names a filed run shows instead, longest first (a path inside another one is
    replaced before it)."""
    names = {str(Path(env[variable]).resolve()): f"${variable}" for variable in NNUNET_FOLDERS if env.get(variable)}
    names.update({str(output.resolve()): "$OUTPUT", str(data.resolve()): "$DATA"})
    return dict(sorted(names.items(), key=lambda item: -len(item[0])))


def without_machine_paths(text: str, paths: dict[str, str]) -> str:
    for path, name in paths.items():
        text = text.replace(path, name)
    return text


def file_run(pipeline_folder: Path, config_file: Path, experiment_folder: Path, paths: dict[str, str]) -> Path | None:
    """Copies the run's report, figures and config into ``runs/<next number>/`` of the experiment, this machine's
    paths replaced; None when the latest filed run has the same report (a rerun that found every step done)."""
    report = without_machine_paths((pipeline_folder / "report.md").read_text(), paths)
    runs = experiment_folder / "runs"
    numbers = [int(run.name) for run in runs.glob("*") if not is_hidden(run) and run.name.isdigit()]
    if numbers and (runs / str(max(numbers)) / "report.md").read_text() == report:
        return None
    target = runs / str(max(numbers, default=0) + 1)
    with folder_built_atomically(target) as staging:
        (staging / "report.md").write_text(report)
        (staging / CONFIG_NAME).write_text(without_machine_paths(config_file.read_text(), paths))
        if (pipeline_folder / "figures").is_dir():
            shutil.copytree(pipeline_folder / "figures", staging / "figures")
    return target


def print_headers() -> None:
    for name in experiment_names():
        print(header(name) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding {CT_DATASET} and {MRI_DATASET}. Default: {DEFAULT_DATA}")
    parser.add_argument("--output", type=Path, default=None,
                        help="output folder (nnU-Net folders unless nnUNet_* are set, results, logs). "
                             "Default: bench_output/ct2mr_real_<experiment>")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="Default: cpu")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, choices=experiment_names(), metavar="NAME",
                        help=f"a folder of bench/experiments (--list describes each). Default: {DEFAULT_EXPERIMENT}, "
                             f"the chain of the cpu recipe")
    parser.add_argument("--rows", nargs="+", metavar="ROW",
                        help="run only these of the experiment's rows (default: all of them). The same --output "
                             "later with more rows resumes: steps the rows share are not run again")
    parser.add_argument("--list", action="store_true", help="print every experiment's header and exit")
    parser.add_argument("--dry_run", action="store_true",
                        help="write the config, check it and the inputs, list the steps; train nothing")
    args = parser.parse_args()
    if args.list:
        print_headers()
        return
    try:
        rows = chosen_rows(load_recipe(args.experiment)["ablation"], args.rows)
    except ValueError as error:
        parser.error(str(error))
    if not real_data_present(args.data, args.experiment):
        return
    output = (args.output or REPO / "bench_output" / f"ct2mr_real_{args.experiment}").resolve()
    env = nnunet_environment(output)
    output.mkdir(parents=True, exist_ok=True)  # nnunet_environment makes it only when nnU-Net's folders are unset
    config_file = output / CONFIG_NAME
    config = {**bench_config(args.data.resolve(), output, args.device, args.experiment), "ablation": rows}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"ct2mr_real: experiment {args.experiment}, config {config_file}")
    command = ["nnUNetv2_uda_run", str(config_file)] + (["--check"] if args.dry_run else [])
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)
    if args.dry_run:
        return
    print_results(output / "pipeline", env)
    filed = file_run(output / "pipeline", config_file, EXPERIMENTS / args.experiment,
                     machine_paths(args.data, output, env))
    print(f"ct2mr_real: report filed in {filed.relative_to(REPO)}" if filed else
          "ct2mr_real: the report equals the latest filed run's; nothing filed")


if __name__ == "__main__":
    main()
