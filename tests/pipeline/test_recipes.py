"""Recipes and ``nnUNetv2_uda_run``'s command line: every packaged recipe is a valid, complete config that builds
its step graph; the layers (recipe, config file, flags, --set) combine as documented; a bare call, an unknown recipe
and a bad --set are one-line errors. No training here (milliseconds in process, a few short subprocesses)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from commands import run_in_process

from nnunetv2_uda.pipeline.config import ConfigError, config_from_dict
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pipeline.recipes import (
    load_recipe,
    parse_set,
    recipe_file,
    recipe_header,
    recipe_names,
    recipe_purpose,
    run_config,
)
from nnunetv2_uda.pipeline.report import per_sequence_table, table7, write_report
from nnunetv2_uda.pipeline.rows import ROWS
from nnunetv2_uda.pipeline.steps import build_steps, row_plan

EXPECTED_RECIPES = {"cpu", "gpu", "paper", "demo"}
REPOSITORY = Path(__file__).resolve().parents[2]
PATHS = {"ct_dataset": "/data/ct", "mri_dataset": "/data/mri", "output_folder": "/data/out"}


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_uda_run", *args, cwd=cwd)


def test_the_documented_recipes_are_packaged():
    assert EXPECTED_RECIPES <= set(recipe_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_RECIPES))
def test_every_recipe_is_a_valid_flat_config_with_a_header_and_builds_its_steps(name):
    values = load_recipe(name)
    assert not {"ct_dataset", "mri_dataset", "output_folder", "dataset_id_base", "recipe"} & set(values)
    config = config_from_dict({**values, **PATHS, "validation_labels": "/data/labels"}, f"recipe {name}")
    for sequences in ({"a": "T2"}, {"a": "T1", "b": "T2", "c": "DWI"}):  # case -> sequence
        rows, _ = row_plan(config, sequences)
        steps, scored = build_steps(config, rows)
        assert set(scored) == set(rows) and any(step.name.startswith("evaluate_") for step in steps)
    header = recipe_header(name)
    assert header.startswith(f"{name}: ") and "Measured:" in header and "Time:" in header, header
    assert recipe_purpose(name) and "\n" not in recipe_purpose(name)


def test_cpu_and_gpu_recipes_share_the_best_chains_choices():
    cpu, gpu = load_recipe("cpu"), load_recipe("gpu")
    for key in ("largest_component", "ablation", "source_warm_start", "warm_start"):
        assert cpu[key] == gpu[key], key
    assert cpu["trainer"] == "nnUNetTrainerUDAQuickLocationScaleNoMirroring"
    assert gpu["trainer"] == "nnUNetTrainerUDASmallLocationScaleNoMirroring" and gpu["configuration"] == "3d_fullres"
    paper = load_recipe("paper")
    assert "asit_mdm_plf" in paper["ablation"] and paper["trainer"] == "nnUNetTrainerUDASmall"
    assert all(ROWS[row].rounds >= 1 for row in (cpu["ablation"][-1], paper["ablation"][-1]))  # last row has PLF


def test_cpu_recipe_is_the_experiment_its_header_names():
    """The cpu recipe's score is that of the experiment its header cites; its settings must be that experiment's,
    less the keys that describe the experiment's data (its MRI sequences) and the device bench scripts add."""
    experiment = re.search(r"bench/experiments/(\w+)/", recipe_header("cpu")).group(1)
    recorded = yaml.safe_load((REPOSITORY / "bench" / "experiments" / experiment / "recipe.yaml").read_text())
    data_keys = {"mri_default_sequence", "sequence_order", "dataset_id_base", "device"}
    cpu = load_recipe("cpu")
    assert {key: cpu.get(key) for key in set(recorded) - data_keys} == \
        {key: value for key, value in recorded.items() if key not in data_keys}
    assert set(cpu) - set(recorded) <= data_keys


def test_set_values_are_yaml_and_dotted_keys_nest():
    values = parse_set(["self_training.epochs=5", "self_training.keep_fraction=0.25", "ablation=[only_ct, asit]",
                        "organs=null", "device=cpu", "largest_component=false"])
    assert values == {"self_training": {"epochs": 5, "keep_fraction": 0.25}, "ablation": ["only_ct", "asit"],
                      "organs": None, "device": "cpu", "largest_component": False}
    for bad in ("epochs", "=5", "a..b=1", "a=[1"):
        with pytest.raises(ConfigError, match="--set"):
            parse_set([bad])


