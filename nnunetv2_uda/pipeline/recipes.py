"""Recipes: complete, flat pipeline configs shipped inside the package (``nnunetv2_uda/recipes/<name>.yaml``).

A recipe holds every choice of a chain (trainer, configuration, rows, budgets) and none of a user's paths; its
comment header says what it is for and what it scored, so a user reads the expected score and time before running
it (``nnUNetv2_uda_run --list_recipes``). A run's settings are layered: the recipe, then a config file's keys, then
the command line (``--ct``/``--mri``/``-o``/``--test_images``, then ``--set KEY=VALUE``), later layers winning key by
key (nested sections such as ``self_training`` are merged, lists replaced).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml

from nnunetv2_uda.pipeline.config import INPUT_FOLDER_KEYS, ConfigError, PipelineConfig, config_from_dict

RECIPE_KEY = "recipe"
PATH_KEYS = ("output_folder", *INPUT_FOLDER_KEYS)


def recipes_folder() -> Path:
    return Path(str(resources.files("nnunetv2_uda") / "recipes"))


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_folder().glob("*.yaml"))


def recipe_file(name: str) -> Path:
    """The packaged file of recipe ``name``; an unknown name is a :class:`ConfigError` listing the recipes."""
    if not isinstance(name, str) or name not in recipe_names():
        raise ConfigError("recipe", [f"unknown recipe {name!r} (recipes: {', '.join(recipe_names())}; "
                                     f"nnUNetv2_uda_run --list_recipes describes them)"])
    return recipes_folder() / f"{name}.yaml"


def recipe_header(name: str) -> str:
    """The recipe's opening comment block, without the comment marks."""
    lines = []
    for line in recipe_file(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return "\n".join(lines)


def recipe_purpose(name: str) -> str:
    """The header's first line without the leading ``<name>:``: what the recipe is for and roughly how long it takes."""
    return recipe_header(name).split("\n", 1)[0].removeprefix(f"{name}:").strip().rstrip(".")


def load_recipe(name: str) -> dict:
    values = yaml.safe_load(recipe_file(name).read_text())
    if not isinstance(values, dict):
        raise ConfigError(f"recipe {name}", ["expected a mapping of settings"])  # a broken package, not user input
    return values


def merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``: nested mappings merged key by key, any other value replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def parse_set(assignments: list[str]) -> dict:
    """``["self_training.epochs=5", "ablation=[only_ct, only_ct_plf]"]`` as nested settings; values are YAML
    scalars or flow collections (``5`` an integer, ``null`` None, ``[a, b]`` a list)."""
    values: dict = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key or any(not part for part in key.split(".")):
            raise ConfigError("--set", [f"{assignment!r}: expected KEY=VALUE (nested keys dotted, e.g. "
                                        f"self_training.epochs=5)"])
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError("--set", [f"{assignment!r}: the value is not valid YAML "
                                        f"({' '.join(str(error).split())})"]) from None
        *parents, leaf = key.split(".")
        nested = {leaf: value}
        for parent in reversed(parents):
            nested = {parent: nested}
        values = merged(values, nested)
    return values


def read_config_file(path: Path | str) -> dict:
    """A YAML or JSON config file's settings, its relative paths made absolute against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["config file does not exist"])
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(str(path), [f"not valid {kind}: {' '.join(str(error).split())}"]) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(str(path), [f"expected a mapping of settings at the top level, got "
                                      f"{type(values).__name__}"])
    return {key: absolute(value, path.parent) if key in PATH_KEYS else value for key, value in values.items()}


def absolute(value, folder: Path):
    """A path setting made absolute against ``folder`` (anything else left for the validator to name)."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def run_config(recipe: str | None = None, config_file: Path | str | None = None, paths: dict | None = None,
               assignments: list[str] = ()) -> PipelineConfig:
    """The run's config from its layers (module docstring); ``paths`` are config keys given as command-line flags,
    relative to the current folder. Every problem of the merged result is reported at once."""
    file_values = read_config_file(config_file) if config_file is not None else {}
    file_recipe = file_values.pop(RECIPE_KEY, None)
    if file_recipe is not None and recipe is not None and file_recipe != recipe:
        raise ConfigError("--recipe", [f"{recipe!r} differs from '{RECIPE_KEY}: {file_recipe}' in {config_file}; "
                                       f"name the recipe in one place"])
    name = recipe if recipe is not None else file_recipe
    values = load_recipe(name) if name is not None else {}
    values = merged(values, file_values)
    values = merged(values, {key: absolute(value, Path.cwd()) for key, value in (paths or {}).items()
                             if value is not None})
    values = merged(values, {key: absolute(value, Path.cwd()) if key in PATH_KEYS else value
                             for key, value in parse_set(list(assignments)).items()})
    layers = [f"recipe {name}"] if name else []
    layers += [str(config_file)] if config_file is not None else []
    layers += ["the command line"] if paths or assignments else []
    return config_from_dict(values, " + ".join(layers) or "config")
