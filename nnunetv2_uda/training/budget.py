"""Budget variants of any trainer, created on demand from their name.

nnU-Net's habit for short schedules is one class per budget (``nnUNetTrainer_5epochs``). Tests, CPU users and our
pipeline need arbitrary budgets, so this module answers any name of the form

    <TrainerName>_<E>epochs              e.g. nnUNetTrainerUDASmall_50epochs
    <TrainerName>_<E>epochs_<I>iters     e.g. nnUNetTrainerUDASmall_2epochs_5iters
    <TrainerName>_<E>epochs[_<I>iters]_noval

with a subclass of <TrainerName> (found the way nnU-Net finds trainers) that trains E epochs of I iterations
(validation: max(1, I // 5) iterations per epoch). ``_noval`` skips nnU-Net's final validation pass (predicting
every validation case at the end of training), which costs a short CPU schedule as much as several epochs and is
wasted where the model is used for prediction right away, as in our pipeline.

nnU-Net's lookup asks ``hasattr(module, name)``, which reaches the module-level ``__getattr__`` below (PEP 562), so
``nnUNetv2_train``/``nnUNetv2_predict -tr`` accept these names as they are. The name is the model folder's name,
so every budget gets its own results folder.
"""

from __future__ import annotations

import re

import torch

BUDGET_NAME = re.compile(
    r"^(?P<base>nnUNetTrainer\w*?)_(?P<epochs>\d+)epochs(?:_(?P<iters>\d+)iters)?(?P<noval>_noval)?$")

_created: dict[str, type] = {}


def budget_trainer_name(base: str, epochs: int, iterations_per_epoch: int | None = None,
                        final_validation: bool = True) -> str:
    """The class name that :func:`__getattr__` turns into a budget variant of ``base``."""
    name = f"{base}_{epochs}epochs"
    if iterations_per_epoch is not None:
        name += f"_{iterations_per_epoch}iters"
    return name if final_validation else name + "_noval"


def make_budget_trainer(name: str) -> type:
    match = BUDGET_NAME.match(name)
    if match is None:
        raise ValueError(f"'{name}' is not a budget trainer name (<Trainer>_<E>epochs[_<I>iters])")
    if name in _created:
        return _created[name]
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    base = recursive_find_trainer_class_by_name(match["base"])
    epochs = int(match["epochs"])
    iterations = int(match["iters"]) if match["iters"] else None
    if epochs < 1 or (iterations is not None and iterations < 1):
        raise ValueError(f"'{name}': epochs and iterations per epoch must be at least 1")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(1, iterations // 5)

    def skip_final_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("final validation skipped (_noval budget variant)")

    attributes = {
        "__init__": __init__,
        "__module__": __name__,
        "__doc__": f"{match['base']} trained for {epochs} epochs"
                   + (f" of {iterations} iterations" if iterations else "")
                   + (", without the final validation pass." if match["noval"] else "."),
    }
    if match["noval"]:
        attributes["perform_actual_validation"] = skip_final_validation
    budget_class = type(name, (base,), attributes)
    _created[name] = budget_class
    return budget_class


def __getattr__(name: str) -> type:
    if BUDGET_NAME.match(name) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return make_budget_trainer(name)
