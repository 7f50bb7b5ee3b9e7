"""The real-data benchmarks' argument handling and bench/ct2mr_real.py's config generation (the runs themselves,
25 to 90 minutes, are not run in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ct2mr_real.py"
EXTRA_ROWS = BENCH.parent / "extra_rows_real.py"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("command", [[BENCH], [EXTRA_ROWS, "--row", "gin"], [EXTRA_ROWS, "--row", "anatomy_space"]])
def test_without_data_it_says_so_and_exits(command, tmp_path):
    result = subprocess.run([sys.executable, *command, "--data", tmp_path / "absent", "--output", tmp_path / "out"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "not run in CI" in result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED_DATA / "Dataset802_CHAOST2").is_dir(), reason="real data not present")
@pytest.mark.parametrize("setting", ["paper", "unet", "unet_ct_plf", "organs4", "organs4_plf", "organs4_plf2",
                                     "unet_plf"])
def test_dry_run_checks_config_and_leaves_mdm_out(setting, tmp_path, nnunet_env):
    result = subprocess.run([sys.executable, BENCH, "--dry_run", "--output", tmp_path, "--setting", setting],
                            env=nnunet_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    if setting.startswith("organs4") or setting == "unet_plf":  # no ASIT row, so nothing about MDM to say
        rows = "only_ct, cyclegan, only_ct_plf" + (", cyclegan_plf" if setting != "organs4" else "") \
            + (", cyclegan_plf2" if setting == "organs4_plf2" else "")
        assert f"rows: {rows}\n" in result.stdout and "evaluate_only_ct_plf" in result.stdout
    else:
        rows = "only_ct, cyclegan, asit, asit_plf" + (", only_ct_plf" if setting == "unet_ct_plf" else "")
        assert "MDM is left out" in result.stdout and f"rows: {rows}\n" in result.stdout
        assert "evaluate_asit_plf" in result.stdout and "mdm:" not in result.stdout
    config = yaml.safe_load((tmp_path / "ct2mr_real.yaml").read_text())
    assert config["configuration"] == "2d" and config["validation_labels"].endswith("labelsEval")
    assert ("--generator" in config["translator"]["extra_args"]) == (setting != "paper")
    four = ["liver", "right kidney", "left kidney", "spleen"]
    assert config.get("organs") == (four if setting.startswith("organs4") else None)
    assert not (tmp_path / "pipeline" / "manifest.json").exists()  # nothing ran


def test_extra_rows_name_the_row_choices():
    result = subprocess.run([sys.executable, EXTRA_ROWS, "--row", "typo"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "anatomy_space" in result.stderr and "gin" in result.stderr


def test_help_explains_every_setting():
    result = subprocess.run([sys.executable, BENCH, "-h"], capture_output=True, text=True, timeout=120)
    choices = result.stdout.split("--setting {", 1)[1].split("}", 1)[0].split(",")
    help_text = " ".join(result.stdout.split())
    assert result.returncode == 0 and len(choices) >= 8
    assert all(f"{choice}: " in help_text for choice in choices), choices
