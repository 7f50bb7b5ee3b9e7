"""The pipeline's machinery without training: config checking, manifest, dataset assembly, step planning, report."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from commands import run_in_process
from pseudolabels.test_matching import organ_map, write_case

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.flare_labels import FLARE_LABELS
from nnunetv2_uda.images import ImageFileError
from nnunetv2_uda.output_folders import OutputFolderError
from nnunetv2_uda.pipeline.commands import StageCommandError, run_logged
from nnunetv2_uda.pipeline.config import ConfigError, check_inputs, config_from_dict
from nnunetv2_uda.pipeline.datasets import (
    DATASET_ROLES,
    ID_SPAN,
    OWNER_KEY,
    DatasetOwnershipError,
    PipelineInputError,
    check_datasets_owned,
    check_label_names,
    dataset_name,
    labeled_cases,
    link_or_copy,
    mri_sequences,
    nnunet_folders,
    reserve_dataset_ids,
    run_owner,
    select_organs,
    write_raw_dataset,
)
from nnunetv2_uda.pipeline.graph import Context
from nnunetv2_uda.pipeline.manifest import (
    FINGERPRINT_BLOCK_BYTES,
    SCHEMA_VERSION,
    Manifest,
    ManifestError,
    file_fingerprint,
    folder_fingerprint,
)
from nnunetv2_uda.pipeline.nnunet_commands import parts_folder
from nnunetv2_uda.pipeline.recipes import run_config
from nnunetv2_uda.pipeline.report import table7
from nnunetv2_uda.pipeline.runner import plan_run, prepare, rerun_reason
from nnunetv2_uda.pipeline.steps import build_steps, row_plan


def minimal(tmp_path: Path, **overrides) -> dict:
    return {"ct_dataset": str(tmp_path / "ct"), "mri_dataset": str(tmp_path / "mri"),
            "output_folder": str(tmp_path / "out"), **overrides}


def write_dataset(folder: Path, labels: dict, cases: list[str], with_labels: bool = True,
                  sequences: dict[str, str] | None = None) -> Path:
    (folder / "imagesTr").mkdir(parents=True)
    for case in cases:
        (folder / "imagesTr" / f"{case}_0000.nii.gz").write_bytes(b"image " + case.encode())
        if with_labels:
            (folder / "labelsTr").mkdir(exist_ok=True)
            (folder / "labelsTr" / f"{case}.nii.gz").write_bytes(b"label " + case.encode())
        if sequences:
            (folder / "imagesTr" / f"{case}.json").write_text(json.dumps({"sequence": sequences[case]}))
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"},
                                                     "file_ending": ".nii.gz", "numTraining": len(cases)}))
    return folder


def test_defaults_and_yaml_relative_paths(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"ct_dataset": "ct", "mri_dataset": "mri", "output_folder": "out",
                                           "ablation": ["only_ct", "asit"], "source_training": {"epochs": 3}}))
    config = run_config(config_file=config_file)
    assert config.ct_dataset == tmp_path / "ct" and config.output_folder == tmp_path / "out"
    assert config.rows == ["only_ct", "asit"]
    assert config.source_training.epochs == 3 and config.source_training.iterations_per_epoch == 250
    assert config.configuration == "2d" and config.dataset_id_base is None and config.self_training.keep_fraction == 0.5


def test_every_problem_is_listed(tmp_path):
    values = minimal(tmp_path, colour="red", device="tpu", num_gpus="two", ablation=["asit", "magic"],
                     self_training={"epochs": 1.5, "keep_fraction": 0.5, "threshold": 0.2, "typo": 1},
                     target_spacing=[1, "a", 2])
    with pytest.raises(ConfigError) as error:
        config_from_dict(values, "my.yaml")
    message = str(error.value)
    for expected in ("'colour': unknown key", "'num_gpus': expected an integer", "'self_training.epochs'",
                     "'self_training.typo': unknown key", "'target_spacing[1]'", "my.yaml"):
        assert expected in message, message
    assert len(error.value.problems) == 5  # value checks (device) follow once the types are right


def test_value_problems_and_required_keys(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_from_dict({"device": "tpu", "ablation": ["asit", "magic"], "self_training": {"threshold": 0.1},
                          "num_parts": 0, "trainer": "nnUNetTrainer"})
    message = str(error.value)
    for expected in ("'ct_dataset': required", "'output_folder': required", "'device': 'tpu'", "unknown row 'magic'",
                     "exactly one of 'threshold' and 'keep_fraction'", "'num_parts': must be at least 1",
                     "'trainer': 'nnUNetTrainer' is not one of nnUNetTrainerUDASmall, nnUNetTrainerUDAQuick"):
        assert expected in message, message


def test_missing_input_folders_are_named(tmp_path):
    config = config_from_dict(minimal(tmp_path, test_images=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError) as error:
        check_inputs(config)
    assert str(tmp_path / "ct") in str(error.value) and str(tmp_path / "nowhere") in str(error.value)


@pytest.mark.slow
def test_run_command_rejects_bad_config_before_work(tmp_path):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps(minimal(tmp_path, unknown=1, fold=3)))
    result = subprocess.run(["nnUNetv2_uda_run", str(config_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "'unknown': unknown key" in result.stderr and "'fold': expected a string" in result.stderr
    assert not (tmp_path / "out").exists()


def test_label_names_must_agree(tmp_path):
    ct = write_dataset(tmp_path / "ct", FLARE_LABELS, ["a"])
    mri = write_dataset(tmp_path / "mri", {**FLARE_LABELS, "liver": 3, "spleen": 1}, ["b"], with_labels=False)
    with pytest.raises(PipelineInputError, match="disagree"):
        check_label_names(ct, mri)
    (mri / "dataset.json").write_text(json.dumps({"labels": FLARE_LABELS}))
    assert check_label_names(ct, mri) == FLARE_LABELS


def test_sequences_from_sidecars(tmp_path):
    mri = write_dataset(tmp_path / "mri", FLARE_LABELS, ["x1", "x2"], with_labels=False,
                        sequences={"x1": "T1", "x2": "T2"})
    assert mri_sequences(mri / "imagesTr") == {"x1": "T1", "x2": "T2"}
    (mri / "imagesTr" / "x2.json").unlink()
    with pytest.raises(PipelineInputError, match="no sequence tag"):
        mri_sequences(mri / "imagesTr")


def test_nnunet_folders_required(monkeypatch):
    monkeypatch.delenv("nnUNet_results", raising=False)
    with pytest.raises(PipelineInputError, match="nnUNet_results"):
        nnunet_folders()


def test_dataset_ids_and_conflicts(tmp_path):
    dataset_id, name = dataset_name(600, "final_asit_mdm")
    assert (dataset_id, name) == (605, "Dataset605_UDAFinalASITMDM")
    folders = {variable: tmp_path / variable for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    ours, theirs = run_owner(tmp_path / "run", "ours"), run_owner(tmp_path / "other_run", "theirs")
    check_datasets_owned(folders, [(dataset_id, name)], ours, 600)  # free
    (folders["nnUNet_results"] / "Dataset605_Other").mkdir(parents=True)  # nnU-Net resolves ids in all three
    with pytest.raises(DatasetOwnershipError, match="Dataset605_Other holds that id.*'dataset_id_base' \\(now 600"):
        check_datasets_owned(folders, [(dataset_id, name)], ours, 600)
    (folders["nnUNet_results"] / "Dataset605_Other").rmdir()
    (folders["nnUNet_results"] / name).mkdir()
    with pytest.raises(DatasetOwnershipError, match="exists without its raw dataset"):
        check_datasets_owned(folders, [(dataset_id, name)], ours, 600)
    raw = write_dataset(folders["nnUNet_raw"] / name, FLARE_LABELS, ["a"])  # the user's: no owner recorded
    with pytest.raises(DatasetOwnershipError, match=f"{raw} belongs to no nnUNetv2_uda_run run"):
        check_datasets_owned(folders, [(dataset_id, name)], ours, 600)
    content = json.loads((raw / "dataset.json").read_text())
    (raw / "dataset.json").write_text(json.dumps({**content, OWNER_KEY: theirs}))
    with pytest.raises(DatasetOwnershipError, match=f"belongs to the nnUNetv2_uda_run run in {tmp_path / 'other_run'}"
                                                    f" \\(run id theirs\\)"):
        check_datasets_owned(folders, [(dataset_id, name), (606, "Dataset606_UDASelfTrainASIT")], ours, 600)
    check_datasets_owned(folders, [(dataset_id, name)], theirs, 600)  # the owner itself
    moved = run_owner(tmp_path / "moved_run", "theirs")  # a run folder moved elsewhere keeps its id
    check_datasets_owned(folders, [(dataset_id, name)], moved, 600)
    restarted = run_owner(tmp_path / "other_run", "new id")  # its manifest removed, started afresh in the same folder
    check_datasets_owned(folders, [(dataset_id, name)], restarted, 600)


def test_raw_dataset_assembly(tmp_path):
    ct = write_dataset(tmp_path / "ct", FLARE_LABELS, ["c1", "c2", "c3"])
    cases = labeled_cases(ct, limit=2)
    assert list(cases) == ["c1", "c2"]
    target = write_raw_dataset(tmp_path / "Dataset700_X", {**cases, "ct_c3": labeled_cases(ct)["c3"]},
                               FLARE_LABELS, "zscore", {"extra": 1})
    content = json.loads((target / "dataset.json").read_text())
    assert content["numTraining"] == 3 and content["channel_names"] == {"0": "zscore"} and content["extra"] == 1
    assert (target / "imagesTr" / "ct_c3_0000.nii.gz").read_bytes() == b"image c3"
    assert (target / "labelsTr" / "c1.nii.gz").read_bytes() == b"label c1"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Dataset700_X", "ct"]  # no temporary left
    (ct / "labelsTr" / "c2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="c2"):
        labeled_cases(ct)


def test_manifest_paths_follow_a_moved_run_folder(tmp_path):
    first = {"nnUNet_results": tmp_path / "a" / "results"}
    manifest = Manifest(tmp_path / "a" / "run", roots=first)
    manifest.mark_started("train", "h1", {"a": 1})
    outputs = {"checkpoint": str(tmp_path / "a" / "results" / "Dataset1_X" / "checkpoint_final.pth"),
               "labels": [str(tmp_path / "a" / "run" / "pseudolabels" / "ct")], "folder": str(tmp_path / "a" / "run"),
               "elsewhere": str(tmp_path / "a" / "results2" / "x"), "dataset_id": 1}
    manifest.mark_finished("train", outputs, 1.0)
    assert manifest.stages["train"]["outputs"] == outputs  # the running process keeps its absolute paths
    stored = (tmp_path / "a" / "run" / "manifest.json").read_text()
    assert '"$nnUNet_results/Dataset1_X/checkpoint_final.pth"' in stored
    assert '"$output_folder/pseudolabels/ct"' in stored and str(tmp_path / "a" / "run") not in stored
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = Manifest(tmp_path / "b" / "run", roots={"nnUNet_results": tmp_path / "b" / "results"})
    assert moved.is_finished("train", "h1")
    assert moved.stages["train"]["outputs"] == {
        "checkpoint": str(tmp_path / "b" / "results" / "Dataset1_X" / "checkpoint_final.pth"),
        "labels": [str(tmp_path / "b" / "run" / "pseudolabels" / "ct")], "folder": str(tmp_path / "b" / "run"),
        "elsewhere": str(tmp_path / "a" / "results2" / "x"), "dataset_id": 1}  # not under a root: left as it was


def test_manifest_records_and_fingerprints(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.mark_started("plan", "h1", {"a": 1})
    assert not Manifest(tmp_path).is_finished("plan", "h1")  # a started step is never taken for finished
    manifest.mark_finished("plan", {"x": "y"}, 1.234)
    reread = Manifest(tmp_path)
    assert reread.is_finished("plan", "h1") and not reread.is_finished("plan", "h2")
    assert reread.stages["plan"]["wall_time_s"] == 1.23
    assert reread.changed_settings("plan", {"a": 2, "b": 0}) == ["a", "b"]
    assert [path.name for path in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left
    folder = write_dataset(tmp_path / "ct", FLARE_LABELS, ["c1"])
    before = folder_fingerprint(folder)
    copy = Path(shutil.copytree(folder, tmp_path / "moved" / "ct"))
    for path in copy.rglob("*"):
        os.utime(path, (1, 1))
    assert folder_fingerprint(copy) == before  # a copied or re-mounted dataset is the same input
    (folder / "labelsTr" / "c1.nii.gz").write_bytes(b"changed label")
    assert folder_fingerprint(folder) != before
    manifest.mark_started("train", "h3", {}, {"ct_dataset": before, "mri_dataset": "m"})
    assert manifest.changed_inputs("train", {"ct_dataset": folder_fingerprint(folder), "mri_dataset": "m"}) == [
        "ct_dataset"]


def test_file_fingerprint_sees_an_edit_at_either_end(tmp_path):
    path = tmp_path / "volume.nii"
    payload = bytearray(os.urandom(3 * FINGERPRINT_BLOCK_BYTES))
    path.write_bytes(payload)
    before = file_fingerprint(path)
    for position in (0, len(payload) - 1):
        edited = bytearray(payload)
        edited[position] ^= 0xFF
        path.write_bytes(edited)
        assert file_fingerprint(path) != before
    path.write_bytes(payload)
    assert file_fingerprint(path) == before


def test_rows_share_steps_and_mdm_needs_two_sequences(tmp_path):
    config = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                      ablation=["only_ct", "cyclegan", "asit", "asit_mdm", "asit_mdm_plf"]))
    rows, notes = row_plan(config, {"a": "T1", "b": "T2"})
    assert rows == config.rows and not notes
    steps, scored = build_steps(config, rows)
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for name in ("translator_asit", "translator_cyclegan", "plan", "train_ct", "pseudolabel_asit", "mdm_asit",
                 "selftrain_asit_mdm", "filter_asit_mdm", "final_asit_mdm", "predict_asit_mdm",
                 "evaluate_only_ct", "evaluate_asit_mdm_plf"):
        assert name in names
    for step in steps:  # every step comes after the steps it needs
        assert all(names.index(d) < names.index(step.name) for d in step.depends)
    assert scored == {"only_ct": "pseudolabel_ct", "cyclegan": "pseudolabel_cyclegan", "asit": "pseudolabel_asit",
                      "asit_mdm": "mdm_asit", "asit_mdm_plf": "predict_asit_mdm"}

    rows, notes = row_plan(config, {"a": "T2", "b": "T2"})
    assert rows == ["only_ct", "cyclegan", "asit", "asit_plf"] and len(notes) == 2
    steps, scored = build_steps(config, rows)
    assert "mdm_asit" not in [s.name for s in steps] and scored["asit_plf"] == "predict_asit"


def test_only_ct_mdm_rows_match_the_ct_networks_pseudolabels_ranked_by_its_snapshots(tmp_path):
    config = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                      ablation=["only_ct", "only_ct_mdm", "only_ct_mdm_plf"],
                                      ct_training={"epochs": 5, "iterations_per_epoch": 2},
                                      sequence_ranking="uncertainty"))
    steps, scored = build_steps(config, config.rows)
    by_name = {step.name: step for step in steps}
    assert not any(name.startswith(("translat", "train_asit")) for name in by_name)
    assert set(by_name["mdm_ct"].depends) == {"pseudolabel_ct", "train_ct", "copy_ct"}
    assert set(by_name["selftrain_ct_mdm"].depends) == {"mdm_ct", "train_ct", "plan"}
    assert scored == {"only_ct": "pseudolabel_ct", "only_ct_mdm": "mdm_ct", "only_ct_mdm_plf": "predict_ct_mdm"}
    assert by_name["train_ct"].settings["num_snapshots"] == 4  # self-training's default
    assert "PseudoLabel" in by_name["train_ct"].settings["trainer"]
    assert dataset_name(600, "final_ct_mdm") == (629, "Dataset629_UDAFinalCTMDM")
    assert len({dataset_name(600, role) for role in DATASET_ROLES}) == len(DATASET_ROLES) == ID_SPAN

    def train_ct(**overrides):  # without a CT MDM row, with the order given, or ranked by organ volumes (the
        # default), the CT network keeps no snapshots
        plain = config_from_dict(minimal(tmp_path, **{"sequence_ranking": "uncertainty", **overrides}))
        return {step.name: step for step in build_steps(plain, plain.rows)[0]}["train_ct"].settings
    for settings in (train_ct(ablation=["only_ct_plf", "asit_mdm"]),
                     train_ct(ablation=["only_ct_mdm_plf"], sequence_order=["T2", "T1"]),
                     train_ct(ablation=["only_ct_mdm_plf"], sequence_ranking="plausibility")):
        assert settings["num_snapshots"] is None and "PseudoLabel" not in settings["trainer"]

    rows, notes = row_plan(config, {"a": "T2", "b": "T2"})  # one sequence: as without MDM
    assert rows == ["only_ct", "only_ct_plf"] and len(notes) == 2
    too_short = minimal(tmp_path, ablation=["only_ct_mdm"], ct_training={"epochs": 3, "iterations_per_epoch": 2})
    with pytest.raises(ConfigError, match=r"'self_training.num_snapshots' \(4\) exceeds 'ct_training.epochs' \(3\)"):
        config_from_dict({**too_short, "sequence_ranking": "uncertainty"})
    config_from_dict(too_short)  # ranked by organ volumes: no snapshots needed
    with pytest.raises(ConfigError, match=r"'sequence_ranking': 'volume' is not one of plausibility, uncertainty"):
        config_from_dict({**too_short, "sequence_ranking": "volume"})
    with pytest.raises(ConfigError, match=r"'mdm_registration': 'outline' is not one of labels, images, body"):
        config_from_dict({**too_short, "mdm_registration": "outline"})
    with pytest.raises(ConfigError, match=r"'mdm_keep_more_plausible': .* 'uncertainty' ranking does not read"):
        config_from_dict({**too_short, "sequence_ranking": "uncertainty", "mdm_keep_more_plausible": True,
                          "ct_training": {"epochs": 4, "iterations_per_epoch": 2}})


def test_mdm_step_ranks_by_the_labels_the_ct_network_learned(tmp_path):
    """By default the MDM step ranks the sequences by organ-volume plausibility against the labeled CT cases the
    networks trained on; a given order wins; 'mdm_registration' reaches the command; with 'mdm_keep_more_plausible'
    the CT labels are read even with an order, and a case whose own label is the more plausible keeps it. Runs the
    real nnUNetv2_uda_mdm on tiny label maps."""
    images, pseudolabels, ct = tmp_path / "images", tmp_path / "pseudolabels", tmp_path / "ct"
    for folder in (images, pseudolabels, ct / "labelsTr"):
        folder.mkdir(parents=True)
    write_case(pseudolabels, images, "mri_T2_0001", organ_map(1.0))
    write_case(pseudolabels, images, "mri_T1_0002", organ_map(1.3))
    for index, scale in enumerate((1.25, 1.3, 1.35)):  # CT organs the size of the T1 case's: T1 ranks first
        write_case(ct / "labelsTr", tmp_path, f"ct_{index}", organ_map(scale))
    matched, kept = {}, {}
    for name, order, registration, keep in (("ranked", None, "labels", False), ("ordered", ["T2", "T1"], "body", False),
                                            ("guarded", ["T2", "T1"], "labels", True)):
        config = config_from_dict(minimal(tmp_path / name, ablation=["only_ct_mdm"], sequence_order=order,
                                          mdm_registration=registration, mdm_keep_more_plausible=keep))
        mdm_step = {step.name: step for step in build_steps(config, config.rows)[0]}["mdm_ct"]
        context = SimpleNamespace(config=config, out=tmp_path / name / "out",
                                  sequences={"mri_T2_0001": "T2", "mri_T1_0002": "T1"},
                                  mri_images=images, labeled_ct=ct, labels={"background": 0, "liver": 1, "spleen": 3},
                                  log_file=lambda step, name=name: tmp_path / name / "out" / f"{step}.log",
                                  manifest_outputs={"pseudolabel_ct": {"labels": str(pseudolabels)}}.__getitem__)
        outputs = mdm_step.action(context, None)
        with open(outputs["matches"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        matched[name] = {row["case"]: row["matched_case"] for row in rows}
        kept[name] = {row["case"] for row in rows if row["kept_own"] == "True"}
        log = (tmp_path / name / "out" / "mdm_ct.log").read_text()
        command = next(line for line in log.splitlines() if line.startswith("$ nnUNetv2_uda_mdm"))
        assert ("--ct_labels" in command) == (order is None or keep) and ("--order" in command) == (order is not None)
        assert f"--registration_on {registration}" in command and ("--keep_more_plausible" in command) == keep
        assert ("warning: the best-ranked sub-domain T1 holds 1 case(s)" in log) == (order is None)
    assert matched == {"ranked": {"mri_T1_0002": "", "mri_T2_0001": "mri_T1_0002"},
                       "ordered": {"mri_T2_0001": "", "mri_T1_0002": "mri_T2_0001"},
                       "guarded": {"mri_T2_0001": "", "mri_T1_0002": "mri_T2_0001"}}
    assert kept == {"ranked": set(), "ordered": set(), "guarded": {"mri_T1_0002"}}  # its size is the CT organs'


def test_only_ct_plf_self_trains_from_the_ct_networks_pseudolabels(tmp_path):
    config = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                      ablation=["only_ct", "only_ct_plf"]))
    steps, scored = build_steps(config, ["only_ct", "only_ct_plf"])
    by_name = {step.name: step for step in steps}
    assert not any(name.startswith(("translat", "train_asit")) for name in by_name)  # no translator needed
    assert set(by_name["selftrain_ct"].depends) == {"pseudolabel_ct", "train_ct", "plan"}
    assert scored == {"only_ct": "pseudolabel_ct", "only_ct_plf": "predict_ct"}
    assert "evaluate_only_ct_plf" in by_name

    fake_ct = config_from_dict(minimal(tmp_path, ablation=["only_ct_plf"], final={"ct_source": "fake_mri"}))
    names = [step.name for step in build_steps(fake_ct, ["only_ct_plf"])[0]]
    assert names.index("translate_asit") < names.index("final_ct")  # its CT cases come translated


def test_cyclegan_plf_self_trains_from_the_cyclegan_networks_pseudolabels(tmp_path):
    config = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                      ablation=["cyclegan", "cyclegan_plf"]))
    steps, scored = build_steps(config, ["cyclegan", "cyclegan_plf"])
    by_name = {step.name: step for step in steps}
    assert set(by_name["selftrain_cyclegan"].depends) == {"pseudolabel_cyclegan", "train_cyclegan", "plan"}
    assert scored == {"cyclegan": "pseudolabel_cyclegan", "cyclegan_plf": "predict_cyclegan"}
    assert not any(name.startswith(("translator_asit", "train_asit", "train_ct")) for name in by_name)
    assert dataset_name(600, "final_cyclegan") == (614, "Dataset614_UDAFinalCycleGAN")


def test_adding_an_mdm_row_keeps_the_asit_network(tmp_path):
    """The ASIT network's snapshots (MDM's sequence ranking by uncertainty) follow from the config, not from the rows
    after it: its step is the same with and without an MDM row, so adding one reruns nothing before MDM."""
    def train_asit(**overrides):
        config = config_from_dict(minimal(tmp_path, **{"sequence_ranking": "uncertainty", **overrides}))
        return {step.name: step for step in build_steps(config, config.rows)[0]}["train_asit"]

    alone, with_mdm = train_asit(ablation=["asit"]), train_asit(ablation=["asit", "asit_mdm"])
    assert alone.settings == with_mdm.settings and alone.settings["num_snapshots"] == 4  # the self-training default
    assert "PseudoLabel" in alone.settings["trainer"]
    short = train_asit(ablation=["asit"], source_training={"epochs": 3})
    assert short.settings["num_snapshots"] == 3  # no more than one per epoch
    for no_snapshots in (train_asit(ablation=["asit"], source_training={"epochs": 1}),
                         train_asit(ablation=["asit", "asit_mdm"], sequence_order=["T2", "T1"]),
                         train_asit(ablation=["asit", "asit_mdm"], sequence_ranking="plausibility")):
        assert no_snapshots.settings["num_snapshots"] is None and "PseudoLabel" not in no_snapshots.settings["trainer"]


def test_second_plf_round_starts_from_the_first_rounds_final_network(tmp_path):
    config = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                      ablation=["cyclegan_plf", "cyclegan_plf2"]))
    first_round, _ = build_steps(config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"),
                                                          ablation=["cyclegan_plf"])), ["cyclegan_plf"])
    steps, scored = build_steps(config, config.rows)
    by_name = {step.name: step for step in steps}
    relabel = by_name["pseudolabel_final_cyclegan"]
    assert relabel.depends == ("final_cyclegan",) and relabel.inputs == ("mri_dataset",)
    assert set(by_name["selftrain_cyclegan_round2"].depends) == {"pseudolabel_final_cyclegan", "final_cyclegan",
                                                                 "plan"}  # warm start: the pseudo-labeler
    assert set(by_name["final_cyclegan_round2"].depends) == {"filter_cyclegan_round2", "selftrain_cyclegan_round2",
                                                             "plan"}
    assert scored == {"cyclegan_plf": "predict_cyclegan", "cyclegan_plf2": "predict_cyclegan_round2"}
    for step in first_round:  # adding the second round leaves the first round's steps (and records) as they were
        assert (by_name[step.name].settings, by_name[step.name].depends) == (step.settings, step.depends)
    ids = {dataset_name(850, f"{stage}_{variant}")[0] for stage in ("selftrain", "filtered", "final")
           for variant in ("asit_mdm", "asit", "ct", "cyclegan", "asit_mdm_round2", "asit_round2", "ct_round2",
                           "cyclegan_round2")}
    assert len(ids) == 24 and dataset_name(850, "final_cyclegan_round2")[1] == "Dataset876_UDAFinalCycleGANRound2"

    mdm = config_from_dict(minimal(tmp_path, validation_labels=str(tmp_path / "val"), ablation=["asit_mdm_plf2"]))
    rows, notes = row_plan(mdm, {"a": "T2", "b": "T2"})
    assert rows == ["asit_plf2"] and "runs as 'asit_plf2'" in notes[0]
    assert build_steps(mdm, rows)[1] == {"asit_plf2": "predict_asit_round2"}
    assert "pseudolabel_final_asit_mdm" in [s.name for s in build_steps(mdm, ["asit_mdm_plf2"])[0]]
    with pytest.raises(ConfigError, match="unknown row 'asit_plf2'"):
        config_from_dict(minimal(tmp_path, ablation=["asit_plf2"]))


def test_gin_trainer_runs_every_network_with_gin(tmp_path):
    config = config_from_dict(minimal(tmp_path, trainer="nnUNetTrainerUDAQuickGIN",
                                      ablation=["only_ct", "asit", "asit_mdm_plf"], sequence_ranking="uncertainty"))
    steps, _ = build_steps(config, ["only_ct", "asit", "asit_mdm", "asit_mdm_plf"])
    trainers = {step.name: step.settings["trainer"] for step in steps if "trainer" in step.settings}
    assert trainers["train_ct"].startswith("nnUNetTrainerUDAQuickGIN_")
    assert trainers["train_asit"].startswith("nnUNetTrainerUDAQuickPseudoLabelGIN_")  # snapshots for MDM's order
    assert trainers["selftrain_asit_mdm"] == "nnUNetTrainerUDAQuickPseudoLabelGIN"
    assert trainers["final_asit_mdm"] == "nnUNetTrainerUDAQuickGIN"


def test_cpu_precision_is_a_setting_of_every_training_step(tmp_path):
    """A network trained in another precision is another network: changing ``cpu_bf16`` retrains it."""
    rows = ["only_ct", "only_ct_plf"]
    settings_of = lambda config: {s.name: s.settings for s in build_steps(config, rows)[0]}  # noqa: E731
    float32 = settings_of(config_from_dict(minimal(tmp_path, ablation=rows, cpu_bf16=False)))
    bfloat16 = settings_of(config_from_dict(minimal(tmp_path, ablation=rows, cpu_bf16=True)))
    changed = {name for name in float32 if float32[name] != bfloat16[name]}
    assert changed == {"train_ct", "selftrain_ct", "final_ct"}
    with pytest.raises(ConfigError, match="'cpu_bf16'"):
        config_from_dict(minimal(tmp_path, cpu_bf16="yes"))


def test_number_keys_accept_yaml_exponents_without_a_dot(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(minimal(tmp_path)) + "self_training:\n  threshold: 1e-2\n"
                           "  keep_fraction: null\n")
    assert yaml.safe_load(config_file.read_text())["self_training"]["threshold"] == "1e-2"  # YAML 1.1: a string
    assert run_config(config_file=config_file).self_training.threshold == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="'self_training.threshold': expected a number, got 'low'"):
        config_from_dict(minimal(tmp_path, self_training={"threshold": "low", "keep_fraction": None}))


def test_warm_starts_are_step_settings_and_edges(tmp_path):
    config = config_from_dict(minimal(tmp_path, source_warm_start=True, ablation=["only_ct", "asit", "asit_mdm_plf"]))
    steps, _ = build_steps(config, ["only_ct", "asit", "asit_mdm", "asit_mdm_plf"])
    by_name = {step.name: step for step in steps}
    assert by_name["train_asit"].settings["warm_start_from_ct"] and "train_ct" in by_name["train_asit"].depends
    assert by_name["final_asit_mdm"].settings["warm_start"] and not by_name["train_ct"].settings["warm_start_from_ct"]
    cold = config_from_dict(minimal(tmp_path, warm_start=False, ablation="asit_mdm_plf"))
    cold_steps = {step.name: step for step in build_steps(cold, ["asit_mdm_plf"])[0]}
    assert not cold_steps["train_asit"].settings["warm_start_from_ct"] and "train_ct" not in cold_steps
    assert not any(cold_steps[name].settings["warm_start"] for name in ("selftrain_asit_mdm", "final_asit_mdm"))


def test_organs_key_is_checked(tmp_path):
    assert config_from_dict(minimal(tmp_path)).organs is None
    assert config_from_dict(minimal(tmp_path, organs=["spleen", "liver"])).organs == ["spleen", "liver"]
    with pytest.raises(ConfigError) as error:
        config_from_dict(minimal(tmp_path, organs=[]))
    assert "'organs': an empty list" in str(error.value)
    with pytest.raises(ConfigError, match="'organs': names repeated"):
        config_from_dict(minimal(tmp_path, organs=["liver", "liver"]))


def test_select_organs_renumbers_in_id_order_and_names_unknown_organs():
    assert select_organs(FLARE_LABELS, None) == (FLARE_LABELS, None)
    labels, relabel = select_organs(FLARE_LABELS, ["left kidney", "liver", "spleen", "right kidney"])
    assert labels == {"background": 0, "liver": 1, "right kidney": 2, "spleen": 3, "left kidney": 4}
    assert relabel == {1: 1, 2: 2, 3: 3, 13: 4}
    with pytest.raises(PipelineInputError, match=r"\['livr', 'background'\] are not organs .*liver, right kidney"):
        select_organs(FLARE_LABELS, ["livr", "background"])


def test_raw_dataset_with_chosen_organs_rewrites_the_label_maps(tmp_path):
    array = np.zeros((3, 4, 5), np.uint8)
    array[0, 0, :] = [1, 2, 3, 13, 11]
    label = sitk.GetImageFromArray(array)
    label.SetSpacing((0.8, 0.9, 2.5))
    label.SetOrigin((1.0, 2.0, 3.0))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(label, str(tmp_path / "in" / "c1.nii.gz"))
    (tmp_path / "in" / "c1_0000.nii.gz").write_bytes(b"image")
    labels, relabel = select_organs(FLARE_LABELS, ["liver", "left kidney"])
    target = write_raw_dataset(tmp_path / "Dataset700_X", {"c1": ([tmp_path / "in" / "c1_0000.nii.gz"],
                                                                  tmp_path / "in" / "c1.nii.gz")},
                               labels, "zscore", relabel=relabel)
    written = sitk.ReadImage(str(target / "labelsTr" / "c1.nii.gz"))
    assert sitk.GetArrayFromImage(written)[0, 0].tolist() == [1, 0, 0, 2, 0]
    assert sitk.GetArrayFromImage(written).sum() == 3
    assert written.GetSpacing() == pytest.approx((0.8, 0.9, 2.5)) and written.GetOrigin() == pytest.approx((1, 2, 3))
    assert json.loads((target / "dataset.json").read_text())["labels"] == {"background": 0, "liver": 1,
                                                                            "left kidney": 2}
    assert (tmp_path / "in" / "c1.nii.gz").stat().st_nlink == 1  # the user's label map is not touched


def test_chosen_organs_reach_every_step_that_reads_ct_labels(tmp_path):
    rows = ["cyclegan", "only_ct_plf"]
    settings_of = lambda config: {s.name: (s.settings, s.depends) for s in build_steps(config, rows)[0]}  # noqa: E731
    default = settings_of(config_from_dict(minimal(tmp_path, ablation=rows)))
    assert default["copy_ct"][0]["organs"] is None and default["translate_cyclegan"][1] == ("translator_cyclegan",)
    assert default["plan"][1] == ("copy_ct",)
    chosen = settings_of(config_from_dict(minimal(tmp_path, ablation=rows, organs=["liver", "spleen"])))
    assert chosen["copy_ct"][0]["organs"] == chosen["translate_cyclegan"][0]["organs"] == ["liver", "spleen"]
    # it translates copy_ct's relabelled CT dataset, which planning does not touch: no edge runs backwards
    assert chosen["translate_cyclegan"][1] == ("translator_cyclegan", "copy_ct")


def test_largest_component_reaches_the_steps_that_write_label_maps(tmp_path):
    rows = ["only_ct", "only_ct_plf"]
    settings_of = lambda config: {s.name: s.settings for s in build_steps(config, rows)[0]}  # noqa: E731
    default = settings_of(config_from_dict(minimal(tmp_path, ablation=rows)))
    assert not any(settings.get("largest_component") for settings in default.values())
    chosen = settings_of(config_from_dict(minimal(tmp_path, ablation=rows, largest_component=True,
                                                  validation_labels=str(tmp_path / "labels"))))
    marked = {name for name, settings in chosen.items() if settings.get("largest_component")}
    assert marked == {"pseudolabel_ct", "filter_ct", "predict_ct"}
    with pytest.raises(ConfigError, match="'largest_component'"):
        config_from_dict(minimal(tmp_path, largest_component="sometimes"))


def test_table7_form():
    summary = {"liver": {"DSC": {"mean": 0.9}, "NSD": {"mean": 0.8}}, "mean": {"DSC": {"mean": 0.9},
                                                                               "NSD": {"mean": 0.8}}}
    table = table7({"only_ct": {"summary": summary}, "asit_plf": {"summary": summary}})
    assert "| only CT | 90.00 / 80.00 | 90.00 / 80.00 |" in table and "ASIT + PLF" in table


def test_rerun_reason_names_the_changed_input_folder(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.mark_started("train_ct", "h1", {"epochs": 1}, {"ct_dataset": "a", "mri_dataset": "b"})
    context, step = SimpleNamespace(manifest=manifest), SimpleNamespace(name="train_ct")
    assert rerun_reason(step, context, "h1", {"epochs": 1}, {"ct_dataset": "a", "mri_dataset": "b"}).startswith(
        "resuming")
    assert rerun_reason(step, context, "h2", {"epochs": 2}, {"ct_dataset": "a", "mri_dataset": "b"}).startswith(
        "settings changed (epochs)")
    assert rerun_reason(step, context, "h2", {"epochs": 1}, {"ct_dataset": "x", "mri_dataset": "b"}).startswith(
        "the content of ct_dataset changed")
    assert rerun_reason(step, context, "h2", {"epochs": 1}, {"ct_dataset": "a", "mri_dataset": "b"}).startswith(
        "its inputs or an earlier step changed")
    manifest.stages["train_ct"]["schema_version"] = 0  # recorded by a version whose records meant something else
    assert rerun_reason(step, context, "h1", {"epochs": 1}, {"ct_dataset": "a", "mri_dataset": "b"}).startswith(
        f"recorded by another version of nnunetv2-uda (record schema 0, now {SCHEMA_VERSION})")
    manifest.mark_finished("train_ct", {}, 1.0)
    assert not manifest.is_finished("train_ct", "h1")


def test_prediction_parts_belong_to_one_trained_network(tmp_path):
    checkpoint = tmp_path / "checkpoint_final.pth"
    checkpoint.write_bytes(b"weights of the first network")
    model = {"checkpoint": str(checkpoint)}
    first = parts_folder(tmp_path / "out", "pseudolabel_asit", "h1", model)
    assert first.parent == tmp_path / "out" / "parts" / "pseudolabel_asit" and first.name.startswith("h1_")
    assert parts_folder(tmp_path / "out", "pseudolabel_asit", "h1", model) == first
    checkpoint.write_bytes(b"weights of the retrained network")  # same settings, so the same input hash
    assert parts_folder(tmp_path / "out", "pseudolabel_asit", "h1", model) != first


# ------------------------------------------------------------------ bad and hostile input (issue #23), no training
def fake_run(tmp_path: Path, name: str = "run", **overrides) -> tuple[Path, dict[str, str]]:
    """A config over tiny stand-in datasets (file names and dataset.json only: ``--check`` and the refusals before
    any work read nothing else) and nnU-Net folders of its own; returns the config file and the environment."""
    if not (tmp_path / "ct").is_dir():
        write_dataset(tmp_path / "ct", FLARE_LABELS, ["c1", "c2"])
        write_dataset(tmp_path / "mri", FLARE_LABELS, ["m1", "m2"], with_labels=False,
                      sequences={"m1": "T1", "m2": "T2"})
    env = {**os.environ, **{variable: str(tmp_path / "nnunet" / variable)
                            for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[variable]).mkdir(parents=True, exist_ok=True)
    config_file = tmp_path / f"{name}.yaml"
    values = {"output_folder": str(tmp_path / name), "dataset_id_base": 720, "ablation": "asit_mdm_plf", **overrides}
    config_file.write_text(yaml.safe_dump(minimal(tmp_path, **values)))
    return config_file, env


def run_cli(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_uda_run", *args, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnUNetv2_uda_run: error: "), result.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


BAD_MANIFESTS = {
    "a list": ("[]", "holds a list, not a mapping with 'stages'"),
    "invalid JSON": ('{"stages": {"plan": ', "not valid JSON"),
    "stages not a mapping": ('{"stages": ["plan"]}', "'stages' is missing or not a mapping"),
    "no stages": ('{"run_id": "x"}', "'stages' is missing or not a mapping"),
    "no run id": ('{"stages": {}}', "'run_id' is None"),
    "run id not a string": ('{"run_id": 7, "stages": {}}', "'run_id' is 7"),
    "record not a mapping": ('{"run_id": "x", "stages": {"plan": "done"}}', "the record of step 'plan' is a str"),
    "record without its keys": ('{"run_id": "x", "stages": {"plan": {"settings": {}}}}',
                                "the record of step 'plan' lacks 'input_hash', 'schema_version', 'finished'"),
    "finished without outputs": ('{"run_id": "x", "stages": {"plan": {"input_hash": "h", "schema_version": 1, '
                                 '"settings": {}, "finished": true}}}',
                                 "the record of step 'plan' is finished without a mapping of 'outputs'"),
    "schema version not a number": ('{"run_id": "x", "stages": {"plan": {"input_hash": "h", "settings": {}, '
                                    '"finished": false, "schema_version": "1"}}}',
                                    "the record of step 'plan' has a 'schema_version'"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_manifest_not_written_by_the_runner_is_a_named_error(case, tmp_path):
    text, problem = BAD_MANIFESTS[case]
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError) as error:
        Manifest(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'manifest.json'}: {problem}"), str(error.value)
    assert "move this file away" in str(error.value)
    assert (tmp_path / "manifest.json").read_text() == text  # left as it was


def test_run_command_names_a_bad_manifest_in_one_line(tmp_path):
    config_file, env = fake_run(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text('[{"stages": {}}]')
    assert_one_line_error(run_cli(config_file, env=env), f"{tmp_path / 'run' / 'manifest.json'}: holds a list")
    assert [path.name for path in (tmp_path / "run").iterdir()] == ["manifest.json"]


def use_env(monkeypatch, env: dict[str, str]) -> None:
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, env[variable])


def test_a_second_run_with_the_same_dataset_ids_is_refused_before_any_work(tmp_path, monkeypatch):
    first_config, env = fake_run(tmp_path, "first")
    second_config, _ = fake_run(tmp_path, "second")
    use_env(monkeypatch, env)
    prepare(run_config(config_file=second_config))  # the ids are free
    shutil.rmtree(tmp_path / "second")
    # the first run's plan step wrote its CT copy and recorded its manifest (as the runner does, without training)
    first = Manifest(tmp_path / "first")
    first.save()
    raw = Path(env["nnUNet_raw"]) / "Dataset720_UDASourceCT"
    write_raw_dataset(raw, labeled_cases(tmp_path / "ct"), FLARE_LABELS, "zscore",
                      {OWNER_KEY: run_owner(tmp_path / "first", first.run_id)})
    before = tree(tmp_path / "nnunet")

    for check in (["--check"], []):
        assert_one_line_error(run_cli(second_config, *check, env=env), "dataset id 720 is not free",
                              f"{raw} belongs to the nnUNetv2_uda_run run in {tmp_path / 'first'} "
                              f"(run id {first.run_id})", "'dataset_id_base' (now 720")
    assert not (tmp_path / "second").exists()  # refused before anything was made
    assert tree(tmp_path / "nnunet") == before
    prepare(run_config(config_file=first_config))  # the owner goes on

    content = json.loads((raw / "dataset.json").read_text())
    del content[OWNER_KEY]  # the user's own dataset under that id
    (raw / "dataset.json").write_text(json.dumps(content))
    with pytest.raises(DatasetOwnershipError, match=f"{raw} belongs to no nnUNetv2_uda_run run"):
        prepare(run_config(config_file=first_config))


def start_without_training(config_file: Path) -> Context:
    """What ``run_pipeline`` does before its first step (record the run's id and ids, reserve them), without steps."""
    context = prepare(run_config(config_file=config_file))[0]
    context.manifest.save()
    reserve_dataset_ids(context.folders, context.config.dataset_id_base, context.owner)
    return context


def test_automatic_dataset_ids_are_free_disjoint_recorded_and_kept_on_rerun(tmp_path, monkeypatch):
    user = {"dataset_id_base": None, "ablation": "only_ct"}
    first_config, env = fake_run(tmp_path, "first", **user)
    second_config, _ = fake_run(tmp_path, "second", **user)
    third_config, _ = fake_run(tmp_path, "third", **user)
    use_env(monkeypatch, env)
    raw = Path(env["nnUNet_raw"])
    first_base, second_base = 500 + ID_SPAN, 500 + 2 * ID_SPAN  # the automatic ranges after 500's
    write_dataset(raw / "Dataset510_Mine", FLARE_LABELS, ["u1"])  # the user's dataset inside the first range
    mine = tree(raw / "Dataset510_Mine")
    check = run_cli(first_config, "--check", env=env)
    assert check.returncode == 0, check.stderr
    assert (f"note: nnU-Net dataset ids {first_base} (base {first_base}: 'dataset_id_base' is null: the first free "
            f"range") in check.stdout
    assert not (tmp_path / "first" / "manifest.json").exists()  # --check records nothing

    first = start_without_training(first_config)  # started: its base recorded, not one of its datasets written yet
    assert first.config.dataset_id_base == first_base
    assert json.loads((tmp_path / "first" / "manifest.json").read_text())["dataset_id_base"] == first_base
    second = start_without_training(second_config)
    assert second.config.dataset_id_base == second_base  # the first run's range is reserved, though still empty
    write_raw_dataset(raw / f"Dataset{second_base}_UDASourceCT", labeled_cases(tmp_path / "ct"), FLARE_LABELS,
                      "zscore", {OWNER_KEY: second.owner})  # the second run's plan step
    shutil.rmtree(raw / "Dataset510_Mine")  # the lower range is free again: reruns keep their recorded ranges
    assert prepare(run_config(config_file=first_config))[0].config.dataset_id_base == first_base
    assert prepare(run_config(config_file=second_config))[0].config.dataset_id_base == second_base
    check = run_cli(second_config, "--check", env=env)
    assert (f"note: nnU-Net dataset ids {second_base} (base {second_base}: recorded in manifest.json when the run "
            f"first started)") in check.stdout
    plan = {item.step.name: item for item in plan_run(*prepare(run_config(config_file=first_config))[:2])}["plan"]
    assert plan.settings["dataset_id_base"] == first_base  # the steps see (and hash) the resolved base
    assert start_without_training(third_config).config.dataset_id_base == 500
    shutil.rmtree(tmp_path / "third")  # a run folder deleted before it wrote a dataset frees its reservation
    write_dataset(raw / "Dataset510_Mine", FLARE_LABELS, ["u1"])
    fourth_config, _ = fake_run(tmp_path, "fourth", **user)
    assert prepare(run_config(config_file=fourth_config))[0].config.dataset_id_base == first_base + 2 * ID_SPAN
    assert tree(raw / "Dataset510_Mine") == mine  # never written to

    explicit_config, _ = fake_run(tmp_path, "explicit", dataset_id_base=second_base, ablation="only_ct")
    assert_one_line_error(run_cli(explicit_config, "--check", env=env), f"dataset id {second_base} is not free",
                          f"belongs to the nnUNetv2_uda_run run in {tmp_path / 'second'}")


def test_a_bad_recorded_dataset_id_base_is_a_named_error(tmp_path):
    (tmp_path / "manifest.json").write_text('{"run_id": "x", "dataset_id_base": "500", "stages": {}}')
    with pytest.raises(ManifestError, match="'dataset_id_base' is '500', not a dataset id"):
        Manifest(tmp_path)


def test_output_folder_that_is_not_the_runs_is_refused(tmp_path, monkeypatch):
    config_file, env = fake_run(tmp_path, output_folder=str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert_one_line_error(run_cli(config_file, "--check", env=env), f"'output_folder': {tmp_path / 'mine'} is not "
                                                                    f"empty and holds no manifest.json")
    use_env(monkeypatch, env)
    for inside in (tmp_path / "mri" / "out", tmp_path / "ct"):
        config_file, _ = fake_run(tmp_path, output_folder=str(inside))
        with pytest.raises(OutputFolderError, match=f"'output_folder': output folder {inside} (lies inside|is) the "
                                                    f"input"):
            prepare(run_config(config_file=config_file))
    assert not (tmp_path / "mri" / "out").exists() and tree(tmp_path / "mine") == {"notes.txt": b"the user's"}


NONSENSE_NUMBERS = {  # config values -> the key named; each was accepted before issue #23
    "batch_size 0": ({"batch_size": 0}, "'batch_size': must be at least 1"),
    "translator batch_size 0": ({"translator": {"batch_size": 0}},
                                "'translator.batch_size': must be an integer >= 1, got 0"),
    "negative spacing": ({"target_spacing": [2.5, -0.8, 0.8]}, "'target_spacing': spacings must be positive"),
    "NaN spacing": ({"target_spacing": [2.5, float("nan"), 0.8]}, "'target_spacing[1]': expected a finite number"),
    "negative threshold": ({"self_training": {"threshold": -0.1, "keep_fraction": None}},
                           "'self_training.threshold': must be positive"),
    "zero threshold": ({"self_training": {"threshold": 0, "keep_fraction": None}},
                       "'self_training.threshold': must be positive"),
    "NaN threshold": ({"self_training": {"threshold": float("nan"), "keep_fraction": None}},
                      "'self_training.threshold': expected a finite number"),
    "infinite keep_fraction": ({"self_training": {"keep_fraction": float("inf")}},
                               "'self_training.keep_fraction': expected a finite number"),
}


@pytest.mark.parametrize("case", sorted(NONSENSE_NUMBERS))
def test_nonsense_numbers_are_refused_naming_the_key(case, tmp_path):
    values, expected = NONSENSE_NUMBERS[case]
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_from_dict(minimal(tmp_path, **values))


def test_yaml_nan_is_refused_through_the_command_traceback_only_with_verbose(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(minimal(tmp_path)) + "self_training:\n  keep_fraction: .nan\n")
    assert_one_line_error(run_cli(config_file), "'self_training.keep_fraction': expected a finite number, got nan")
    verbose = run_cli(config_file, "--verbose")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr and "keep_fraction" in verbose.stderr


def test_failed_stage_command_is_named_with_its_log(tmp_path):
    log = tmp_path / "logs" / "step.log"
    with pytest.raises(StageCommandError) as error:
        run_logged([sys.executable, "-c", "import sys; print('first'); print('the reason'); sys.exit(3)"], log)
    assert isinstance(error.value, UserInputError) and error.value.exit_code == 1
    assert str(error.value) == (f"'{sys.executable}' failed with exit code 3 (last line: the reason); its whole "
                                f"output is in {log}")
    assert "the reason" in log.read_text()


def test_terminated_pipeline_terminates_its_stage_command(tmp_path):
    """SIGTERM to the pipeline alone (not its process group) ends the running stage command too, which then
    removes its own temporaries."""
    log = tmp_path / "step.log"
    child = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(120)"
    script = (f"from pathlib import Path\nfrom nnunetv2_uda.command_line import command\n"
              f"from nnunetv2_uda.pipeline.commands import run_logged\n"
              f"command(lambda: run_logged([{sys.executable!r}, '-c', {child!r}], Path({str(log)!r})))()\n")
    pipeline = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and "pid " in log.read_text()):
        time.sleep(0.1)
    child_pid = int(log.read_text().split("pid ")[1].split()[0])
    pipeline.send_signal(signal.SIGTERM)
    assert pipeline.wait(timeout=60) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


def test_link_or_copy_never_replaces_a_file(tmp_path):
    (tmp_path / "source.nii.gz").write_bytes(b"new")
    (tmp_path / "target.nii.gz").write_bytes(b"existing")
    with pytest.raises(FileExistsError):
        link_or_copy(tmp_path / "source.nii.gz", tmp_path / "target.nii.gz")
    assert (tmp_path / "target.nii.gz").read_bytes() == b"existing"


def test_raw_dataset_is_replaced_only_when_asked_and_only_when_complete(tmp_path):
    ct = write_dataset(tmp_path / "ct", FLARE_LABELS, ["c1", "c2"])
    target = write_raw_dataset(tmp_path / "Dataset700_X", labeled_cases(ct, limit=1), FLARE_LABELS, "zscore")
    before = tree(target)
    with pytest.raises(FileExistsError):
        write_raw_dataset(target, labeled_cases(ct), FLARE_LABELS, "zscore")
    (ct / "imagesTr" / "c2_0000.nii.gz").unlink()  # fails half-way through the new dataset
    with pytest.raises(FileNotFoundError, match="c2_0000"):
        write_raw_dataset(target, {**labeled_cases(ct, limit=1), "c2": ([ct / "imagesTr" / "c2_0000.nii.gz"], None)},
                          FLARE_LABELS, "zscore", replace=True)
    assert tree(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["Dataset700_X", "ct"]
    write_raw_dataset(target, labeled_cases(ct, limit=1), {"background": 0, "liver": 1}, "zscore", replace=True)
    assert json.loads((target / "dataset.json").read_text())["labels"] == {"background": 0, "liver": 1}


def test_truncated_label_map_is_named_not_read_as_zeros(tmp_path):
    array = np.random.default_rng(0).integers(0, 2, (8, 32, 32), dtype=np.uint8)  # half the file is past the header
    label = tmp_path / "in" / "c1.nii.gz"
    label.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(array), str(label), True)
    label.write_bytes(label.read_bytes()[: label.stat().st_size // 2])
    (tmp_path / "in" / "c1_0000.nii.gz").write_bytes(b"image")
    with pytest.raises(ImageFileError, match=f"{label}: truncated"):
        write_raw_dataset(tmp_path / "Dataset700_X", {"c1": ([tmp_path / "in" / "c1_0000.nii.gz"], label)},
                          {"background": 0, "liver": 1}, "zscore", relabel={1: 1})
    assert not (tmp_path / "Dataset700_X").exists()
