"""Budget variants of any trainer, created on demand from their name.

nnU-Net's habit for short schedules is one class per budget (``nnUNetTrainer_5epochs``). Tests, CPU users and our
pipeline need arbitrary budgets, so this module answers any name of the form

    <TrainerName>_<E>epochs              e.g. nnUNetTrainerUDASmall_50epochs
    <TrainerName>_<E>epochs_<I>iters     e.g. nnUNetTrainerUDASmall_2epochs_5iters
    <TrainerName>_<E>epochs[_<I>iters][_lr<M>en<X>][_noval]
                                         e.g. nnUNetTrainerUDAQuick_2epochs_100iters_lr2en4_noval

with a subclass of <TrainerName> (found the way nnU-Net finds trainers) that trains E epochs of I iterations
(validation: max(1, I // 5) iterations per epoch). ``_lr<M>en<X>`` sets the initial learning rate to M * 10^-X
(nnU-Net's own spelling, as in ``nnUNetTrainerVanillaAdam3en4``), e.g. to fine-tune a warm-started network below the
rate it was trained at from scratch. ``_noval`` skips nnU-Net's final validation pass (predicting every validation
case at the end of training), which costs a short CPU schedule as much as several epochs and is
wasted where the model is used for prediction right away, as in our pipeline.

nnU-Net's lookup asks ``hasattr(module, name)``, which reaches the module-level ``__getattr__`` below (PEP 562), so
``nnUNetv2_train``/``nnUNetv2_predict -tr`` accept these names as they are. The name is the model folder's name,
so every budget gets its own results folder.
"""

from __future__ import annotations

import re

import torch

BUDGET_NAME = re.compile(
    r"^(?P<base>nnUNetTrainer\w*?)_(?P<epochs>\d+)epochs(?:_(?P<iters>\d+)iters)?"
    r"(?:_lr(?P<lr_mantissa>\d+)en(?P<lr_exponent>\d+))?(?P<noval>_noval)?$")

_created: dict[str, type] = {}


def budget_trainer_name(base: str, epochs: int, iterations_per_epoch: int | None = None,
                        final_validation: bool = True, initial_lr: float | None = None) -> str:
    """The class name that :func:`__getattr__` turns into a budget variant of ``base``."""
    name = f"{base}_{epochs}epochs"
    if iterations_per_epoch is not None:
        name += f"_{iterations_per_epoch}iters"
    if initial_lr is not None:
        name += f"_lr{learning_rate_spelling(initial_lr)}"
    return name if final_validation else name + "_noval"


def learning_rate_spelling(learning_rate: float) -> str:
    """2e-4 -> '2en4': nnU-Net's spelling of a learning rate in a class name (only rates below 1 with one to three
    significant digits, which is what anyone fine-tunes with)."""
    for exponent in range(1, 12) if 0 < learning_rate < 1 else ():
        mantissa = learning_rate * 10 ** exponent
        if abs(mantissa - round(mantissa)) < 1e-9 * max(1.0, mantissa) and round(mantissa) >= 1:
            if round(mantissa) >= 1000:
                break
            return f"{round(mantissa)}en{exponent}"
    raise ValueError(f"learning rate {learning_rate!r} cannot be written as <M>en<X> (M an integer below 1000, "
                     f"0 < learning rate < 1)")


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
    initial_lr = int(match["lr_mantissa"]) * 10.0 ** -int(match["lr_exponent"]) if match["lr_mantissa"] else None
    if initial_lr == 0:
        raise ValueError(f"'{name}': the learning rate must be above 0")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(1, iterations // 5)
        if initial_lr is not None:
            self.initial_lr = initial_lr

    def skip_final_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("final validation skipped (_noval budget variant)")

    attributes = {
        "__init__": __init__,
        "__module__": __name__,
        "__doc__": f"{match['base']} trained for {epochs} epochs"
                   + (f" of {iterations} iterations" if iterations else "")
                   + (f" from a learning rate of {initial_lr:g}" if initial_lr else "")
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
