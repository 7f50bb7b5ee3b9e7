"""The translation commands' parsers refuse nonsense numbers and devices while parsing, naming the flag."""

import pytest

from nnunetv2_uda.translation.cli import sobel_parser, train_translator_parser, translate_parser

POSITIONALS = {sobel_parser: ["in", "out"], train_translator_parser: ["ct", "mri", "out"],
               translate_parser: ["translator", "ct", "out"]}


@pytest.mark.parametrize(("flag", "value"), [
    ("--lambda_cycle", "nan"), ("--lambda_cycle", "inf"), ("--lambda_identity", "-1"), ("--lambda_anatomy", "nan"),
    ("--iterations", "0"), ("--iterations", "1.5"), ("--batch_size", "0"), ("--checkpoint_every", "0"),
    ("--slice_size", "0"), ("--inplane_spacing", "-1"), ("--inplane_spacing", "nan"), ("--inplane_spacing", "0"),
    ("--max_slices_per_case", "0"), ("--generator_features", "0"), ("--discriminator_features", "0"),
    ("--residual_blocks", "-1"), ("--seed", "-1"), ("--device", "gpu"), ("--device", "cuda:99"),
])
def test_train_translator_refuses_nonsense_while_parsing(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_translator_parser().parse_args([*POSITIONALS[train_translator_parser], flag, value])
    assert exit_info.value.code == 2
    assert f"error: argument {flag}: " in capsys.readouterr().err


@pytest.mark.parametrize("parser", [sobel_parser, translate_parser])
def test_sobel_and_translate_refuse_a_device_this_machine_lacks(parser, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args([*POSITIONALS[parser], "--device", "cuda:99"])
    assert "error: argument --device: 'cuda:99': no such CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("parser", list(POSITIONALS))
def test_defaults_and_meaningful_edge_values_parse(parser):
    args = parser().parse_args([*POSITIONALS[parser], "--allow_nonfinite", "--verbose"])
    assert args.allow_nonfinite and args.device == "cpu"
    if parser is train_translator_parser:
        edges = parser().parse_args([*POSITIONALS[parser], "--residual_blocks", "0", "--lambda_identity", "0",
                                     "--seed", "0"])
        assert (edges.residual_blocks, edges.lambda_identity, edges.seed) == (0, 0.0, 0)
