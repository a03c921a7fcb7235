"""Every optional extra installed as a user installs it, in its own fresh venv.

For each extra: ``python3 -m venv``, then ``pip install '.[EXTRA]'`` from a copy of this tree,
exactly as the docs say, then ``tests/extras_checks.py EXTRA`` imports the installed ecnas and
exercises the integration for real (a campaign scraped over loopback, a Lightning and a
Hugging Face training run, syne-tune's own ``load_blackbox`` …). pip must not report a
dependency conflict and ``pip check`` must pass.

torch comes first, ``pip install torch==2.13.0`` (the CPU build), as the README tells CPU-only
users; without it pip would pull a multi-GB CUDA build. To keep the cost to what each extra
adds, torch and the core install (``pip install .``) are done once in a base venv, and each
extra's venv starts as a hard-linked copy of the base's site-packages (pip never writes an
installed file in place, so the copies stay independent); ``pip install '.[EXTRA]'`` then
resolves and installs the extra on top, as it would after a user's own ``pip install .``.

Slow (minutes: several hundred MB of wheels), so it runs only with ``ECNAS_TEST_EXTRAS=1``:
``scripts/test.sh`` runs it as its own step after the main suite. An extra whose packages pip
cannot find for this platform skips with pip's reason; any other failure fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TORCH = "torch==2.13.0"
#: the extras users install (``peers`` and ``dev`` are for benchmarks and development)
EXTRAS = ("prometheus", "dask", "jobqueue", "amd", "pyrapl", "tensorboard", "mlflow",
          "lightning", "huggingface", "synetune", "search")
PARALLEL = 2  # the CI machine's cores; pip is mostly unzip and disk
RESOLVER_ERROR = "pip's dependency resolver does not currently take into account"
NOT_FOUND = ("No matching distribution found", "Could not find a version that satisfies")

pytestmark = pytest.mark.skipif(
    os.environ.get("ECNAS_TEST_EXTRAS") != "1",
    reason="installs every extra into its own venv (minutes): set ECNAS_TEST_EXTRAS=1 "
           "(scripts/test.sh runs it as its own step)")


@dataclass(frozen=True)
class Outcome:
    extra: str
    install_rc: int
    install_log: str
    pip_check: str
    check_rc: int
    check_out: str
    check_err: str
    install_s: float  # wall seconds of `pip install '.[EXTRA]'`, then of the check
    check_s: float


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 1200, **env: str,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _source_copy(dest: Path) -> Path:
    """This tree's files (tracked and not ignored) in ``dest``: ``pip install .`` builds in
    place, and must neither write into the tree nor see its build leftovers."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:  # not a git checkout (a source archive): everything but caches
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info", "build", "dist", ".*"))
    return dest


def _site_packages(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site


def _pip(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([str(venv / "bin" / "python"), "-m", "pip", *args], cwd=cwd)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    t_base = time.monotonic()
    top = tmp_path_factory.mktemp("extras")
    src = _source_copy(top / "src")
    base = top / "base"
    made = _run([sys.executable, "-m", "venv", str(base)], cwd=top, timeout=300)
    if made.returncode != 0:
        pytest.skip(f"python3 -m venv does not work here: {made.stderr.strip()[-300:]}")
    for args in (["install", TORCH], ["install", "."]):
        done = _pip(base, *args, cwd=src)
        assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout[-3000:]}\n" \
                                     f"{done.stderr[-3000:]}"
        assert RESOLVER_ERROR not in done.stderr, done.stderr
    core = _run([str(base / "bin" / "python"), str(TESTS / "extras_checks.py"), "core",
                 str(top / "work-core")], cwd=top, timeout=300, PYTHONPATH=str(TESTS))
    assert core.returncode == 0, f"the core install fails its check:\n{core.stderr[-3000:]}"
    print(f"base venv (torch, then '.'): {time.monotonic() - t_base:.0f} s")

    def one(extra: str) -> Outcome:
        venv = top / f"venv-{extra}"
        made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=top)
        assert made.returncode == 0, made.stderr
        site = _site_packages(venv)
        # the base's packages (pip included), hard-linked: instant and no extra disk
        for entry in _site_packages(base).iterdir():
            if entry.is_dir():
                shutil.copytree(entry, site / entry.name, copy_function=os.link,
                                dirs_exist_ok=True)
            else:
                os.link(entry, site / entry.name)
        t0 = time.monotonic()
        inst = _pip(venv, "install", f".[{extra}]", cwd=src)
        log, t1 = inst.stdout + inst.stderr, time.monotonic()
        if inst.returncode != 0:
            return Outcome(extra, inst.returncode, log, "", -1, "", "", t1 - t0, 0.0)
        checked = _pip(venv, "check", cwd=src)
        run = _run([str(venv / "bin" / "python"), str(TESTS / "extras_checks.py"), extra,
                    str(top / f"work-{extra}")], cwd=top, timeout=600, PYTHONPATH=str(TESTS))
        return Outcome(extra, 0, log, checked.stdout + checked.stderr if checked.returncode
                       else "", run.returncode, run.stdout, run.stderr, t1 - t0,
                       time.monotonic() - t1)

    with ThreadPoolExecutor(PARALLEL) as pool:
        found = {o.extra: o for o in pool.map(one, EXTRAS)}
    for o in found.values():  # shown with -s (or -rP): what each extra costs
        print(f"{o.extra}: install {o.install_s:.0f} s, check {o.check_s:.0f} s")
    return found


@pytest.mark.parametrize("extra", EXTRAS)
def test_extra_installs_and_works(outcomes: dict[str, Outcome], extra: str) -> None:
    o = outcomes[extra]
    if o.install_rc != 0:
        missing = [line.strip() for line in o.install_log.splitlines()
                   if any(n in line for n in NOT_FOUND)]
        if missing:
            pytest.skip(f"pip install '.[{extra}]' cannot install here: {missing[-1]}")
        pytest.fail(f"pip install '.[{extra}]' failed:\n{o.install_log[-4000:]}")
    assert RESOLVER_ERROR not in o.install_log, o.install_log[-4000:]
    assert not o.pip_check, f"pip check after '.[{extra}]':\n{o.pip_check}"
    assert o.check_rc == 0, f"extras_checks.py {extra}:\n{o.check_err[-4000:]}"
    seen = json.loads(o.check_out.strip().splitlines()[-1])
    assert seen["extra"] == extra and "/site-packages/ecnas/" in seen["ecnas"]
