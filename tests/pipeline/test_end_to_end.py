"""``nnUNetv2_uda_run`` end to end on tiny phantoms: every stage's artifacts, the report, kill-and-resume, a
changed setting, training on chosen organs and a second self-training round, all through the installed commands
with minimal budgets on the CPU.

One run of the module (a fixture: killed after a step, then rerun) is read by separate tests, so the first failure
does not hide the rest; a second fixture builds on it: the config changed (a setting, and a second round added as a
row), checked with ``--check`` and run again."""

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from nnunetv2_uda.pipeline.datasets import OWNER_KEY, nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.training.cpu_precision import cpu_has_native_bf16

pytestmark = pytest.mark.slow

STEPS = ["plan", "translator_asit", "translate_asit", "train_asit", "pseudolabel_asit", "mdm_asit",
         "selftrain_asit_mdm", "filter_asit_mdm", "final_asit_mdm", "predict_asit_mdm", "evaluate_asit_mdm_plf"]
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
        "cpu_bf16": True,  # bfloat16 autocast where this CPU has bfloat16 units, float32 elsewhere
        "configuration": "2d",
        "trainer": "nnUNetTrainerUDAQuick",  # what the demo uses; the paper's trainer is tested on its own
        "target_spacing": [15.0, 8.0, 8.0],  # the tiny phantoms' own spacing: 48 x 48 slices
        "num_processes": 1,
        "num_parts": 1,  # parts on Dask: pipeline/test_cluster.py and test_reliability.py
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


@dataclass(frozen=True)
class Run:
    """The module's pipeline run: killed after KILL_AFTER, then rerun to the end."""

    root: Path
    env: dict[str, str]
    finished_before_kill: list[str]
    resumed_statuses: dict[str, str]

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def raw(self) -> Path:
        return Path(self.env["nnUNet_raw"])

    @property
    def config_file(self) -> Path:
        return self.root / "run.yaml"

    def manifest(self) -> dict[str, dict]:
        return read_manifest(self.out, self.env)


@pytest.fixture(scope="module")
def run(nnunet_env, run_command, tmp_path_factory) -> Run:
    """Phantoms; a run whose whole process group is killed as soon as KILL_AFTER is recorded finished; a rerun."""
    root = tmp_path_factory.mktemp("end_to_end")
    run_command(["nnUNetv2_uda_make_phantoms", root / "inputs", "--num_ct", 3, "--num_mri", 6, "--shape", 16,
                 48, 48, "--seed", 1])
    config_file = root / "run.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(root)))
    manifest_file = root / "out" / "manifest.json"
    with open(root / "first_run.log", "w") as log:
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
    assert finished_before_kill, (root / "first_run.log").read_text()[-4000:]
    return Run(root, nnunet_env, finished_before_kill, status_lines(run_pipeline(config_file, nnunet_env)))


def test_a_killed_run_resumes_without_redoing_finished_steps(run):
    assert set(STEPS[:STEPS.index(KILL_AFTER) + 1]) <= set(run.finished_before_kill)
    for step in STEPS:
        expected = "skipped" if step in run.finished_before_kill else ("not run before", "resuming")
        assert run.resumed_statuses[step].startswith(expected), (step, run.resumed_statuses[step])
    manifest = run.manifest()
    assert all(manifest[step]["finished"] for step in STEPS)


def test_every_stage_leaves_its_artifacts(run):
    manifest = run.manifest()
    fake = run.raw / "Dataset701_UDAFakeMRIASIT"
    assert len(list((fake / "imagesTr").glob("*_0000.nii.gz"))) == 3 and (fake / "translation_panel.png").is_file()
    assert (Path(run.env["nnUNet_results"]) / "Dataset701_UDAFakeMRIASIT").is_dir()
    assert len(list((run.out / "pseudolabels" / "asit").glob("*.nii.gz"))) == 6
    assert (run.out / "mdm_asit" / "mdm_matches.csv").is_file()
    snapshots = Path(manifest["selftrain_asit_mdm"]["outputs"]["snapshots"])
    assert len(list(snapshots.glob("epoch_*"))) == 2
    filtered = run.raw / "Dataset704_UDAFilteredASITMDM"
    kept = manifest["filter_asit_mdm"]["outputs"]["kept_cases"]
    assert len(kept) == 3 and (filtered / "uncertainty_histogram.png").is_file()
    final = run.raw / "Dataset705_UDAFinalASITMDM"
    assert sorted(p.name for p in (final / "labelsTr").iterdir()) == sorted(
        [f"{c}.nii.gz" for c in kept] + ["ct_PhantomCT_0000.nii.gz", "ct_PhantomCT_0001.nii.gz"])
    assert Path(manifest["final_asit_mdm"]["outputs"]["checkpoint"]).is_file()
    assert len(list((run.out / "predictions" / "asit_mdm" / "validation").glob("*.nii.gz"))) == 6
    summary = json.loads((run.out / "evaluation" / "asit_mdm_plf" / "summary.json").read_text())
    assert summary["num_cases"] == 6 and {"liver", "spleen", "stomach"} <= set(summary["organs"])  # paired by name


