"""Every shipped recipe and every bench experiment, checked and planned in-process (no data needed); the real-data
benchmarks' argument handling, their dry runs where ../shared/data exists (the runs themselves, 25 to 90 minutes,
are not run in tests), the filing of a run's report, and bench/label_sides.py's side check."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from commands import run_script_in_process

from nnunetv2_uda.pipeline.config import config_from_dict
from nnunetv2_uda.pipeline.steps import build_steps, row_plan

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "ct2mr_real.py"
LABEL_SIDES = BENCH.parent / "label_sides.py"
EXPERIMENTS = BENCH.parent / "experiments"
RECIPES = REPO / "nnunetv2_uda" / "recipes"
SHARED_DATA = REPO.parent / "shared" / "data"
MACHINE_KEYS = ("ct_dataset", "mri_dataset", "validation_labels", "output_folder", "device")
MACHINE_ROOTS = ("/tmp/", "/work/", "/home/", "/root/")  # a filed run shows $DATA, $OUTPUT, $nnUNet_* instead
EXPERIMENT_NAMES = sorted(folder.name for folder in EXPERIMENTS.iterdir() if (folder / "recipe.yaml").is_file())
RECIPE_FILES = sorted(RECIPES.glob("*.yaml")) + [EXPERIMENTS / name / "recipe.yaml" for name in EXPERIMENT_NAMES]


def recipe_name(path: Path) -> str:
    return path.parent.name if path.name == "recipe.yaml" else path.stem


def planned_steps(values: dict, root: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """The rows, each row's scored step and the step names ``nnUNetv2_uda_run`` would plan for ``values``, with
    dummy paths; the MRI has the recipe's sequences (two when it names none, so MDM rows stay in)."""
    config = config_from_dict({**values, "ct_dataset": str(root / "ct"), "mri_dataset": str(root / "mri"),
                               "validation_labels": str(root / "labels"), "output_folder": str(root / "out")})
    sequences = {f"case{index}": sequence for index, sequence in enumerate(config.sequence_order or ["T1", "T2"])}
    rows, _ = row_plan(config, sequences)
    steps, scored = build_steps(config, rows)
    return rows, scored, [step.name for step in steps]


def test_experiments_exist_for_the_default_and_every_old_setting():
    """The experiments replace the settings dict of bench/ct2mr_real.py one for one, and the default experiment is
    the chain of the cpu recipe (the same settings but for the machine's device and the CHAOS T2 sequence tag)."""
    assert {"paper", "gin", "unet", "organs4_asit", "organs13_gin_lcc_nomirror", "unet_plf"} <= set(EXPERIMENT_NAMES)
    assert len(EXPERIMENT_NAMES) == 29 and {path.stem for path in RECIPES.glob("*.yaml")} >= {"cpu", "gpu", "paper"}
    bench = load_bench()
    default, cpu = bench.load_recipe(bench.DEFAULT_EXPERIMENT), yaml.safe_load((RECIPES / "cpu.yaml").read_text())
    differing = {key for key in set(default) | set(cpu) if default.get(key) != cpu.get(key)}
    assert differing <= {"device", "mri_default_sequence", "sequence_order"}, differing


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda path: recipe_name(path))
def test_every_recipe_is_valid_and_plans_its_steps(path, tmp_path):
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith(f"# {recipe_name(path)}: "), "opens with a comment header naming it"
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "measured" in header.lower(), "the header says what was measured, or that nothing was"
    rows, scored, steps = planned_steps(yaml.safe_load(text), tmp_path)  # a key the schema lacks is refused
    assert rows and set(scored) == set(rows)
    assert all(scored[row] in steps and f"evaluate_{row}" in steps for row in rows if not scored[row].startswith(
        "filter_")), steps


def translator_flags_as_keys(config: dict) -> dict:
    """A run recorded before the translator settings were keys of their own gave them as flags (``extra_args``)."""
    translator = dict(config["translator"])
    flags = translator.pop("extra_args", [])
    translator.update({flag.removeprefix("--"): yaml.safe_load(value)
                       for flag, value in zip(flags[::2], flags[1::2], strict=True)})
    return {**config, "translator": translator}


def ranking_as_key(config: dict) -> dict:
    """A run recorded before ``sequence_ranking`` was a key ranked MDM's sequences, where it ranked them at all (no
    ``sequence_order``), by snapshot uncertainty."""
    return {"sequence_ranking": "uncertainty", **config} if config.get("sequence_order") is None else config


def precision_as_key(config: dict) -> dict:
    """A run recorded before ``cpu_bf16`` was a key trained in float32."""
    return {"cpu_bf16": False, **config}


