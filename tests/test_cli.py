"""The `timm-assemble` entry point: every subcommand is registered, and user errors are one line, exit 2."""

import pytest

from timm_assemble.cli import main

SUBCOMMANDS = (
    "train", "finetune", "convert", "publish", "download", "weights", "predict", "validate", "robustness", "benchmark",
    "export", "teacher-logits", "study",
)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: timm-assemble" in capsys.readouterr().out


def test_user_error_is_one_line(tmp_path, capsys):
    code = main(["convert", "--model", "assemble_resnet50", "--checkpoint", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("timm-assemble convert: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["benchmark", "--modes", "eager", "bogus"], ["export", "model", "--format", "bogus"]], ids=["list", "one"]
)
def test_a_value_outside_the_choices_is_refused_by_the_parser(argv, capsys):
    """Every value of a list flag is checked against its choices, like a single-value flag, before any work."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'bogus'" in err and err.count("\n") == 1
