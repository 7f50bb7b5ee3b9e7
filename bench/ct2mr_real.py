"""Real-data benchmark: BTCV CT -> CHAOS T2 MRI through ``nnUNetv2_uda_run``, on the CPU, in at most 90 minutes.

Not run in CI (it needs ../shared/data and takes up to 90 minutes on 2 cores); without the data it says so and exits.

    python3 bench/ct2mr_real.py                      # run, print the Table 7 form, write the report
    python3 bench/ct2mr_real.py --dry_run            # write the config, check it and the inputs, list the steps

Every setting below is fixed by the rules in docs/pipeline.md ("Real-data benchmark") before any score is seen;
labelsEval is given to the pipeline as ``validation_labels``, which only its ``evaluate_*`` steps read
(``nnUNetv2_uda_evaluate``). CHAOS T2 has one sequence, so the pipeline leaves MDM out and says so: the rows are
only CT, CycleGAN, ASIT and ASIT + PLF.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml
from real_data import CT_DATASET, MRI_DATASET, ORGANS, REPO, add_common_arguments, nnunet_environment, real_data_present

from nnunetv2_uda.pipeline.config import ROW_TITLES
from nnunetv2_uda.pipeline.datasets import nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest

ROWS = ["only_ct", "cyclegan", "asit", "asit_mdm_plf"]

# The CPU budget (2 cores): 2d at 2.5 mm plans 160 x 160 patches with batch 16, measured at ~2 s per training
# iteration here with the per-epoch validation included (an epoch of 100 iterations ~ 200 s), with the
# short-schedule trainer nnUNetTrainerUDAQuick (docs/training.md). Iterations: CT 600, CycleGAN/ASIT 200 each
# warm-started from the CT network, self-training 300 and the final network 200 warm-started from the previous
# stage: 15 epochs ~ 50 min, no end-of-training validation, 2 x 1000 translator iterations, translation,
# planning/preprocessing, prediction and scoring: ~ 65 min estimated, 82.8 min measured in one uninterrupted run.
# docs/pipeline.md has the derivation.
BUDGET = {
    "configuration": "2d",
    "trainer": "nnUNetTrainerUDAQuick",
    "target_spacing": [5.0, 2.5, 2.5],
    "batch_size": 16,
    "translator": {"iterations": 1000, "batch_size": 4, "extra_args": ["--slice_size", "128",
                                                                       "--inplane_spacing", "2.5"]},
    "ct_training": {"epochs": 6, "iterations_per_epoch": 100},
    "source_training": {"epochs": 2, "iterations_per_epoch": 100},
    "self_training": {"epochs": 3, "iterations_per_epoch": 100, "num_snapshots": 3, "keep_fraction": 0.5},
    "final": {"epochs": 2, "iterations_per_epoch": 100, "max_mri_cases": 300, "max_ct_cases": 2, "ct_source": "ct"},
    "source_warm_start": True,
    "warm_start": True,
}


# each setting's rules, written before its run, are in docs/pipeline.md under the section named beside it; what
# it runs is in SETTING_HELP
SETTINGS = {
    "paper": {"ablation": ROWS, "dataset_id_base": 810},  # "Real-data benchmark"; BUDGET's trainer
    "gin": {"ablation": ["only_ct", "only_ct_plf"], "trainer": "nnUNetTrainerUDAQuickGIN",
            "dataset_id_base": 830},  # "Extra rows: GIN, then self-training"
    "unet": {"ablation": ROWS, "dataset_id_base": 810,  # "Rows with the U-Net translator"
             "translator": {**BUDGET["translator"],
                            "extra_args": [*BUDGET["translator"]["extra_args"], "--generator", "unet"]}},
}
# "Warm starts that keep the segmentation heads"
SETTINGS["unet_ct_plf"] = {**SETTINGS["unet"], "ablation": [*ROWS, "only_ct_plf"]}
# "Rows on the four evaluated organs"
SETTINGS["organs4"] = {**SETTINGS["unet"], "ablation": ["only_ct", "cyclegan", "only_ct_plf"],
                       "organs": list(ORGANS), "dataset_id_base": 850}
# "CycleGAN + PLF on the four evaluated organs"
SETTINGS["organs4_plf"] = {**SETTINGS["organs4"], "ablation": [*SETTINGS["organs4"]["ablation"], "cyclegan_plf"]}
# "A second self-training round on the four evaluated organs"
SETTINGS["organs4_plf2"] = {**SETTINGS["organs4_plf"],
                            "ablation": [*SETTINGS["organs4_plf"]["ablation"], "cyclegan_plf2"]}
# "ASIT rows on the four evaluated organs"
SETTINGS["organs4_asit"] = {**SETTINGS["organs4_plf2"],
                            "ablation": [*SETTINGS["organs4_plf2"]["ablation"], "asit", "asit_mdm_plf"]}
# "A repeat of the best chain on the four evaluated organs"
SETTINGS["organs4_repeat"] = {**SETTINGS["organs4"], "ablation": ["only_ct", "cyclegan", "cyclegan_plf"]}
# "A longer translator and CycleGAN network on the four evaluated organs"
SETTINGS["organs4_long"] = {**SETTINGS["organs4_repeat"],
                            "translator": {**SETTINGS["organs4"]["translator"], "iterations": 2000},
                            "source_training": {"epochs": 4, "iterations_per_epoch": 100}}
# "GIN on the four evaluated organs at the reference machine's budget"
SETTINGS["organs4_gin"] = {**SETTINGS["organs4"], "ablation": ["only_ct", "only_ct_plf"],
                           "trainer": "nnUNetTrainerUDAQuickGIN", "dataset_id_base": 900,
                           "ct_training": {"epochs": 20, "iterations_per_epoch": 100},
                           "self_training": {**BUDGET["self_training"], "epochs": 9},
                           "final": {**BUDGET["final"], "epochs": 6}}
# "The same budget without GIN"
SETTINGS["organs4_x3"] = {**SETTINGS["organs4_gin"], "trainer": BUDGET["trainer"], "dataset_id_base": 930}
# "A second self-training round after the three-times-longer runs"
SETTINGS.update({f"{base}_plf2": {**SETTINGS[base], "ablation": [*SETTINGS[base]["ablation"], "only_ct_plf2"]}
                 for base in ("organs4_gin", "organs4_x3")})
# "The largest component of each organ"
SETTINGS["organs4_gin_lcc"] = {**SETTINGS["organs4_gin"], "largest_component": True, "dataset_id_base": 960}
# "Training without mirroring"
SETTINGS["organs4_gin_lcc_nomirror"] = {**SETTINGS["organs4_gin_lcc"], "trainer": "nnUNetTrainerUDAQuickGINNoMirroring",
                                        "dataset_id_base": 780}
# "Training without mirroring on thirteen organs"
SETTINGS["organs13_gin_lcc_nomirror"] = {**{key: value for key, value in SETTINGS["organs4_gin_lcc_nomirror"].items()
                                            if key != "organs"}, "dataset_id_base": 740}
# "ASIT rows without mirroring, with and without the anatomy-consistency term"
SETTINGS["organs13_gin_lcc_nomirror_asit"] = {**SETTINGS["organs13_gin_lcc_nomirror"],
                                              "ablation": [*SETTINGS["organs13_gin_lcc_nomirror"]["ablation"], "asit"]}
SETTINGS["organs13_gin_lcc_nomirror_asit_anatomy"] = {
    **SETTINGS["organs13_gin_lcc_nomirror_asit"],
    "translator": {**SETTINGS["organs13_gin_lcc_nomirror"]["translator"],
                   "extra_args": [*SETTINGS["organs13_gin_lcc_nomirror"]["translator"]["extra_args"],
                                  "--lambda_anatomy", "5"]}}
# "The paper's Table 7 rows without mirroring"
SETTINGS["organs13_gin_lcc_nomirror_table7"] = {**SETTINGS["organs13_gin_lcc_nomirror_asit"],
                                                "ablation": ["only_ct", "only_ct_plf", "cyclegan", "asit"]}
SETTINGS["organs13_gin_lcc_nomirror_table7_plf"] = {
    **SETTINGS["organs13_gin_lcc_nomirror_table7"],
    "ablation": [*SETTINGS["organs13_gin_lcc_nomirror_table7"]["ablation"], "asit_mdm_plf"]}
# "Both PLF rows on thirteen organs"
SETTINGS["unet_plf"] = {**SETTINGS["unet"], "ablation": SETTINGS["organs4_plf"]["ablation"], "dataset_id_base": 870}

SETTING_HELP = {
    "paper": "the Table 7 rows (only CT, CycleGAN, ASIT, ASIT + PLF)",
    "gin": "only CT and only CT + PLF, every network trained with random intensity networks "
           "(nnUNetTrainerUDAQuickGIN)",
    "unet": "the paper rows with U-Net translator generators (same dataset ids: --output of a paper run made by "
            "this version reuses its CT network)",
    "unet_ct_plf": "unet plus the row only CT + PLF (--output of a unet run reuses its CT network and translators)",
    "organs4": "only CT, CycleGAN (U-Net generator) and only CT + PLF, every network trained on the four evaluated "
               "organs only (the 'organs' key)",
    "organs4_plf": "organs4 plus CycleGAN + PLF (--output of an organs4 run reuses its networks)",
    "organs4_plf2": "organs4_plf plus a second self-training round from the CycleGAN + PLF final network (--output "
                    "of an organs4_plf run runs only the new round)",
    "unet_plf": "the rows of organs4_plf on all thirteen organs",
    "organs4_asit": "organs4_plf2 plus ASIT and ASIT + PLF, the paper's Table 7 on the four organs (--output of an "
                    "organs4_plf2 run runs only the ASIT rows)",
    "organs4_long": "only CT, CycleGAN and CycleGAN + PLF on the four organs with the 90 minutes' spare time spent on "
                    "the translator (2000 iterations) and the CycleGAN network (400); --output of a copy of an "
                    "organs4 run reuses its CT network",
    "organs4_repeat": "only CT, CycleGAN and CycleGAN + PLF at the organs4 budget (the chain of the best row; 24 "
                      "minutes measured at 0.77 s per training iteration); into a fresh --output it measures the "
                      "run-to-run spread",
    "organs4_gin": "only CT and only CT + PLF on the four organs, every network trained with random intensity "
                   "networks (nnUNetTrainerUDAQuickGIN) and three times longer (CT network 2000 iterations, "
                   "self-training 900, final network 600; 43 minutes measured at 0.77 s per training iteration)",
    "organs4_x3": "organs4_gin without random intensity networks (nnUNetTrainerUDAQuick), its control: which part "
                  "of a difference to organs4 is the longer training",
    "organs4_gin_plf2": "organs4_gin plus a second self-training round from the only CT + PLF final network, with "
                        "the first round's settings (--output of an organs4_gin run runs only the new round)",
    "organs4_x3_plf2": "organs4_x3 plus the same second round (--output of an organs4_x3 run runs only the new round)",
    "organs4_gin_lcc": "organs4_gin with the largest component of each organ kept in the pseudo-labels self-training "
                       "starts from, the filtered pseudo-labels and the predictions ('largest_component' key)",
    "organs4_gin_lcc_nomirror": "organs4_gin_lcc trained without mirroring augmentation "
                                "(nnUNetTrainerUDAQuickGINNoMirroring): kidneys told apart by where they lie",
    "organs13_gin_lcc_nomirror": "organs4_gin_lcc_nomirror on all thirteen organs (no 'organs' key): the "
                                 "thirteen-organ row beside the four-organ one",
    "organs13_gin_lcc_nomirror_asit": "organs13_gin_lcc_nomirror plus the ASIT row (U-Net generator, the paper's "
                                      "objective; --output of a copy of an organs13_gin_lcc_nomirror run reuses its "
                                      "CT network)",
    "organs13_gin_lcc_nomirror_asit_anatomy": "organs13_gin_lcc_nomirror_asit with the translator's "
                                              "anatomy-consistency term (--lambda_anatomy 5, not in the paper)",
    "organs13_gin_lcc_nomirror_table7": "organs13_gin_lcc_nomirror_asit plus the CycleGAN row (--output of a copy of "
                                        "an organs13_gin_lcc_nomirror_asit run runs only the CycleGAN steps)",
    "organs13_gin_lcc_nomirror_table7_plf": "organs13_gin_lcc_nomirror_table7 plus ASIT + PLF (one MRI sequence, so "
                                            "no MDM): self-training from the ASIT network's pseudo-labels",
}


def bench_config(data: Path, output: Path, device: str, setting: str = "paper") -> dict:
    mri = data / MRI_DATASET
    return {
        "ct_dataset": str(data / CT_DATASET),
        "mri_dataset": str(mri),
        "validation_labels": str(mri / "labelsEval"),
        "output_folder": str(output / "pipeline"),
        "device": device,
        "num_processes": 2,
        "mri_default_sequence": "T2",
        "sequence_order": ["T2"],  # one sequence: nothing for MDM to rank (the ASIT network takes no snapshots)
        **BUDGET,
        **SETTINGS[setting],
    }


def print_results(pipeline_folder: Path, env: dict[str, str]) -> None:
    """Table 7 form (DSC / NSD per organ, %) from the pipeline's evaluate steps, and every step's wall time."""
    manifest = Manifest(pipeline_folder, roots=nnunet_folders(env)).stages
    run = json.loads((pipeline_folder / "run.json").read_text())
    header = f"{'Method':<20}" + "".join(f"{organ:>22}" for organ in (*ORGANS, "mean"))
    print("\nTable 7 form: DSC / NSD (%) on CHAOS T2 labelsEval")
    print(header)
    print("-" * len(header))
    for row in run["rows"]:
        record = manifest.get(f"evaluate_{row}")
        if not record or not record.get("finished"):
            print(f"{ROW_TITLES.get(row, row):<20} (not scored)")
            continue
        summary = json.loads(Path(record["outputs"]["summary"]).read_text())["summary"]
        cells = []
        for organ in (*ORGANS, "mean"):
            if organ in summary:
                cells.append(f"{100 * summary[organ]['DSC']['mean']:.1f} / {100 * summary[organ]['NSD']['mean']:.1f}")
            else:
                cells.append("n/a")
        print(f"{ROW_TITLES.get(row, row):<20}" + "".join(f"{cell:>22}" for cell in cells))
    print("\nWall time per step (s)")
    total = 0.0
    for step in run["steps"]:
        seconds = manifest.get(step, {}).get("wall_time_s", 0.0)
        total += seconds
        print(f"  {step:<26}{seconds:>10.1f}")
    print(f"  {'total':<26}{total:>10.1f}")
    print(f"\nreport: {pipeline_folder / 'report.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "ct2mr_real[_gin]")
    parser.add_argument("--setting", default="paper", choices=sorted(SETTINGS),
                        help="; ".join(f"{name}: {text}" for name, text in SETTING_HELP.items())
                             + ". Every setting has the same budget. Default: paper")
    parser.add_argument("--dry_run", action="store_true",
                        help="write the config, check it and the inputs, list the steps; train nothing")
    args = parser.parse_args()
    if not real_data_present(args.data, "ct2mr_real"):
        return
    default_output = "ct2mr_real" if args.setting == "paper" else f"ct2mr_real_{args.setting}"
    output = (args.output or REPO / "bench_output" / default_output).resolve()
    env = nnunet_environment(output)
    output.mkdir(parents=True, exist_ok=True)  # nnunet_environment makes it only when nnU-Net's folders are unset
    config_file = output / "ct2mr_real.yaml"
    config = bench_config(args.data.resolve(), output, args.device, args.setting)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"ct2mr_real: config {config_file}")
    command = ["nnUNetv2_uda_run", str(config_file)] + (["--check"] if args.dry_run else [])
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)
    if not args.dry_run:
        print_results(output / "pipeline", env)


if __name__ == "__main__":
    main()