@pytest.mark.parametrize("name", EXPERIMENT_NAMES)
def test_every_experiment_has_its_files_without_machine_paths(name):
    folder = EXPERIMENTS / name
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert not set(recipe) & set(MACHINE_KEYS), "the bench adds the paths and the device"
    assert "dataset_id_base" not in recipe, "the run finds free dataset ids and records them in its manifest"
    assert recipe["mri_default_sequence"] == "T2"
    if (folder / "target.yaml").is_file():  # several sequences: MDM ranks them itself
        assert recipe["sequence_order"] is None and len(yaml.safe_load((folder / "target.yaml").read_text())[
            "mri_datasets"]) > 1
    else:  # CHAOS T2 alone
        assert recipe["sequence_order"] == ["T2"]
    assert (folder / "rules.md").read_text().split("\n\n")[1].startswith("Written before the run, commit ")
    assert (folder / "notes.md").is_file()
    for text_file in [*folder.rglob("*.md"), *folder.rglob("*.yaml")]:
        assert not any(root in text_file.read_text() for root in MACHINE_ROOTS), text_file
    for run in (folder / "runs").glob("*") if (folder / "runs").is_dir() else ():
        assert run.name.isdigit() and (run / "report.md").is_file() and (run / "ct2mr_real.yaml").is_file()
        config = precision_as_key(ranking_as_key(translator_flags_as_keys(
            yaml.safe_load((run / "ct2mr_real.yaml").read_text()))))
        ran = {key: value for key, value in config.items() if key not in (*MACHINE_KEYS, "dataset_id_base")}
        assert ran["ablation"] == [row for row in recipe["ablation"] if row in ran["ablation"]], \
            f"{run} ran the recipe's rows or, with --rows, some of them"
        assert {**ran, "ablation": recipe["ablation"]} == recipe, \
            f"{run} ran exactly the recipe (dataset ids: set by hand before they were found automatically)"


def test_bench_scripts_import_the_package_not_each_other():
    scripts = sorted(BENCH.parent.glob("*.py"))
    for script in scripts:
        tree = ast.parse(script.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not imported & {other.stem for other in scripts}, script


def test_without_data_it_says_so_and_exits(tmp_path):
    result = run_script_in_process(BENCH, "--data", tmp_path / "absent", "--output", tmp_path / "out")
    assert result.returncode == 0 and "not run in CI" in result.stdout
    assert not (tmp_path / "out").exists()


def test_list_prints_every_experiment_header_and_unknown_names_are_refused():
    listed = run_script_in_process(BENCH, "--list")
    assert listed.returncode == 0, listed.stderr
    assert all(f"# {name}: " in listed.stdout for name in EXPERIMENT_NAMES)
    assert "# Rules: rules.md (written before the run" in listed.stdout
    typo = run_script_in_process(BENCH, "--experiment", "organs5")
    assert typo.returncode == 2 and "organs13_gin_lcc_nomirror" in typo.stderr and "Traceback" not in typo.stderr


def test_rows_asks_for_a_subset_of_the_experiments_rows_in_its_order():
    bench = load_bench()
    rows = ["only_ct", "only_ct_mdm", "only_ct_plf", "only_ct_mdm_plf"]
    assert bench.chosen_rows(rows, None) == rows
    assert bench.chosen_rows(rows, ["only_ct_mdm", "only_ct"]) == ["only_ct", "only_ct_mdm"]
    typo = run_script_in_process(BENCH, "--experiment", "organs13_gin_lcc_nomirror", "--rows", "only_ct", "asit")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "--rows: asit not among the experiment's rows (only_ct, only_ct_plf)" in typo.stderr


def load_bench():
    """bench/ct2mr_real.py as a module (it imports only the package, so no path set-up is needed)."""
    spec = importlib.util.spec_from_file_location("ct2mr_real_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_finished_run_is_filed_under_the_next_number_without_machine_paths(tmp_path):
    bench = load_bench()
    data, output = tmp_path / "data", tmp_path / "out"
    pipeline = output / "pipeline"
    (pipeline / "figures").mkdir(parents=True)
    (pipeline / "figures" / "box.png").write_bytes(b"\x89PNG")
    (pipeline / "report.md").write_text(f"- CT dataset: `{data}/Dataset801_BTCVCT`\n- model: "
                                        f"`{output}/nnUNet_results/Dataset999/plans`\n")
    config = output / "ct2mr_real.yaml"
    config.write_text(f"ct_dataset: {data}/Dataset801_BTCVCT\noutput_folder: {output}/pipeline\n")
    experiment = tmp_path / "experiments" / "x"
    (experiment / "runs" / "1").mkdir(parents=True)
    (experiment / "runs" / "1" / "report.md").write_text("an earlier run\n")
    (experiment / "runs" / ".partial-1-2-abc").mkdir()  # a staging folder left by a killed filing is no run
    paths = bench.machine_paths(data, output, {"nnUNet_results": str(output / "nnUNet_results")})

    filed = bench.file_run(pipeline, config, experiment, paths)
    assert filed == experiment / "runs" / "2"
    assert (filed / "report.md").read_text() == ("- CT dataset: `$DATA/Dataset801_BTCVCT`\n- model: "
                                                 "`$nnUNet_results/Dataset999/plans`\n")
    assert (filed / "ct2mr_real.yaml").read_text() == ("ct_dataset: $DATA/Dataset801_BTCVCT\n"
                                                       "output_folder: $OUTPUT/pipeline\n")
    assert (filed / "figures" / "box.png").read_bytes() == b"\x89PNG"
    assert bench.file_run(pipeline, config, experiment, paths) is None  # the same report again: nothing new
    (pipeline / "report.md").write_text("a resumed run that did more\n")
    assert bench.file_run(pipeline, config, experiment, paths) == experiment / "runs" / "3"
    assert (experiment / "runs" / "1" / "report.md").read_text() == "an earlier run\n"


def test_a_target_of_several_datasets_is_joined_with_its_sidecars_and_evaluation_labels(tmp_path):
    bench = load_bench()
    for name, cases in (("Dataset1_T2", ["t2_a", "t2_b"]), ("Dataset2_T1", ["t1_a"])):
        for case in cases:
            for subfolder, file_name in (("imagesTr", f"{case}_0000.nii.gz"), ("labelsEval", f"{case}.nii.gz")):
                (tmp_path / name / subfolder).mkdir(parents=True, exist_ok=True)
                (tmp_path / name / subfolder / file_name).write_bytes(case.encode())
        (tmp_path / name / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "numTraining": 9}))
    (tmp_path / "Dataset2_T1" / "imagesTr" / "t1_a.json").write_text('{"sequence": "T1in"}')
    target = bench.joined_target([tmp_path / "Dataset1_T2", tmp_path / "Dataset2_T1"], tmp_path / "out" / "target")
    assert sorted(path.name for path in (target / "imagesTr").iterdir()) == [
        "t1_a.json", "t1_a_0000.nii.gz", "t2_a_0000.nii.gz", "t2_b_0000.nii.gz"]
    assert (target / "labelsEval" / "t1_a.nii.gz").read_bytes() == b"t1_a"
    assert json.loads((target / "dataset.json").read_text())["numTraining"] == 3
    assert bench.joined_target([tmp_path / "Dataset1_T2"], target) == target  # rebuilt: nothing stale stays
    assert not (target / "imagesTr" / "t1_a.json").exists()
    assert bench.mri_datasets("organs13_gin_lcc_nomirror") == ["Dataset802_CHAOST2"]
    assert bench.mri_datasets("organs13_gin_lcc_nomirror_t1_mdm") == ["Dataset802_CHAOST2", "Dataset804_CHAOST1"]