def test_every_network_trains_on_the_chosen_organs_renumbered(run):
    chosen = {"background": 0, "liver": 1, "spleen": 2}
    for dataset in ("Dataset700_UDASourceCT", "Dataset701_UDAFakeMRIASIT", "Dataset705_UDAFinalASITMDM"):
        assert json.loads((run.raw / dataset / "dataset.json").read_text())["labels"] == chosen, dataset
    fake, final = run.raw / "Dataset701_UDAFakeMRIASIT", run.raw / "Dataset705_UDAFinalASITMDM"
    for label_file in [*(fake / "labelsTr").iterdir(), final / "labelsTr" / "ct_PhantomCT_0000.nii.gz"]:
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label_file)))).tolist())
        assert values == {0, 1, 2}, (label_file, values)
    assert json.loads((run.out / "pseudolabels" / "asit" / "dataset.json").read_text())["labels"] == chosen


def test_every_dataset_names_its_run(run):
    owner = {"output_folder": str(run.out.resolve()),
             "run_id": json.loads((run.out / "manifest.json").read_text())["run_id"]}
    for dataset in ("Dataset700_UDASourceCT", "Dataset701_UDAFakeMRIASIT", "Dataset703_UDASelfTrainASITMDM",
                    "Dataset704_UDAFilteredASITMDM", "Dataset705_UDAFinalASITMDM"):
        assert json.loads((run.raw / dataset / "dataset.json").read_text())[OWNER_KEY] == owner, dataset


def test_warm_starts_go_through_nnunets_pretrained_weights(run):
    for warm_started in ("selftrain_asit_mdm", "final_asit_mdm"):  # nnU-Net's -pretrained_weights drops the heads
        log_text = (run.out / "logs" / f"{warm_started}.log").read_text()
        assert "-pretrained_weights" in log_text and "segmentation head weights loaded from" in log_text
    assert "segmentation head weights loaded" not in (run.out / "logs" / "train_asit.log").read_text()


def test_every_network_trains_in_the_chosen_precision(run):
    expected = cpu_has_native_bf16()  # cpu_bf16: true
    for step in ("train_asit", "selftrain_asit_mdm", "final_asit_mdm"):
        log_text = (run.out / "logs" / f"{step}.log").read_text()
        assert ("training under bfloat16 autocast" in log_text) == expected, step


