"""The fenced shell blocks of README.md and docs/*.md, and their doc-test markers.

A block is a fence opened with ```bash, ```sh or ```shell (also with more backticks or ~~~).
The HTML comment ending on the line directly above its fence may say how the docs test runs it
(see CONTRIBUTING.md, "Commands in the docs"):

* ``<!-- doc-test: skip REASON -->``: not run (needs a GPU, a cluster, a reference meter, the
  network); the reason is required and shown as the skip reason;
* ``<!-- doc-test: quick`` + a shell script + ``-->``: the script runs instead of the block,
  a shorter variant of a long block. It must run the same ``ecnas`` subcommands, in the same
  order, as the block (other arguments and extra shell lines may differ), so it cannot drift
  into testing something else.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGS = frozenset({"bash", "sh", "shell"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"<!--\s*doc-test:\s*(?P<kind>\S+)(?P<rest>.*?)-->\s*\Z", re.S)


class MarkerError(ValueError):
    """A doc-test marker that cannot be used (unknown kind, skip without a reason, …)."""


@dataclass(frozen=True)
class Block:
    """One fenced shell block: where it is, what it says, and how the docs test runs it."""

    path: Path          # the file, relative to the repository root
    line: int           # 1-based line of the opening fence
    code: str           # the block as written
    skip: str | None    # the skip reason, or None
    quick: str | None   # the quick variant run instead, or None

    @property
    def id(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"

    @property
    def script(self) -> str:
        """What the docs test runs."""
        return self.quick if self.quick is not None else self.code


def doc_files(root: Path) -> list[Path]:
    """README.md and docs/*.md, relative to root, in a stable order."""
    files = [Path("README.md")] if (root / "README.md").is_file() else []
    return files + sorted(p.relative_to(root) for p in (root / "docs").glob("*.md"))


def _marker_above(lines: list[str], fence_index: int) -> tuple[str, str] | None:
    """(kind, rest) of the HTML comment ending on the line directly above the fence, if any."""
    end = fence_index - 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    comment = "\n".join(lines[start:end + 1])
    comment = comment[comment.index("<!--"):]
    match = _MARKER.match(comment.strip())
    if match is None:
        return None
    return match["kind"], match["rest"]


def parse_blocks(root: Path, path: Path) -> list[Block]:
    """The shell blocks of one Markdown file; raises MarkerError on a marker it cannot use."""
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip().split()
        lang = info[0].lower() if info else ""
        j = i + 1  # the closing fence: same character, at least as long, nothing after it
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (closing is not None and closing["fence"][0] == fence[0]
                    and len(closing["fence"]) >= len(fence) and not closing["info"].strip()):
                break
            j += 1
        if lang in SHELL_LANGS:
            code = "\n".join(lines[i + 1:j]) + "\n"
            skip = quick = None
            marker = _marker_above(lines, i)
            where = f"{path.as_posix()}:{i + 1}"
            if marker is not None:
                kind, rest = marker
                if kind == "skip":
                    skip = rest.strip()
                    if not skip:
                        raise MarkerError(f"{where}: 'doc-test: skip' needs a reason")
                elif kind == "quick":
                    quick = rest.strip("\n").strip() + "\n"
                    if not quick.strip():
                        raise MarkerError(f"{where}: 'doc-test: quick' needs a script")
                    check_quick_variant(code, quick, where)
                else:
                    raise MarkerError(f"{where}: unknown doc-test marker {kind!r} "
                                      "(skip REASON, or quick + script)")
            blocks.append(Block(path, i + 1, code, skip, quick))
        i = j + 1
    return blocks


def ecnas_subcommands(script: str) -> list[str]:
    """The ``ecnas SUBCOMMAND`` words a script runs, in order (``python3 -m ecnas`` too)."""
    found: list[str] = []
    for line in script.splitlines():
        line = line.split(" #", 1)[0]  # comments after commands
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        for k, word in enumerate(words):
            is_ecnas = word == "ecnas" and (k == 0 or words[k - 1] in {"&&", "||", ";", "|",
                                                                       "-m", "time"})
            if is_ecnas and k + 1 < len(words) and not words[k + 1].startswith("-"):
                found.append(words[k + 1])
    return found


def check_quick_variant(code: str, quick: str, where: str) -> None:
    """A quick variant runs the block's ecnas subcommands, in the same order."""
    want, got = ecnas_subcommands(code), ecnas_subcommands(quick)
    if want != got:
        raise MarkerError(f"{where}: the quick variant runs ecnas {got}, the block ecnas {want}")
