"""The real-data benchmarks' argument handling, bench/ct2mr_real.py's config generation (the runs themselves,
25 to 90 minutes, are not run in tests) and bench/label_sides.py's side check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ct2mr_real.py"
EXTRA_ROWS = BENCH.parent / "extra_rows_real.py"
LABEL_SIDES = BENCH.parent / "label_sides.py"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("command", [[BENCH], [EXTRA_ROWS, "--row", "gin"], [EXTRA_ROWS, "--row", "anatomy_space"]])
def test_without_data_it_says_so_and_exits(command, tmp_path):
    result = subprocess.run([sys.executable, *command, "--data", tmp_path / "absent", "--output", tmp_path / "out"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "not run in CI" in result.stdout
    assert not (tmp_path / "out").exists()


TABLE7 = "only_ct, cyclegan, asit, asit_plf"
ORGANS4 = "only_ct, cyclegan, only_ct_plf"
CYCLEGAN_CHAIN = "only_ct, cyclegan, cyclegan_plf"
CT_CHAIN = "only_ct, only_ct_plf"
# setting -> the rows its config check prints (one MRI sequence: 'asit_mdm_plf' runs as 'asit_plf')
SETTING_ROWS = {
    "paper": TABLE7,
    "gin": CT_CHAIN,
    "unet": TABLE7,
    "unet_ct_plf": f"{TABLE7}, only_ct_plf",
    "organs4": ORGANS4,
    "organs4_plf": f"{ORGANS4}, cyclegan_plf",
    "organs4_plf2": f"{ORGANS4}, cyclegan_plf, cyclegan_plf2",
    "unet_plf": f"{ORGANS4}, cyclegan_plf",
    "organs4_long": CYCLEGAN_CHAIN,
    "organs4_repeat": CYCLEGAN_CHAIN,
    "organs4_gin": CT_CHAIN,
    "organs4_x3": CT_CHAIN,
    "organs4_gin_plf2": f"{CT_CHAIN}, only_ct_plf2",
    "organs4_x3_plf2": f"{CT_CHAIN}, only_ct_plf2",
    "organs4_gin_lcc": CT_CHAIN,
    "organs4_gin_lcc_nomirror": CT_CHAIN,
    "organs13_gin_lcc_nomirror": CT_CHAIN,
    "organs13_gin_lcc_nomirror_asit": f"{CT_CHAIN}, asit",
    "organs13_gin_lcc_nomirror_asit_anatomy": f"{CT_CHAIN}, asit",
    "organs13_gin_lcc_nomirror_table7": f"{CT_CHAIN}, cyclegan, asit",
    "organs13_gin_lcc_nomirror_table7_plf": f"{CT_CHAIN}, cyclegan, asit, asit_plf",
    "organs4_asit": f"{ORGANS4}, cyclegan_plf, cyclegan_plf2, asit, asit_plf",
}


@pytest.mark.skipif(not (SHARED_DATA / "Dataset802_CHAOST2").is_dir(), reason="real data not present")
@pytest.mark.parametrize("setting", SETTING_ROWS)
def test_dry_run_checks_config_and_leaves_mdm_out(setting, tmp_path, nnunet_env):
    result = subprocess.run([sys.executable, BENCH, "--dry_run", "--output", tmp_path, "--setting", setting],
                            env=nnunet_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = SETTING_ROWS[setting]
    assert f"rows: {rows}\n" in result.stdout
    assert all(f"evaluate_{row}:" in result.stdout for row in rows.split(", ")), result.stdout
    assert "mdm:" not in result.stdout
    assert ("MDM is left out" in result.stdout) == ("asit_plf" in rows)  # only ASIT + PLF has MDM to leave out
    config = yaml.safe_load((tmp_path / "ct2mr_real.yaml").read_text())
    assert config["configuration"] == "2d" and config["validation_labels"].endswith("labelsEval")
    unet_generator = setting not in ("paper", "gin")  # the settings after the unet run keep its U-Net generator
    assert ("--generator" in config["translator"]["extra_args"]) == unet_generator
    four = ["liver", "right kidney", "left kidney", "spleen"]
    assert config.get("organs") == (four if setting.startswith("organs4") else None)
    assert ("GIN" in config["trainer"]) == ("gin" in setting)
    assert config.get("largest_component", False) == ("_lcc" in setting)
    assert config["trainer"].endswith("NoMirroring") == ("_nomirror" in setting)
    assert ("--lambda_anatomy" in config["translator"]["extra_args"]) == setting.endswith("_anatomy")
    assert not (tmp_path / "pipeline" / "manifest.json").exists()  # nothing ran


def test_extra_rows_name_the_row_choices():
    result = subprocess.run([sys.executable, EXTRA_ROWS, "--row", "typo"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "anatomy_space" in result.stderr and "gin" in result.stderr


def test_help_explains_every_setting():
    result = subprocess.run([sys.executable, BENCH, "-h"], capture_output=True, text=True, timeout=120)
    choices = result.stdout.split("--setting {", 1)[1].split("}", 1)[0].split(",")
    help_text = " ".join(result.stdout.split())
    assert result.returncode == 0 and sorted(choices) == sorted(SETTING_ROWS)  # every setting has a dry-run test
    assert all(f"{choice}: " in help_text for choice in choices), choices


def test_label_sides_counts_each_label_per_image_half(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "right kidney": 1,
                                                                   "left kidney": 2, "spleen": 3}}))
    segmentation = np.zeros((2, 4, 8), dtype=np.uint8)
    segmentation[:, :, 1] = 1  # 8 voxels, all in the half x < 4
    segmentation[0, 0, 6] = 2
    segmentation[0, 1, 2] = 2  # left kidney: 1 of 2 voxels in that half
    sitk.WriteImage(sitk.GetImageFromArray(segmentation), str(tmp_path / "case.nii.gz"))
    result = subprocess.run([sys.executable, LABEL_SIDES, tmp_path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "right kidney 1.00 of 8 voxels, left kidney 0.50 of 2 voxels, spleen nan of 0 voxels" in result.stdout