def test_layers_later_wins_key_by_key(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"recipe": "cpu", "ct_dataset": "ct", "mri_dataset": "mri",
                                           "output_folder": "out", "self_training": {"epochs": 7},
                                           "num_processes": 4}))
    config = run_config(config_file=config_file, paths={"output_folder": str(tmp_path / "elsewhere")},
                        assignments=["num_processes=1", "final.epochs=2"])
    cpu = load_recipe("cpu")
    assert config.trainer == cpu["trainer"]  # from the recipe
    assert config.self_training.epochs == 7  # the file over the recipe ...
    assert config.self_training.num_snapshots == cpu["self_training"]["num_snapshots"]  # ... merged key by key
    assert config.num_processes == 1 and config.final.epochs == 2  # --set over both
    assert config.final.max_ct_cases == cpu["final"]["max_ct_cases"]
    assert config.ct_dataset == tmp_path / "ct"  # relative to the config file
    assert config.output_folder == tmp_path / "elsewhere"  # the flag over the file
    assert run_config("cpu", config_file).trainer == cpu["trainer"]  # the same recipe named twice is fine
    with pytest.raises(ConfigError, match="differs from 'recipe: cpu'"):
        run_config("gpu", config_file)


def test_path_flags_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = run_config("cpu", paths={"ct_dataset": "ct", "mri_dataset": "~/mri", "output_folder": "out",
                                      "test_images": "new_mri"}, assignments=["validation_labels=labels"])
    assert config.ct_dataset == tmp_path / "ct" and config.test_images == tmp_path / "new_mri"
    assert config.validation_labels == tmp_path / "labels" and config.mri_dataset == Path("~/mri").expanduser()


