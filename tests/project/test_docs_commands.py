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

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TIMEOUT_S = 240  # the slowest quick variant takes ~60 s on 2 busy cores


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    try:
        return Path(_git("rev-parse", "--show-toplevel")).resolve() == ROOT
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
            # a page's blocks build on each other in one clone: one xdist worker runs them all,
            # in order (scripts/test.sh runs --dist loadgroup)
            marks.append(pytest.mark.xdist_group(f"docs:{path.as_posix()}"))
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
    clone_for.ran = set()  # type: ignore[attr-defined]  # ids of the blocks run in their clone
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


def test_parser_reads_markers_fences_and_nesting(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("""# Title

```bash
ecnas hardware
```

<!-- doc-test: skip needs an NVIDIA GPU -->
```sh
ecnas validate gpu
```

<!-- doc-test: quick
ecnas demo --quick
-->
~~~shell
ecnas demo
~~~

```text
$ ecnas demo
```

````markdown
```bash
echo "an example inside another fence: not a block"
```
````

```python
print("not shell")
```
""")
    blocks = parse_blocks(tmp_path, Path("page.md"))
    assert [(b.line, b.skip, b.quick) for b in blocks] == [
        (3, None, None), (8, "needs an NVIDIA GPU", None), (15, None, "ecnas demo --quick\n")]
    assert [b.script for b in blocks] == ["ecnas hardware\n", "ecnas validate gpu\n",
                                          "ecnas demo --quick\n"]
    assert blocks[0].id == "page.md:3"


@pytest.mark.parametrize("marker,message", [
    ("<!-- doc-test: skip -->", "needs a reason"),
    ("<!-- doc-test: skipp because -->", "unknown doc-test marker"),
    ("<!-- doc-test: quick\necnas hardware\n-->", "quick variant runs"),
])
def test_unusable_markers_fail(tmp_path: Path, marker: str, message: str) -> None:
    (tmp_path / "page.md").write_text(f"{marker}\n```bash\necnas demo\n```\n")
    with pytest.raises(MarkerError, match=message):
        parse_blocks(tmp_path, Path("page.md"))


def _run_script(script: str, cwd: Path, env: dict[str, str], scratch: Path,
                timeout: float = BLOCK_TIMEOUT_S) -> tuple[int | None, float, str]:
    """(exit status or None on timeout, seconds, output) of one block in its own session:
    whatever it leaves running (`cmd &`) is ended with it."""
    path = scratch / "block.sh"
    path.write_text(script)
    log = scratch / "output.txt"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", str(path)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return rc, time.monotonic() - started, log.read_text(errors="replace")


def test_a_failing_line_fails_the_block_and_leftovers_are_ended(tmp_path: Path) -> None:
    env = dict(os.environ)
    rc, _, out = _run_script("echo one\nfalse\necho never\n", tmp_path, env, tmp_path)
    assert rc == 1 and out == "one\n"
    rc, _, _ = _run_script("false | cat\n", tmp_path, env, tmp_path)  # pipefail
    assert rc == 1
    rc, _, out = _run_script("sleep 60 &\necho $! > pid\n", tmp_path, env, tmp_path)
    assert rc == 0
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() \
            and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or \
        "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]  # killed (a zombie at most)
    rc, _, _ = _run_script("sleep 30\n", tmp_path, env, tmp_path, timeout=0.5)
    assert rc is None


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS)
def test_shell_block_runs(block: Block, clones, tmp_path: Path) -> None:
    clone = clones(block.path)
    # a block builds on the page's earlier blocks (files they wrote): any of them not yet run in
    # this clone (the page's blocks split over workers, or a fixture set up anew) runs first,
    # so a block's outcome never depends on how the tests were scheduled
    earlier = [b for b in (p.values[0] for p in BLOCKS)
               if b is not None and b.path == block.path and b.line < block.line
               and not b.skip and b.id not in clones.ran]
    for step in [*earlier, block]:
        scratch = tmp_path / f"block-{step.line}"
        scratch.mkdir()
        rc, elapsed, output = _run_script(step.script, clone,
                                          _env(clone, clones.bin_dir, scratch), scratch)
        clones.ran.add(step.id)
        label = ("quick variant of " if step.quick else "") + \
            ("" if step is block else f"(run before {block.id}) ")
        assert rc == 0, (f"{label}{step.id} "
                         f"{'timed out' if rc is None else f'exited {rc}'} after {elapsed:.0f} s:\n"
                         f"--- script\n{step.script}--- output (last 4000 chars)\n"
                         f"{output[-4000:]}")
