"""The root command imports its commands when they are run (pbx/cli/main.py)."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from pbx.cli.main import COMMANDS, main


def test_every_command_is_found_under_its_name() -> None:
    context = click.Context(main)
    assert main.list_commands(context) == sorted(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert main.get_command(context, "nonsense") is None


def test_the_help_lists_every_command_and_an_unknown_one_is_refused() -> None:
    shown = CliRunner().invoke(main, ["--help"])
    assert shown.exit_code == 0
    listed = [line.split()[0] for line in shown.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)
    refused = CliRunner().invoke(main, ["nonsense"])
    assert refused.exit_code == 2 and "No such command 'nonsense'" in refused.output


def test_a_light_command_does_not_import_the_heavy_ones() -> None:
    # `pbx reload` only signals a process: it must not pay for the store,
    # the CDR models or the web console at every run.
    probe = ("import sys, runpy; sys.argv = ['pbx', 'reload', '--help']\n"
             "try:\n    runpy.run_module('pbx', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'fastapi', 'pbx.cdr'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