def test_report_holds_the_tables_and_its_figures(run):
    report = (run.out / "report.md").read_text()
    for expected in ("Table 7 form", "Table 5 form", "uncertainty", "translation_panel.png", "Wall time",
                     "ASIT + MDM + PLF", "| Method | DWI (2 cases) | T1 (2 cases) | T2 (2 cases) |",
                     "mdm_asit_0_mdm_matches.png"):
        assert expected in report, expected
    for link in [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (run.out / link).is_file(), link


def test_final_network_is_usable_elsewhere_as_the_report_says(run, run_command):
    """nnU-Net's export of the network the report names, installed into fresh nnU-Net folders, segments new MRI with
    the report's nnUNetv2_predict_fast command as written (issue #24)."""
    report = (run.out / "report.md").read_text()
    assert "Dataset705_UDAFinalASITMDM" in report.split("## The final network")[1]
    export = re.search(r"`(nnUNetv2_export_model_to_zip [^`]+)`", report).group(1)
    run_command(shlex.split(export.replace("model.zip", str(run.root / "model.zip"))))
    elsewhere = {**run.env, "nnUNet_results": str(run.root / "elsewhere_results")}
    run_command(["nnUNetv2_install_pretrained_model_from_zip", run.root / "model.zip"], env=elsewhere)
    new_mri = run.root / "new_mri"
    new_mri.mkdir()
    case = sorted((run.root / "inputs" / "Dataset992_PhantomMRI" / "imagesTr").glob("*_0000.nii.gz"))[0]
    shutil.copy(case, new_mri / case.name)
    (predict,) = [line for line in report.splitlines() if line.startswith("nnUNetv2_predict_fast ")]
    run_command(shlex.split(predict.replace("NEW_MRI_FOLDER", str(new_mri))
                            .replace("SEGMENTATION_FOLDER", str(run.root / "segmented"))), env=elsewhere)
    assert (run.root / "segmented" / case.name.replace("_0000.nii.gz", ".nii.gz")).is_file()


FIRST_CHANGED = STEPS.index("final_asit_mdm")  # the step whose settings the changed config changes


@pytest.fixture(scope="module")
def rerun(run) -> tuple[str, bool, dict[str, str]]:
    """The run's config with more final epochs and a second self-training round added as a row: ``--check``'s
    output, whether manifest.json stayed as it was, and the statuses of the rerun."""
    config = tiny_config(run.root, final_epochs=2)
    config["ablation"] = ["asit_mdm_plf", "asit_mdm_plf2"]
    run.config_file.write_text(yaml.safe_dump(config))
    manifest_file = run.out / "manifest.json"
    manifest_before = manifest_file.read_text()
    check = subprocess.run(["nnUNetv2_uda_run", str(run.config_file), "--check"], env=run.env, capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest_after_check = manifest_file.read_text()
    return check.stdout, manifest_before == manifest_after_check, status_lines(run_pipeline(run.config_file, run.env))


def test_check_says_what_a_changed_config_reruns_and_records_nothing(rerun):
    check_output, manifest_unchanged, _ = rerun
    planned = dict(line.strip().split(": ", 1) for line in check_output.splitlines() if line.startswith("  "))
    assert all(planned[step].startswith("skip") for step in STEPS[:FIRST_CHANGED]), planned
    assert planned["final_asit_mdm"].startswith("run: settings changed (final)")
    assert all(planned[step].startswith("run: its inputs or an earlier step changed") for step in
               STEPS[FIRST_CHANGED + 1:]), planned
    assert all(planned[step].startswith("run: not run before") for step in ROUND2_STEPS), planned
    assert manifest_unchanged


def test_a_changed_setting_reruns_its_step_and_those_after_it(rerun):
    statuses = rerun[2]
    assert all(statuses[step].startswith("skipped") for step in STEPS[:FIRST_CHANGED])
    assert statuses["final_asit_mdm"].startswith("settings changed (final)")
    assert all("changed" in statuses[step] for step in STEPS[FIRST_CHANGED + 1:])


def test_a_new_row_adds_its_own_steps(rerun):
    statuses = rerun[2]
    assert all(statuses[step].startswith("not run before") for step in ROUND2_STEPS), statuses


def test_the_second_round_starts_from_the_first_rounds_final_network(run, rerun):
    manifest = run.manifest()
    relabelled = run.out / "pseudolabels" / "final_asit_mdm"
    assert len(list(relabelled.glob("*.nii.gz"))) == 6
    selftrain_log = (run.out / "logs" / "selftrain_asit_mdm_round2.log").read_text()
    assert manifest["final_asit_mdm"]["outputs"]["checkpoint"] in selftrain_log
    assert (run.raw / "Dataset715_UDASelfTrainASITMDMRound2" / "dataset.json").is_file()
    assert len(manifest["filter_asit_mdm_round2"]["outputs"]["kept_cases"]) == 3
    assert (run.raw / "Dataset717_UDAFinalASITMDMRound2" / "dataset.json").is_file()
    summary = json.loads((run.out / "evaluation" / "asit_mdm_plf2" / "summary.json").read_text())
    assert summary["num_cases"] == 6
    assert "ASIT + MDM + PLF x2" in (run.out / "report.md").read_text()


def test_missing_nnunet_folder_variable_is_named(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(tiny_config(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_results"}
    result = subprocess.run([sys.executable, "-c", "from nnunetv2_uda.pipeline.cli import run_entry; run_entry()",
                             str(config_file)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nnUNet_results" in result.stderr

