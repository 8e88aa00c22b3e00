"""The command line explains itself (issue 17, items 5 and 8): it names itself as it was called
(`run.py`, `authsite`, `python -m authsite`), every command and argument has a help text, the
top-level help says what runs by default and where settings and data live, and README.md lists
every command."""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authsite.cli import _parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}


def console_script() -> str:
    found = shutil.which("authsite", path=str(Path(sys.executable).parent))
    assert found, "the `authsite` console script is not installed beside this Python (pip install -e .)"
    return found


CALLED_AS = {
    "run.py": lambda: [sys.executable, str(REPO / "run.py")],
    "authsite": lambda: [console_script()],
    "python -m authsite": lambda: [sys.executable, "-m", "authsite"],
}


def run(how: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CALLED_AS[how](), *args], cwd=cwd, env=clean_environment(),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", CALLED_AS)
def test_usage_names_the_program_as_it_was_called(tmp_path, how):
    result = run(how, "--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {how} ")


@pytest.mark.parametrize("how", CALLED_AS)
def test_a_usage_error_names_the_program_and_the_command(tmp_path, how):
    result = run(how, "create-user", cwd=tmp_path)

    assert result.returncode == 2
    assert f"usage: {how} create-user" in result.stderr
    assert f"{how} create-user: error:" in result.stderr


def test_the_top_level_help_says_what_runs_by_default_and_where_settings_and_data_live(tmp_path):
    text = " ".join(run("run.py", "--help", cwd=tmp_path).stdout.split())

    assert "With no command, serves the site" in text
    assert ".env" in text
    assert "./data" in text
    assert "Settings section of README.md" in text


def all_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, (*path, name))


def commands_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{command: its one-line help} as the command list of `--help` shows it."""
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return {choice.dest: choice.help for choice in commands._choices_actions}


def test_every_command_has_a_one_line_description():
    for path, parser in all_parsers(_parser()):
        if path:
            assert parser.description and "\n" not in parser.description, path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, summary in commands_of(parser).items():
                    assert summary and "\n" not in summary, (*path, name)


def test_every_argument_has_a_help_text():
    for path, parser in all_parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (path, action.dest)


def readme_commands() -> str:
    text = README.read_text()
    start = text.index("\n## Commands\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_lists_every_command_of_the_help(tmp_path):
    listed = readme_commands()
    parser = _parser()
    shown = run("run.py", "--help", cwd=tmp_path).stdout

    for command in commands_of(parser):
        assert re.search(rf"\b{re.escape(command)}\b", shown), command
        assert f"run.py {command}" in listed, f"README's Commands section lacks `python run.py {command}`"
    for path, _ in all_parsers(parser):
        if len(path) == 2:
            assert f"run.py {' '.join(path)}" in listed, path


def test_readme_names_the_installed_command_and_the_module():
    listed = readme_commands()

    assert "authsite serve" in listed or "authsite create-user" in listed
    assert "python -m authsite" in listed


def test_db_current_tells_the_upgrade_command_as_the_program_was_called(tmp_path):
    result = run("authsite", "db", "current", cwd=tmp_path)  # a new, empty database

    assert result.returncode == 0, result.stderr
    assert "run `authsite db upgrade`" in result.stdout
