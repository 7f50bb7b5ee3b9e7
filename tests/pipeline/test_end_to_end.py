"""``nnUNetv2_uda_run`` end to end on tiny phantoms: every stage's artifacts, the report, kill-and-resume, a
changed setting, training on chosen organs and a second self-training round, all through the installed commands
with minimal budgets on the CPU."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from nnunetv2_uda.pipeline.datasets import OWNER_KEY, nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest

pytestmark = pytest.mark.slow

STEPS = ["plan", "translator_asit", "translate_asit", "train_asit", "pseudolabel_asit", "mdm", "selftrain_asit_mdm",
         "filter_asit_mdm", "final_asit_mdm", "predict_asit_mdm", "evaluate_asit_mdm_plf"]
KILL_AFTER = "pseudolabel_asit"
ROUND2_STEPS = ["pseudolabel_final_asit_mdm", "selftrain_asit_mdm_round2", "filter_asit_mdm_round2",
                "final_asit_mdm_round2", "predict_asit_mdm_round2", "evaluate_asit_mdm_plf2"]


def tiny_config(root: Path, final_epochs: int = 1) -> dict:
    mri = root / "inputs" / "Dataset992_PhantomMRI"
    return {
        "ct_dataset": str(root / "inputs" / "Dataset991_PhantomCT"),
        "mri_dataset": str(mri),
        "validation_labels": str(mri / "labelsEval"),
        "output_folder": str(root / "out"),
        "dataset_id_base": 700,
        "device": "cpu",
        "configuration": "2d",
        "trainer": "nnUNetTrainerUDAQuick",  # what the demo uses; the paper's trainer is tested on its own
        "target_spacing": [15.0, 8.0, 8.0],  # the tiny phantoms' own spacing: 48 x 48 slices
        "num_processes": 1,
        "num_parts": 2,
        "ablation": "asit_mdm_plf",
        "organs": ["spleen", "liver"],  # renumbered 1, 2 in every network (the other organs become background)
        "sequence_order": ["T2", "T1", "DWI"],
        "translator": {"iterations": 6, "batch_size": 2, "slice_size": 48},
        "source_training": {"epochs": 1, "iterations_per_epoch": 2},
        "self_training": {"epochs": 2, "iterations_per_epoch": 2, "num_snapshots": 2, "keep_fraction": 0.5},
        "final": {"epochs": final_epochs, "iterations_per_epoch": 2, "max_ct_cases": 2},
    }


def run_pipeline(config_file: Path, env: dict) -> str:
    result = subprocess.run(["nnUNetv2_uda_run", str(config_file)], env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def read_manifest(output_folder: Path, env: dict) -> dict[str, dict]:
    """The step records with their output paths resolved, as the pipeline reads them."""
    return Manifest(output_folder, roots=nnunet_folders(env)).stages


def status_lines(output: str) -> dict[str, str]:
    lines = {}
    for line in output.splitlines():
        if line.startswith("[nnUNetv2_uda_run] [") and "finished in" not in line:
            step, status = line.split("] ", 2)[2].split(": ", 1)
            lines[step] = status
    return lines


def final_network_is_usable_as_the_report_says(report: str, root: Path, env: dict, run_command) -> None:
    """nnU-Net's export of the network the report names, installed into fresh nnU-Net folders, segments new MRI with
    the report's nnUNetv2_predict_fast command as written (issue #24)."""
    assert "Dataset705_UDAFinalASITMDM" in report.split("## The final network")[1]
    export = re.search(r"`(nnUNetv2_export_model_to_zip [^`]+)`", report).group(1)
    run_command(shlex.split(export.replace("model.zip", str(root / "model.zip"))))
    elsewhere = {**env, "nnUNet_results": str(root / "elsewhere_results")}
    run_command(["nnUNetv2_install_pretrained_model_from_zip", root / "model.zip"], env=elsewhere)
    new_mri = root / "new_mri"
    new_mri.mkdir()
    case = sorted((root / "inputs" / "Dataset992_PhantomMRI" / "imagesTr").glob("*_0000.nii.gz"))[0]
    shutil.copy(case, new_mri / case.name)
    (predict,) = [line for line in report.splitlines() if line.startswith("nnUNetv2_predict_fast ")]
    run_command(shlex.split(predict.replace("NEW_MRI_FOLDER", str(new_mri))
                            .replace("SEGMENTATION_FOLDER", str(root / "segmented"))), env=elsewhere)
    assert (root / "segmented" / case.name.replace("_0000.nii.gz", ".nii.gz")).is_file()


