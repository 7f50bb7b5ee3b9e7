"""One smoke test over trainer names: every trainer a shipped recipe names, and the location-scale ones, trains
with ``nnUNetv2_train`` as a user runs it (its budget variant of one epoch of two iterations on the tiny dataset;
nnU-Net's final validation, which takes most of the time of such a run, is run once, by ``tiny_trained_model``).
What each trainer changes is tested in the module of its class, without training."""

from __future__ import annotations

import pytest

from nnunetv2_uda.pipeline.recipes import load_recipe, recipe_names

# every recipe's trainer, and the location-scale ones whether or not a recipe names them
TRAINERS = sorted({load_recipe(name)["trainer"] for name in recipe_names()}
                  | {"nnUNetTrainerUDAQuickLocationScaleNoMirroring",
                     "nnUNetTrainerUDAQuickLocationScaleInnerAirNoMirroring"})


@pytest.mark.parametrize("trainer", TRAINERS)
def test_nnunetv2_train_runs_it(trainer, train_tiny):
    fold = train_tiny(f"{trainer}_1epochs_2iters_noval")
    assert (fold / "checkpoint_final.pth").is_file()
