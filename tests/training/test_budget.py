"""Budget variants: any <Trainer>_<E>epochs[_<I>iters] name is a trainer nnU-Net can find."""

from __future__ import annotations

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_uda.training import budget
from nnunetv2_uda.training.small_trainer import nnUNetTrainerUDASmall


def test_name_round_trip():
    assert budget.budget_trainer_name("nnUNetTrainerUDASmall", 5) == "nnUNetTrainerUDASmall_5epochs"
    assert budget.budget_trainer_name("nnUNetTrainerUDASmall", 5, 20) == "nnUNetTrainerUDASmall_5epochs_20iters"
    assert budget.budget_trainer_name("nnUNetTrainerUDAQuick", 5, 20, final_validation=False) == \
        "nnUNetTrainerUDAQuick_5epochs_20iters_noval"


def test_nnunet_lookup_returns_a_subclass_of_the_base_trainer():
    variant = recursive_find_trainer_class_by_name("nnUNetTrainerUDASmall_7epochs_3iters")
    assert issubclass(variant, nnUNetTrainerUDASmall)
    assert variant.__name__ == "nnUNetTrainerUDASmall_7epochs_3iters"
    assert variant is recursive_find_trainer_class_by_name("nnUNetTrainerUDASmall_7epochs_3iters")


def test_any_trainer_can_be_the_base():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    variant = budget.make_budget_trainer("nnUNetTrainer_13epochs_4iters")
    assert variant.__mro__[1] is nnUNetTrainer


def test_variant_trains_the_requested_budget(tiny_plans):
    import json

    import torch

    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}  # nnUNetv2_train adds this key
    dataset_json = json.loads((tiny_plans.parent / "dataset.json").read_text())
    trainer = budget.make_budget_trainer("nnUNetTrainerUDASmall_3epochs_10iters")(
        plans, "2d", 0, dataset_json, torch.device("cpu"))
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (3, 10, 2)
    assert trainer.initial_lr == 0.01


@pytest.mark.parametrize("name", ["nnUNetTrainerUDASmall_0epochs", "nnUNetTrainerUDASmall_2epochs_0iters"])
def test_empty_budgets_are_refused(name):
    with pytest.raises(ValueError, match="at least 1"):
        budget.make_budget_trainer(name)


def test_other_names_are_not_budgets():
    assert not hasattr(budget, "nnUNetTrainerUDASmall_fast")
    with pytest.raises(ValueError, match="not a budget trainer name"):
        budget.make_budget_trainer("nnUNetTrainerUDASmall")


def test_noval_variant_skips_the_final_validation_pass(tiny_plans):
    import json

    import torch

    plans = {**json.loads(tiny_plans.read_text()), "continue_training": False}
    dataset_json = json.loads((tiny_plans.parent / "dataset.json").read_text())
    trainer = recursive_find_trainer_class_by_name("nnUNetTrainerUDAQuick_2epochs_3iters_noval")(
        plans, "2d", 0, dataset_json, torch.device("cpu"))
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (2, 3)
    trainer.perform_actual_validation()  # the stock pass would fail here: the trainer is not even initialized
    assert "final validation skipped" in open(trainer.log_file).read()
    with_validation = budget.make_budget_trainer("nnUNetTrainerUDAQuick_2epochs_3iters")
    assert with_validation.perform_actual_validation is not type(trainer).perform_actual_validation
