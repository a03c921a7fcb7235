"""Options that several commands share, spelled one way everywhere, and the help formatter that
keeps a renamed option's old spelling working without showing it.

``--profile-path DIR`` (extra hardware-profile folders or files; ``--profiles`` still works) and
``--epochs E`` (a training budget in epochs; ``--budget`` still works) name the same thing in
every command that takes it.
"""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, leaving out the option strings an action lists in
    ``hidden_aliases`` (old spellings kept so that scripts go on working)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if not hidden:
            return super()._format_action_invocation(action)
        shown = argparse.Action.__new__(type(action))
        shown.__dict__.update(action.__dict__)
        shown.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(shown)


def hide_aliases(action: argparse.Action, *aliases: str) -> argparse.Action:
    """Mark ``aliases`` (option strings of ``action``, never its first) as hidden from --help;
    the usage line shows the first option string only, as argparse always does."""
    assert action.option_strings and action.option_strings[0] not in aliases
    action.hidden_aliases = aliases  # type: ignore[attr-defined]
    return action


def add_profile_path(parser: Any, dest: str = "profile_path") -> None:
    """Add ``--profile-path DIR`` (repeatable; hidden alias ``--profiles``): extra folders or
    files of hardware profiles, after the packaged ones and ``ECNAS_PROFILE_PATH``."""
    hide_aliases(parser.add_argument(
        "--profile-path", "--profiles", dest=dest, action="append", default=[], metavar="DIR",
        help="extra folder (or file) of hardware profiles, after the packaged ones and "
             "ECNAS_PROFILE_PATH; repeatable"), "--profiles")


def add_epochs(parser: Any, help: str, *, dest: str = "budget", type: Any = int,
               required: bool = False, metavar: str = "E") -> None:
    """Add ``--epochs E`` (hidden alias ``--budget``), a training budget in epochs, stored in
    ``dest``."""
    hide_aliases(parser.add_argument("--epochs", "--budget", dest=dest, type=type,
                                     required=required, default=None, metavar=metavar,
                                     help=help), "--budget")