def test_pipeline_end_to_end_with_kill_and_resume(nnunet_env, run_command, tmp_path):
    run_command(["nnUNetv2_uda_make_phantoms", tmp_path / "inputs", "--num_ct", 3, "--num_mri", 6, "--shape", 16,
                 48, 48, "--seed", 1])
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    manifest_file = tmp_path / "out" / "manifest.json"

    # 1. run, and kill the whole process group as soon as KILL_AFTER is recorded finished
    log = open(tmp_path / "first_run.log", "w")
    process = subprocess.Popen(["nnUNetv2_uda_run", str(config_file)], env=nnunet_env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 900
    finished_before_kill: list[str] = []
    while time.time() < deadline and process.poll() is None:
        if manifest_file.is_file():
            stages = json.loads(manifest_file.read_text())["stages"]
            if stages.get(KILL_AFTER, {}).get("finished"):
                finished_before_kill = [name for name, record in stages.items() if record["finished"]]
                os.killpg(process.pid, signal.SIGKILL)
                break
        time.sleep(0.5)
    process.wait()
    log.close()
    assert finished_before_kill, (tmp_path / "first_run.log").read_text()[-4000:]
    assert set(STEPS[:STEPS.index(KILL_AFTER) + 1]) <= set(finished_before_kill)

    # 2. rerun: nothing finished is redone, the rest runs to the end
    output = run_pipeline(config_file, nnunet_env)
    statuses = status_lines(output)
    for step in STEPS:
        expected = "skipped" if step in finished_before_kill else ("not run before", "resuming")
        assert statuses[step].startswith(expected), (step, statuses[step])
    manifest = read_manifest(tmp_path / "out", nnunet_env)
    assert all(manifest[step]["finished"] for step in STEPS)

    # every stage's artifacts, in nnU-Net's folders and the output folder
    raw, results = Path(nnunet_env["nnUNet_raw"]), Path(nnunet_env["nnUNet_results"])
    fake = raw / "Dataset701_UDAFakeMRIASIT"
    assert len(list((fake / "imagesTr").glob("*_0000.nii.gz"))) == 3 and (fake / "translation_panel.png").is_file()
    assert (results / "Dataset701_UDAFakeMRIASIT").is_dir()
    assert len(list((tmp_path / "out" / "pseudolabels" / "asit").glob("*.nii.gz"))) == 6
    assert (tmp_path / "out" / "mdm" / "mdm_matches.csv").is_file()
    snapshots = Path(manifest["selftrain_asit_mdm"]["outputs"]["snapshots"])
    assert len(list(snapshots.glob("epoch_*"))) == 2
    filtered = raw / "Dataset704_UDAFilteredASITMDM"
    kept = manifest["filter_asit_mdm"]["outputs"]["kept_cases"]
    assert len(kept) == 3 and (filtered / "uncertainty_histogram.png").is_file()
    final = raw / "Dataset705_UDAFinalASITMDM"
    assert sorted(p.name for p in (final / "labelsTr").iterdir()) == sorted(
        [f"{c}.nii.gz" for c in kept] + ["ct_PhantomCT_0000.nii.gz", "ct_PhantomCT_0001.nii.gz"])
    assert Path(manifest["final_asit_mdm"]["outputs"]["checkpoint"]).is_file()
    chosen = {"background": 0, "liver": 1, "spleen": 2}
    for dataset in ("Dataset700_UDASourceCT", "Dataset701_UDAFakeMRIASIT", "Dataset705_UDAFinalASITMDM"):
        assert json.loads((raw / dataset / "dataset.json").read_text())["labels"] == chosen, dataset
    for label_file in [*(fake / "labelsTr").iterdir(), final / "labelsTr" / "ct_PhantomCT_0000.nii.gz"]:
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label_file)))).tolist())
        assert values == {0, 1, 2}, (label_file, values)
    assert json.loads((tmp_path / "out" / "pseudolabels" / "asit" / "dataset.json").read_text())["labels"] == chosen
    owner = {"output_folder": str((tmp_path / "out").resolve()),
             "run_id": json.loads(manifest_file.read_text())["run_id"]}
    for dataset in ("Dataset700_UDASourceCT", "Dataset701_UDAFakeMRIASIT", "Dataset703_UDASelfTrainASITMDM",
                    "Dataset704_UDAFilteredASITMDM", "Dataset705_UDAFinalASITMDM"):  # every dataset names its run
        assert json.loads((raw / dataset / "dataset.json").read_text())[OWNER_KEY] == owner, dataset
    for warm_started in ("selftrain_asit_mdm", "final_asit_mdm"):  # nnU-Net's -pretrained_weights drops the heads
        log_text = (tmp_path / "out" / "logs" / f"{warm_started}.log").read_text()
        assert "-pretrained_weights" in log_text and "segmentation head weights loaded from" in log_text
    assert "segmentation head weights loaded" not in (tmp_path / "out" / "logs" / "train_asit.log").read_text()
    assert len(list((tmp_path / "out" / "predictions" / "asit_mdm" / "validation").glob("*.nii.gz"))) == 6
    summary = json.loads((tmp_path / "out" / "evaluation" / "asit_mdm_plf" / "summary.json").read_text())
    assert summary["num_cases"] == 6 and {"liver", "spleen", "stomach"} <= set(summary["organs"])  # paired by name
    report = (tmp_path / "out" / "report.md").read_text()
    for expected in ("Table 7 form", "Table 5 form", "uncertainty", "translation_panel.png", "Wall time",
                     "ASIT + MDM + PLF"):
        assert expected in report, expected
    for link in [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (tmp_path / "out" / link).is_file(), link
    final_network_is_usable_as_the_report_says(report, tmp_path, nnunet_env, run_command)

    # 3. a changed setting reruns its step and those after it, and says so: first --check, which records nothing
    config_file.write_text(yaml.safe_dump(tiny_config(tmp_path, final_epochs=2)))
    first_changed = STEPS.index("final_asit_mdm")
    manifest_before = manifest_file.read_text()
    check = subprocess.run(["nnUNetv2_uda_run", str(config_file), "--check"], env=nnunet_env, capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    planned = dict(line.strip().split(": ", 1) for line in check.stdout.splitlines() if line.startswith("  "))
    assert all(planned[step].startswith("skip") for step in STEPS[:first_changed]), planned
    assert planned["final_asit_mdm"].startswith("run: settings changed (final)")
    assert all(planned[step].startswith("run: its inputs or an earlier step changed") for step in
               STEPS[first_changed + 1:]), planned
    assert manifest_file.read_text() == manifest_before
    statuses = status_lines(run_pipeline(config_file, nnunet_env))
    assert all(statuses[step].startswith("skipped") for step in STEPS[:first_changed])
    assert statuses["final_asit_mdm"].startswith("settings changed (final)")
    assert all("changed" in statuses[step] for step in STEPS[first_changed + 1:])

    # 4. a second self-training round added as a row: every step above is kept, the new round starts from the first
    # round's final network (its pseudo-labels and its weights)
    config = tiny_config(tmp_path, final_epochs=2)
    config["ablation"] = ["asit_mdm_plf", "asit_mdm_plf2"]
    config_file.write_text(yaml.safe_dump(config))
    statuses = status_lines(run_pipeline(config_file, nnunet_env))
    assert all(statuses[step].startswith("skipped") for step in STEPS), statuses
    assert all(statuses[step].startswith("not run before") for step in ROUND2_STEPS), statuses
    manifest = read_manifest(tmp_path / "out", nnunet_env)
    relabelled = tmp_path / "out" / "pseudolabels" / "final_asit_mdm"
    assert len(list(relabelled.glob("*.nii.gz"))) == 6
    selftrain_log = (tmp_path / "out" / "logs" / "selftrain_asit_mdm_round2.log").read_text()
    assert manifest["final_asit_mdm"]["outputs"]["checkpoint"] in selftrain_log
    assert (raw / "Dataset715_UDASelfTrainASITMDMRound2" / "dataset.json").is_file()
    assert len(manifest["filter_asit_mdm_round2"]["outputs"]["kept_cases"]) == 3
    assert (raw / "Dataset717_UDAFinalASITMDMRound2" / "dataset.json").is_file()
    summary = json.loads((tmp_path / "out" / "evaluation" / "asit_mdm_plf2" / "summary.json").read_text())
    assert summary["num_cases"] == 6
    assert "ASIT + MDM + PLF x2" in (tmp_path / "out" / "report.md").read_text()


def test_missing_nnunet_folder_variable_is_named(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(tiny_config(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_results"}
    result = subprocess.run([sys.executable, "-c", "from nnunetv2_uda.pipeline.cli import run_entry; run_entry()",
                             str(config_file)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nnUNet_results" in result.stderr