@pytest.mark.skipif(not (SHARED_DATA / "Dataset802_CHAOST2").is_dir(), reason="real data not present")
@pytest.mark.parametrize("name", EXPERIMENT_NAMES)
@pytest.mark.slow
def test_dry_run_checks_config_and_leaves_mdm_out(name, tmp_path, nnunet_env):
    result = subprocess.run([sys.executable, BENCH, "--dry_run", "--output", tmp_path, "--experiment", name],
                            env=nnunet_env, capture_output=True, text=True, timeout=300)  # it runs nnUNetv2_uda_run
    assert result.returncode == 0, result.stdout + result.stderr
    recipe = yaml.safe_load((EXPERIMENTS / name / "recipe.yaml").read_text())
    rows, _, _ = planned_steps(recipe, tmp_path)  # the recipe's sequences (CHAOS T2 alone) or two
    assert f"rows: {', '.join(rows)}\n" in result.stdout
    assert all(f"evaluate_{row}:" in result.stdout for row in rows), result.stdout
    several_sequences = (EXPERIMENTS / name / "target.yaml").is_file()
    assert ("  mdm_" in result.stdout) == (several_sequences and any("mdm" in row for row in rows))
    assert ("MDM is left out" in result.stdout) == ("asit_mdm_plf" in recipe["ablation"] and not several_sequences)
    config = yaml.safe_load((tmp_path / "ct2mr_real.yaml").read_text())
    assert {key: value for key, value in config.items() if key not in MACHINE_KEYS} == recipe
    assert config["validation_labels"].endswith("labelsEval") and config["device"] == "cpu"
    assert not (tmp_path / "pipeline" / "manifest.json").exists()  # nothing ran
    assert not list((EXPERIMENTS / name).glob("runs/.partial*"))


def test_label_sides_counts_each_label_per_image_half(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "right kidney": 1,
                                                                   "left kidney": 2, "spleen": 3}}))
    segmentation = np.zeros((2, 4, 8), dtype=np.uint8)
    segmentation[:, :, 1] = 1  # 8 voxels, all in the half x < 4
    segmentation[0, 0, 6] = 2
    segmentation[0, 1, 2] = 2  # left kidney: 1 of 2 voxels in that half
    sitk.WriteImage(sitk.GetImageFromArray(segmentation), str(tmp_path / "case.nii.gz"))
    result = run_script_in_process(LABEL_SIDES, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "right kidney 1.00 of 8 voxels, left kidney 0.50 of 2 voxels, spleen nan of 0 voxels" in result.stdout


def test_label_sides_names_a_truncated_label_map(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 32, 32), dtype=np.uint8)), str(tmp_path / "case.nii.gz"))
    whole = (tmp_path / "case.nii.gz").read_bytes()
    (tmp_path / "case.nii.gz").write_bytes(whole[:len(whole) // 2])
    result = run_script_in_process(LABEL_SIDES, tmp_path)
    assert result.returncode != 0 and "case.nii.gz" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
