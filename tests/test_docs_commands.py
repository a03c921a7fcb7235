"""Every shell block of README.md and docs/*.md runs as written, from a fresh clone (issue 29).

Each Markdown file gets its own ``git clone`` of this repository's committed HEAD (what a new
user has; uncommitted edits are not in it), and its blocks run in order in the clone's root,
each with ``bash -e -o pipefail``, so a later block may use what an earlier one wrote (as a
reader following the page would). ``ecnas`` and ``python3`` there are this interpreter running
the clone's code. Blocks marked ``<!-- doc-test: skip REASON -->`` are skipped with the reason;
``<!-- doc-test: quick ... -->`` runs the shorter variant (tests/docs_blocks.py,
CONTRIBUTING.md "Commands in the docs").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docs_blocks import Block, MarkerError, check_quick_variant, doc_files, parse_blocks

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TIMEOUT_S = 240  # the slowest quick variant takes ~60 s on 2 busy cores


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    try:
        return _git("rev-parse", "--show-toplevel") == str(ROOT)
    except (subprocess.CalledProcessError, OSError):
        return False


def _collect() -> list:
    params = []
    for path in doc_files(ROOT):
        try:
            blocks = parse_blocks(ROOT, path)
        except MarkerError as exc:  # reported by test_markers_are_usable
            params.append(pytest.param(None, id=f"{path.as_posix()}:marker-error",
                                       marks=pytest.mark.skip(reason=str(exc))))
            continue
        for block in blocks:
            marks = [pytest.mark.skip(reason=f"doc-test: skip {block.skip}")] if block.skip else []
            params.append(pytest.param(block, id=block.id, marks=marks))
    return params


BLOCKS = _collect()


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory):
    """One fresh clone per Markdown file (made when its first block runs)."""
    if not _in_git_checkout():
        pytest.skip("not a git checkout: the docs test runs the blocks from a fresh git clone")
    base = tmp_path_factory.mktemp("docs-clones")
    head = _git("rev-parse", "HEAD")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, argv in (("ecnas", f'"{sys.executable}" -m ecnas'), ("python3", f'"{sys.executable}"'),
                       ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        shim.chmod(0o755)
    made: dict[Path, Path] = {}

    def clone_for(doc: Path) -> Path:
        if doc not in made:
            target = base / doc.as_posix().replace("/", "_")
            _git("clone", "--quiet", "--no-checkout", str(ROOT), str(target), cwd=base)
            _git("checkout", "--quiet", head, cwd=target)
            made[doc] = target
        return made[doc]

    clone_for.bin_dir = bin_dir  # type: ignore[attr-defined]
    return clone_for


def _env(clone: Path, bin_dir: Path, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECNAS_", "PYTEST"))}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(clone),          # the clone's ecnas, not the one installed
        "ECNAS_CACHE_DIR": str(scratch / "cache"),
        "HOME": str(scratch / "home"),     # nothing lands in the user's home
        "TMPDIR": str(scratch / "tmp"),
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    for key in ("HOME", "TMPDIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def test_markers_are_usable() -> None:
    """Every doc-test marker in the docs parses (unknown kinds and reasonless skips fail)."""
    for path in doc_files(ROOT):
        parse_blocks(ROOT, path)


def test_the_docs_have_shell_blocks_and_most_run() -> None:
    """The collection is not silently empty, and skipping stays the exception."""
    blocks = [p.values[0] for p in BLOCKS if p.values[0] is not None]
    run = [b for b in blocks if not b.skip]
    assert len(blocks) >= 15, [b.id for b in blocks]
    assert len(run) >= len(blocks) // 2, [b.id for b in blocks if b.skip]


def test_a_quick_variant_must_run_the_blocks_commands() -> None:
    check_quick_variant("ecnas demo\n", "ecnas demo --architectures 4\n", "x")
    check_quick_variant("ecnas run a.toml && ecnas check t\n",
                        "sed s/4/1/ a.toml > q.toml\necnas run q.toml && ecnas check t\n", "x")
    with pytest.raises(MarkerError, match="quick variant runs"):
        check_quick_variant("ecnas demo\n", "ecnas hardware\n", "x")
    with pytest.raises(MarkerError, match="quick variant runs"):
        check_quick_variant("ecnas table s && ecnas check t\n", "ecnas table s\n", "x")


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS)
def test_shell_block_runs(block: Block, clones, tmp_path: Path) -> None:
    clone = clones(block.path)
    script = tmp_path / "block.sh"
    script.write_text(block.script)
    log = tmp_path / "output.txt"
    started = time.monotonic()
    with log.open("wb") as out:
        # Its own session: whatever the block leaves running (`cmd &`) is ended with it.
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", str(script)], cwd=clone,
                                env=_env(clone, clones.bin_dir, tmp_path), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.monotonic() - started
    output = log.read_text(errors="replace")
    label = "quick variant of " if block.quick else ""
    assert rc == 0, (f"{label}{block.id} "
                     f"{'timed out' if rc is None else f'exited {rc}'} after {elapsed:.0f} s:\n"
                     f"--- script\n{block.script}--- output (last 4000 chars)\n{output[-4000:]}")
