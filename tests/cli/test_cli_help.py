"""Every ``ecnas`` command and subcommand has a help line and a description, and every option
and argument a help text (hidden aliases of renamed options excepted: ``help=SUPPRESS``); the
help of each command prints, in-process, with exit status 0. Also the start-up: ``ecnas --help``
imports no numpy, pandas, torch (``python -X importtime``, a real process: the imports of a
fresh interpreter are the point)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
from cli_inproc import run_cli

from ecnas.cli import build_parser

HEAVY = ("numpy", "pandas", "torch", "scipy", "matplotlib", "dask", "pyarrow", "sklearn")
ROOMS = ("meters", "monitor", "profiles", "campaign", "trainer", "calibration", "tables",
         "benchmark", "contributions", "gpucheck", "interop", "tracker", "space")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser, help line) of every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already listed
                    continue
                seen.add(id(sub))
                yield (*path, name), sub, helps.get(name)
                yield from _commands(sub, (*path, name))


def _missing(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help is argparse.SUPPRESS:
            continue  # a hidden alias of a renamed option
        if not (action.help or "").strip():
            out.append("/".join(action.option_strings) or action.dest)
    return out


COMMANDS = [(" ".join(p), sub, line) for p, sub, line in _commands(build_parser())]


def test_there_are_commands() -> None:
    names = {c[0] for c in COMMANDS}
    assert {"measure", "run", "surrogate fit", "pareto", "contribute", "calibrate"} <= names


@pytest.mark.parametrize(("command", "parser", "line"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_has_help_and_description_and_every_option_a_help(
        command: str, parser: argparse.ArgumentParser, line: str | None) -> None:
    assert (line or "").strip(), f"ecnas {command}: no help line in its parent's list"
    assert (parser.description or "").strip(), f"ecnas {command}: no description"
    assert _missing(parser) == [], f"ecnas {command}: options without help"


def test_top_level_options_have_help() -> None:
    assert _missing(build_parser()) == []


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_help_prints(command: str) -> None:
    proc = run_cli(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: ecnas {command}")


def test_required_options_are_not_shown_as_optional() -> None:
    """argparse brackets an option in the usage line unless it is required=True: an option the
    command cannot run without must say so there (``calibrate --out`` once did not)."""
    for command, parser, _line in COMMANDS:
        usage = parser.format_usage()
        for action in parser._actions:
            if action.required and action.option_strings:
                assert not re.search(rf"\[{action.option_strings[0]}[ \]]", usage), (command, usage)


def test_ecnas_help_imports_no_numpy_pandas_or_torch() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ecnas", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    assert "ecnas.cli" in modules  # the trace is there
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"ecnas --help imports {heavy[:10]}"
    # nor any room's modules: each handler imports its room when it runs
    rooms = sorted(m for m in modules if m.startswith("ecnas.") and m.split(".")[1] in ROOMS)
    assert rooms == [], f"ecnas --help imports {rooms[:10]}"


def test_calibrate_usage_says_out_is_needed() -> None:
    usage = run_cli("calibrate", "--help").stdout.split("\n\n")[0]
    assert "ecnas calibrate --out PROFILE.toml" in usage and "[--out" not in usage


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["search", "b", "--budget", "4"], "budget", 4),
    (["search", "b", "--epochs", "4"], "budget", 4),
    (["pareto", "b", "--budget", "12"], "budget", 12),
    (["surrogate", "predict", "m", "t", "--out", "o", "--budget", "108"], "budget", 108.0),
    (["hardware", "--profiles", "d"], "profiles", ["d"]),
    (["hardware", "--profile-path", "d"], "profiles", ["d"]),
    (["profile", "list", "--profiles", "d", "--profile-path", "e"], "profile_path", ["d", "e"]),
])
def test_old_spellings_still_work_and_are_hidden(argv: list[str], dest: str, value) -> None:
    """``--epochs`` and ``--profile-path`` everywhere; ``--budget`` and ``--profiles`` parse
    the same and are left out of --help."""
    assert getattr(build_parser().parse_args(argv), dest) == value
    shown = run_cli(*argv[:2 if argv[0] in ("surrogate", "profile") else 1], "--help").stdout
    assert "--budget" not in shown and "--profiles" not in shown
