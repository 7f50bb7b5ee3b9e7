"""One translator settings type: its checks name each bad setting, and the command's flags, the Python API and the
pipeline config's ``translator:`` section all take their defaults and ranges from it."""

import re
from dataclasses import fields

import pytest

from nnunetv2_uda.pipeline.config import ConfigError, PipelineConfig, config_from_dict
from nnunetv2_uda.translation.cli import train_translator_parser
from nnunetv2_uda.translation.settings import TranslatorSettings, TranslatorSettingsError

POSITIONALS = ["ct", "mri", "out"]
NAMES = [setting.name for setting in fields(TranslatorSettings)]


@pytest.mark.parametrize(("setting", "value", "problem"), [
    ("iterations", 0, "must be an integer >= 1, got 0"),
    ("iterations", 2.0, "must be an integer >= 1, got 2.0"),
    ("iterations", True, "must be an integer >= 1, got True"),
    ("batch_size", -3, "must be an integer >= 1, got -3"),
    ("slice_size", 0, "must be an integer >= 1, got 0"),
    ("slice_size", 20, "must be a multiple of 4 and at least 24"),
    ("slice_size", 130, "must be a multiple of 4 and at least 24"),
    ("inplane_spacing", 0.0, "must be a finite number > 0, got 0.0"),
    ("inplane_spacing", float("inf"), "must be a finite number > 0, got inf"),
    ("lambda_cycle", float("nan"), "must be a finite number >= 0, got nan"),
    ("lambda_identity", -0.5, "must be a finite number >= 0, got -0.5"),
    ("lambda_anatomy", "5", "must be a finite number >= 0, got '5'"),
    ("generator", "vit", "must be one of ('resnet', 'unet'), got 'vit'"),
    ("generator_features", 0, "must be an integer >= 1, got 0"),
    ("residual_blocks", -1, "must be an integer >= 0, got -1"),
    ("discriminator_features", 0, "must be an integer >= 1, got 0"),
    ("max_slices_per_case", 0, "must be an integer >= 1, got 0"),
    ("seed", -1, "must be an integer >= 0, got -1"),
])
def test_each_bad_setting_is_named(setting, value, problem):
    with pytest.raises(TranslatorSettingsError, match=re.escape(f"--{setting} {problem}")) as error:
        TranslatorSettings(**{setting: value})
    assert list(error.value.problems) == [setting]


def test_every_bad_setting_is_named_at_once_and_good_numbers_are_stored_as_plain_types():
    with pytest.raises(TranslatorSettingsError) as error:
        TranslatorSettings(iterations=0, slice_size=30, lambda_cycle=-1.0)
    assert set(error.value.problems) == {"iterations", "slice_size", "lambda_cycle"}
    settings = TranslatorSettings(slice_size=24, lambda_cycle=3, inplane_spacing=2, residual_blocks=0)
    assert type(settings.lambda_cycle) is float and type(settings.inplane_spacing) is float
    assert settings.inplane_spacing == 2.0 and TranslatorSettings().inplane_spacing is None


def test_command_line_defaults_are_the_settings_defaults():
    args = train_translator_parser().parse_args(POSITIONALS)
    assert {name: getattr(args, name) for name in NAMES} == {s.name: s.default for s in fields(TranslatorSettings)}
    assert TranslatorSettings().iterations == 10000
    assert re.search(r"training iterations\.\s+Default: 10000", train_translator_parser().format_help())


def test_settings_passed_as_flags_parse_back_to_the_same_settings():
    settings = TranslatorSettings(iterations=7, batch_size=2, slice_size=128, inplane_spacing=2.5, lambda_anatomy=5,
                                  generator="unet", residual_blocks=0, seed=0)
    args = train_translator_parser().parse_args([*POSITIONALS, *settings.command_line()])
    assert TranslatorSettings(**{name: getattr(args, name) for name in NAMES}) == settings
    assert "--inplane_spacing" not in TranslatorSettings().command_line()  # unset: the MRI's median spacing


def _config(tmp_path, **translator):
    return config_from_dict({"ct_dataset": str(tmp_path / "ct"), "mri_dataset": str(tmp_path / "mri"),
                             "output_folder": str(tmp_path / "out"), "translator": translator})


def test_pipeline_config_translator_section_is_the_settings(tmp_path):
    config = _config(tmp_path, iterations=1000, batch_size=4, slice_size=128, inplane_spacing=2.5, generator="unet")
    assert config.translator == TranslatorSettings(iterations=1000, slice_size=128, inplane_spacing=2.5,
                                                   generator="unet")
    assert PipelineConfig().translator == TranslatorSettings()  # one default: 10000 iterations
    assert config.to_dict()["translator"]["inplane_spacing"] == 2.5


def test_pipeline_config_refuses_unknown_and_bad_translator_keys_with_the_rest(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_from_dict({"ct_dataset": str(tmp_path), "mri_dataset": str(tmp_path), "output_folder": str(tmp_path),
                          "fold": "7", "translator": {"extra_args": ["--slice_size", "128"], "slice_size": 30,
                                                      "iterations": "many", "lambda_cycle": -1}})
    problems = error.value.problems
    assert problems[0].startswith("'translator.extra_args': unknown key (known: batch_size, ")
    assert "'translator.iterations': expected an integer, got 'many'" in problems
    assert "'translator.lambda_cycle': must be a finite number >= 0, got -1.0" in problems
    assert any(problem.startswith("'translator.slice_size': must be a multiple of 4") for problem in problems)
    assert len(problems) == 4  # each named once; 'fold' is checked once the schema is met
