"""Lets nnU-Net's own lookups find classes that live outside nnunetv2.

nnU-Net resolves trainers, planners, preprocessors, normalization schemes, resampling functions, label managers
and image readers by name with ``nnunetv2.utilities.find_class_by_name.recursive_find_python_class``, which only
walks nnunetv2's folders. Every caller binds that function with ``from ... import`` at import time, so patching it
later changes nothing. Instead, ``install()`` (run by ``nnunetv2_uda.pth`` at every interpreter start, spawned
workers included) puts a finder on ``sys.meta_path`` that waits for that one module to be imported and wraps the
function *before* anyone can bind it. Nothing is imported until nnU-Net itself is, and nnunetv2's files are never
touched. See docs/plugin_mechanism.md.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

LOOKUP_MODULE = "nnunetv2.utilities.find_class_by_name"
LOOKUP_FUNCTION = "recursive_find_python_class"
ENTRY_POINT_GROUP = "nnunetv2.class_packages"
_WRAPPED_MARKER = "__nnunetv2_uda_wrapped__"


class ClassNotFoundError(RuntimeError):
    """A class named in a command or plans file exists neither in nnU-Net nor in any registered plugin package."""

    def __init__(self, class_name: str, searched: Sequence[str]):
        self.class_name = class_name
        self.searched = list(searched)
        places = "\n".join(f"  - {place}" for place in self.searched)
        super().__init__(
            f"Could not find a class or function named '{class_name}'. Searched:\n{places}\n"
            f"Check the spelling (names are case-sensitive). Plugin packages register themselves in the "
            f"'{ENTRY_POINT_GROUP}' entry-point group; external trainers can also be given with nnUNet_extTrainer."
        )


def plugin_packages() -> list[str]:
    """Dotted names of the packages registered in the entry-point group, in a stable order."""
    from importlib.metadata import entry_points  # only on a lookup miss: keeps interpreter start-up cheap

    return sorted({ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _nnunet_roots() -> list[str]:
    """Folders whose lookups we extend: nnunetv2's own tree (not arbitrary folders, e.g. nnUNet_extTrainer)."""
    spec = importlib.util.find_spec("nnunetv2")
    return [os.path.abspath(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _is_within(folder: str, roots: Sequence[str]) -> bool:
    folder = os.path.abspath(folder)
    return any(os.path.commonpath([folder, root]) == root for root in roots)


def _is_trainer_search(folder: str) -> bool:
    return os.path.normpath(folder).endswith(os.path.join("training", "nnUNetTrainer"))


def _external_trainers_configured() -> bool:
    return bool(os.environ.get("nnUNet_extTrainer", "").strip())


def _module_files(folder: str, module: str) -> Iterator[tuple[str, str]]:
    """(module name, file) of every module under ``folder``, in nnU-Net's search order: a folder's modules first,
    then its subpackages."""
    found = list(pkgutil.iter_modules([folder]))
    for info in found:
        if not info.ispkg:
            yield f"{module}.{info.name}", os.path.join(folder, f"{info.name}.py")
    for info in found:
        if info.ispkg:
            yield from _module_files(os.path.join(folder, info.name), f"{module}.{info.name}")


def _source_matches(path: str, pattern: re.Pattern) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return pattern.search(handle.read()) is not None
    except (OSError, UnicodeDecodeError):
        return False


def trainer_modules() -> list[tuple[str, str]]:
    """(module name, file) of every module a trainer is looked up in, in nnU-Net's order: nnunetv2's trainer folder,
    then the plugin packages. Nothing is imported."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        return []
    places = [(os.path.join(spec.submodule_search_locations[0], "training", "nnUNetTrainer"),
               "nnunetv2.training.nnUNetTrainer")]
    for package in plugin_packages():
        package_spec = importlib.util.find_spec(package)
        if package_spec is not None and package_spec.submodule_search_locations:
            places.append((package_spec.submodule_search_locations[0], package))
    return [module for folder, package in places for module in _module_files(folder, package)]


def class_definition(class_name: str) -> re.Pattern:
    """Matches the line of a module's source that defines ``class_name`` at its top level."""
    return re.compile(rf"^class\s+{re.escape(class_name)}\b", re.MULTILINE)


def find_trainer_directly(class_name: str) -> type | None:
    """The trainer class ``class_name``, importing only the module whose source defines it (``class <name>``) or,
    for names a module answers with a module-level ``__getattr__`` (PEP 562, e.g. our budget variants), only such
    modules. nnunetv2's trainer folder is searched before the plugin packages, in nnU-Net's order, so the answer is
    the class nnU-Net's own search finds, without importing every trainer module (and what they import) first.
    Returns None where no source names the class (nnU-Net's full search then decides)."""
    modules = trainer_modules()
    definition = class_definition(class_name)
    answers_names = re.compile(r"^def __getattr__\(", re.MULTILINE)
    for pattern in (definition, answers_names):
        for module, path in modules:
            if _source_matches(path, pattern):
                found = getattr(importlib.import_module(module), class_name, None)
                if isinstance(found, type):
                    return found
    return None


def wrap_lookup(original: Callable) -> Callable:
    """Returns ``original`` extended to the plugin packages, failing loudly where nothing is found."""
    if getattr(original, _WRAPPED_MARKER, False):
        return original

    @functools.wraps(original)
    def recursive_find_python_class(folder: str, class_name: str, current_module: str | None, *args, **kwargs):
        if _is_trainer_search(folder) and _is_within(folder, _nnunet_roots()):
            found = find_trainer_directly(class_name)
            if found is not None:
                return found
        found = original(folder, class_name, current_module, *args, **kwargs)
        if found is not None or not _is_within(folder, _nnunet_roots()):
            return found
        searched = [f"{current_module} ({folder})"]
        for package in plugin_packages():
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                searched.append(f"{package} (registered but not importable)")
                continue
            package_folder = spec.submodule_search_locations[0]
            import_root = os.path.dirname(os.path.dirname(spec.origin)) if spec.origin else package_folder
            found = original(package_folder, class_name, package, import_root)
            searched.append(f"{package} ({package_folder})")
            if found is not None:
                return found
        if _is_trainer_search(folder) and _external_trainers_configured():
            return None  # nnU-Net goes on to search nnUNet_extTrainer and raises its own error if that fails too
        raise ClassNotFoundError(class_name, searched)

    setattr(recursive_find_python_class, _WRAPPED_MARKER, True)
    return recursive_find_python_class


def patch_module(module: ModuleType) -> None:
    setattr(module, LOOKUP_FUNCTION, wrap_lookup(getattr(module, LOOKUP_FUNCTION)))


class _PatchAfterExecLoader(importlib.abc.Loader):
    """Runs the real loader, then wraps the lookup function before the import statement returns."""

    def __init__(self, wrapped: importlib.abc.Loader):
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        patch_module(module)

    def __getattr__(self, name: str):  # get_source, get_code, ... for tools that inspect modules
        return getattr(self._wrapped, name)


class _LookupModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path, target=None):
        if fullname != LOOKUP_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchAfterExecLoader(spec.loader)
        return spec


def install() -> None:
    """Idempotent. Cheap enough for every interpreter start: imports nothing heavy."""
    if any(isinstance(finder, _LookupModuleFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _LookupModuleFinder())
    already_imported = sys.modules.get(LOOKUP_MODULE)
    if already_imported is not None:
        patch_module(already_imported)
