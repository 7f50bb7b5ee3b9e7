"""The network of a trained model, built without importing its trainer where importing it would change nothing.

nnU-Net builds the network with the trainer class's static ``build_network_architecture``. Importing any trainer
imports nnU-Net's training stack (data augmentation, a logger that imports matplotlib and seaborn, torch._dynamo):
seconds of start-up, for a call that, in every trainer that does not override the method, is
``nnUNetTrainer.build_network_architecture``: nnU-Net's ``get_network_from_plans`` on the plans' architecture entry.
Whether a trainer overrides it is read from the sources of its class and of its bases, found where nnU-Net's lookup
finds them (:func:`nnunetv2_uda.class_lookup.trainer_modules`); a trainer that does, or one whose classes cannot be
followed in the sources (external trainers, bases that are not plain imported names), is imported and asked.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from torch import nn

from nnunetv2_uda.class_lookup import class_definition, trainer_modules

BASE_TRAINER = ("nnunetv2.training.nnUNetTrainer.nnUNetTrainer", "nnUNetTrainer")
BUILDER = "build_network_architecture"


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it or its packages."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], *rest)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.Module, module: str) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) of a module's top-level ``from ... import ...`` statements."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                package = module.split(".")[:-node.level]
                source = ".".join([*package, source] if source else package)
            for alias in node.names:
                names[alias.asname or alias.name] = (source, alias.name)
    return names


def _keeps_builder(module: str, class_name: str, known: dict[tuple[str, str], bool]) -> bool:
    """Whether ``module.class_name`` gets ``build_network_architecture`` from nnUNetTrainer unchanged: no module on
    the way mentions the method, and every base is followed, through plain imports, to nnUNetTrainer. ``known``:
    the answers so far (bases shared by several parents are read once; a cycle answers False)."""
    key = (module, class_name)
    if key not in known:
        known[key] = False
        known[key] = _reads_as_keeping_builder(module, class_name, known)
    return known[key]


def _reads_as_keeping_builder(module: str, class_name: str, known: dict[tuple[str, str], bool]) -> bool:
    if (module, class_name) == BASE_TRAINER:
        return True
    path = _module_file(module)
    if path is None:
        return False
    source = path.read_text(encoding="utf-8")
    if BUILDER in source:
        return False
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    node = classes.get(class_name)
    if node is None or not node.bases or node.keywords or node.decorator_list:
        return False
    imported = _imported_names(tree, module)
    for base in node.bases:
        if not isinstance(base, ast.Name):
            return False
        if base.id in classes:
            origin = (module, base.id)
        elif base.id in imported:
            origin = imported[base.id]
        else:
            return False
        if not _keeps_builder(*origin, known):
            return False
    return True


def trainer_builds_plans_network(trainer_name: str) -> bool:
    """Whether the trainer named ``trainer_name`` builds its network as nnUNetTrainer does, decided from sources:
    nothing is imported. False where that cannot be told."""
    definition = class_definition(trainer_name)
    for module, path in trainer_modules():
        try:
            source = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if definition.search(source):
            return _keeps_builder(module, trainer_name, {})
    from nnunetv2_uda.training.budget import BUDGET_NAME  # budget variants are created from their name

    match = BUDGET_NAME.match(trainer_name)
    budget = _module_file("nnunetv2_uda.training.budget")
    return (match is not None and budget is not None and BUILDER not in budget.read_text(encoding="utf-8")
            and trainer_builds_plans_network(match["base"]))


def build_network(trainer_name: str, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int) -> nn.Module:
    """The trainer's network for inference (no deep supervision), with untrained weights: what
    ``build_network_architecture`` of the trainer returns. Weights are left uninitialized where they are nnU-Net's
    plans network: the caller loads a checkpoint into every parameter next."""
    if trainer_builds_plans_network(trainer_name):
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        return get_network_from_plans(
            configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
            allow_init=False, deep_supervision=False)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(trainer_name).build_network_architecture(
        plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision=False)
