import subprocess
import sys

from appliance.cli import build_parser, main


def test_cli_lists_subcommands_in_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_python_dash_m_appliance_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "appliance", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("smsgw ")


def test_every_subcommand_has_help():
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            assert sub.description, name
