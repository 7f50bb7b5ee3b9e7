"""Loading a model finds its trainer class by importing the module that defines it, not every trainer module
(nnU-Net's search imports all of them, and what they import, on each prediction's start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LOOKUP = """
import json, sys
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
found = recursive_find_trainer_class_by_name(sys.argv[1])
trainers = ("nnunetv2.training.nnUNetTrainer.variants.", "nnunetv2.training.nnUNetTrainer.primus.",
            "nnunetv2_uda.training.")
imported = sorted(name for name in sys.modules if name.startswith(trainers))
print(json.dumps({"class": f"{found.__module__}.{found.__qualname__}", "imported": imported}))
"""


def lookup(name: str) -> dict:
    result = subprocess.run([sys.executable, "-c", LOOKUP, name], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_our_budget_trainer_imports_only_its_modules():
    found = lookup("nnUNetTrainerUDAQuick_3epochs_40iters")
    assert found["class"] == "nnunetv2_uda.training.budget.nnUNetTrainerUDAQuick_3epochs_40iters"
    # nnU-Net's search imports every module of its trainer folder first (benchmarking variants, Primus, ...); here
    # only what the class's own module imports (its nnUNetTrainerAdam base) is there
    assert [name for name in found["imported"] if name.startswith("nnunetv2.")] == [
        "nnunetv2.training.nnUNetTrainer.variants.optimizer",
        "nnunetv2.training.nnUNetTrainer.variants.optimizer.nnUNetTrainerAdam"]
    assert "nnunetv2_uda.training.quick_trainer" in found["imported"]
    assert "nnunetv2_uda.training.gin_trainers" not in found["imported"]


@pytest.mark.slow
def test_nnunets_variant_is_found_where_nnunet_finds_it():
    found = lookup("nnUNetTrainer_5epochs")
    assert found["class"] == ("nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs."
                              "nnUNetTrainer_5epochs")
    assert found["imported"] == ["nnunetv2.training.nnUNetTrainer.variants.training_length",
                                 "nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs"]