def test_a_config_file_without_a_recipe_stands_alone(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text('{"ct_dataset": "ct", "mri_dataset": "mri", "output_folder": "out", "ablation": "only_ct"}')
    config = run_config(config_file=config_file)
    assert config.rows == ["only_ct"] and config.trainer == config_from_dict(PATHS).trainer


def test_problems_of_every_layer_are_named_together():
    with pytest.raises(ConfigError) as error:
        run_config("cpu", assignments=["self_training.epochs=many", "colour=blue"])
    message = str(error.value)
    for expected in ("recipe cpu + the command line", "'self_training.epochs'", "'colour': unknown key"):
        assert expected in message, message
    with pytest.raises(ConfigError, match="'ct_dataset': required"):
        run_config("cpu", paths={"mri_dataset": "mri", "output_folder": "out"})


def test_unknown_recipe_is_named_with_the_choices():
    with pytest.raises(ConfigError, match="unknown recipe 'fastest'.*cpu, demo, gpu, paper"):
        recipe_file("fastest")


def test_list_recipes_prints_every_header():
    result = run_cli("--list_recipes")
    assert result.returncode == 0, result.stderr
    for name in recipe_names():
        assert f"{name} (" in result.stdout
        assert recipe_header(name).splitlines()[0] in result.stdout


def test_bare_call_is_one_line_listing_the_recipes():
    result = run_cli()
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnUNetv2_uda_run: error: choose a recipe")
    for name in recipe_names():
        assert f"{name}: {recipe_purpose(name)}" in lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--recipe", "fastest", "--ct", "ct", "--mri", "mri", "-o", "out"], "unknown recipe 'fastest'"),
    (["--recipe", "cpu", "--ct", "ct", "--mri", "mri", "-o", "out", "--set", "epochs"], "expected KEY=VALUE"),
    (["--recipe", "cpu", "--ct", "ct", "-o", "out"], "'mri_dataset': required"),
    (["--recipe", "cpu", "--ct", "ct", "--mri", "mri", "-o", "out", "--set", "trainer=nnUNetTrainerFast"],
     "'trainer': 'nnUNetTrainerFast' is not one of"),
])
def test_command_line_errors_are_one_line(args, expected, tmp_path):
    result = run_cli(*args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_help_names_every_flag():
    result = run_cli("-h")
    assert result.returncode == 0
    for flag in ("--recipe", "--ct", "--mri", "-o", "--test_images", "--set", "--list_recipes", "--check",
                 "--verbose", "config"):
        assert flag in result.stdout, flag


def network_outputs(dataset_id: int, dataset: str, trainer: str, root: Path) -> dict:
    folder = root / "results" / dataset / f"{trainer}__nnUNetPlansUDASmall__2d"
    return {"dataset_id": dataset_id, "dataset": dataset, "trainer": trainer, "plans": "nnUNetPlansUDASmall",
            "configuration": "2d", "fold": "all", "model_folder": str(folder),
            "checkpoint": str(folder / "fold_all" / "checkpoint_final.pth")}


def test_report_ends_with_the_final_network_and_the_commands_that_use_it(tmp_path):
    """The last network that predicts on its own (not the self-training one, which only makes snapshots) is named as
    nnU-Net names it, with the prediction command for new MRI and the test images' predictions."""
    steps = {"train_ct": network_outputs(600, "Dataset600_UDASourceCT", "nnUNetTrainerUDAQuick_2epochs_5iters_noval",
                                         tmp_path),
             "selftrain_ct": {**network_outputs(609, "Dataset609_UDASelfTrainCT", "nnUNetTrainerUDAQuickPseudoLabel",
                                                tmp_path), "snapshots": str(tmp_path / "snapshots")},
             "final_ct": network_outputs(611, "Dataset611_UDAFinalCT", "nnUNetTrainerUDAQuick_1epochs_5iters",
                                         tmp_path),
             "predict_ct": {"test": str(tmp_path / "out" / "predictions" / "ct" / "test_largest_component")}}
    manifest = Manifest(tmp_path / "out")
    for name, outputs in steps.items():
        manifest.mark_started(name, "hash", {})
        manifest.mark_finished(name, outputs, 1.0)
    config = config_from_dict({**PATHS, **load_recipe("cpu")}).to_dict()
    run_info = {"rows": ["only_ct", "only_ct_plf"], "notes": [], "sequences": {}, "config": config,
                "steps": list(steps),
                "descriptions": dict.fromkeys(steps, "a step"), "statuses": dict.fromkeys(steps, "ran")}
    report = write_report(tmp_path / "out", manifest, run_info).read_text()
    final = report.split("## The final network and how to use it")[1]
    assert "| Dataset611_UDAFinalCT | nnUNetTrainerUDAQuick_1epochs_5iters | nnUNetPlansUDASmall | 2d | all |" \
        in final
    assert ("nnUNetv2_predict_fast -i NEW_MRI_FOLDER -o SEGMENTATION_FOLDER -d 611 -tr "
            "nnUNetTrainerUDAQuick_1epochs_5iters -p nnUNetPlansUDASmall -c 2d -f all -device cpu") in final
    assert "nnUNetv2_uda_largest_component SEGMENTATION_FOLDER" in final  # the cpu recipe cleans its predictions
    assert ("nnUNetv2_export_model_to_zip -d Dataset611_UDAFinalCT -o model.zip -c 2d -tr "
            "nnUNetTrainerUDAQuick_1epochs_5iters -p nnUNetPlansUDASmall -f all") in final
    assert steps["predict_ct"]["test"] in final


def test_report_scores_each_row_per_mri_sequence(tmp_path):
    """With several MRI sequences the report adds each row's average (a case's mean over its organs, averaged over
    cases) per sequence, from its per-case metrics; with one sequence there is no such table."""
    manifest = Manifest(tmp_path / "out")
    metrics = {"only_ct": [("a", "liver", 0.5, 0.4), ("a", "spleen", 0.7, 0.6), ("b", "liver", 0.9, 0.8)],
               "only_ct_mdm": [("a", "liver", 0.7, 0.6), ("b", "liver", 0.9, 0.8), ("c", "liver", 0.3, 0.2)]}
    for row, lines in metrics.items():
        folder = tmp_path / "evaluation" / row
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("case,organ,DSC,NSD\n" + "".join(f"{c},{o},{d},{n}\n"
                                                                           for c, o, d, n in lines))
        manifest.mark_started(f"evaluate_{row}", "hash", {})
        manifest.mark_finished(f"evaluate_{row}", {"folder": str(folder)}, 1.0)
    table = per_sequence_table(manifest, ["only_ct", "only_ct_mdm"], {"a": "T1", "b": "T2", "c": "T1"})
    assert table.splitlines()[0] == "| Method | T1 (2 cases) | T2 (1 case) | Average |"
    assert table.splitlines()[2] == "| only CT | 60.00 / 50.00 | 90.00 / 80.00 | 75.00 / 65.00 |"
    assert table.splitlines()[3] == "| only CT + MDM | 50.00 / 40.00 | 90.00 / 80.00 | 63.33 / 53.33 |"
    assert per_sequence_table(manifest, ["only_ct"], {"a": "T2", "b": "T2"}) is None
    trained = per_sequence_table(manifest, ["only_ct"], {"a": "T1", "b": "T2"}, trained=["spleen"])
    assert trained.splitlines()[2] == "| only CT | 70.00 / 60.00 | n/a / n/a | 70.00 / 60.00 |"  # b: no spleen scored


def test_table7_adds_the_mean_over_the_trained_organs():
    """With 'organs' set the other evaluated organs are scored as misses; the report adds the mean over the trained
    ones, the figure a recipe's header quotes."""
    def scores(dsc: float) -> dict:
        return {"DSC": {"mean": dsc}, "NSD": {"mean": dsc / 2}}

    summary = {"liver": scores(0.8), "spleen": scores(0.6), "stomach": scores(0.0), "mean": scores(0.4667)}
    table = table7({"only_ct_plf": {"summary": summary}}, trained=["liver", "spleen"])
    assert "Trained organs" in table.splitlines()[0]
    assert table.splitlines()[-1].endswith("| 70.00 / 35.00 |")
    assert "Trained organs" not in table7({"only_ct_plf": {"summary": summary}})
