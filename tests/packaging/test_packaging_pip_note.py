"""scripts/test.sh installs syne-tune with --no-deps on purpose; pip's resolver then prints a
red "ERROR: pip's dependency resolver …" naming xgboost and statsmodels, which a newcomer reads
as a failure. The script's ``pip_install`` turns exactly that complaint into one note. Run
here with real pip in a venv that sees this interpreter's packages (as CI's has them), also
when the tests themselves run in a venv: ``--system-site-packages`` alone would show the base
interpreter's packages, not the running venv's, so a ``.pth`` file adds the running
interpreter's site-packages to the new venv."""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOLVER = "ERROR: pip's dependency resolver does not currently take into account"


def _pip_install_function() -> str:
    text = (ROOT / "scripts" / "test.sh").read_text()
    match = re.search(r"^pip_install\(\) \{\n.*?^\}\n", text, re.MULTILINE | re.DOTALL)
    assert match, "scripts/test.sh has no pip_install function"
    return match.group(0)


def test_the_deliberate_no_deps_install_gives_a_note_not_pip_s_error(tmp_path: Path) -> None:
    for module in ("xgboost", "statsmodels"):
        if subprocess.run([sys.executable, "-c", f"import {module}"],
                          capture_output=True).returncode == 0:
            pytest.skip(f"{module} is installed here: pip has nothing to complain about")
    venv = tmp_path / "v"
    made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                          capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        pytest.skip(f"python3 -m venv does not work here: {made.stderr.strip()[-200:]}")
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    # the packages of the interpreter running the tests (a venv's, where one is active)
    outer = [d for d in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()])
             if Path(d).is_dir()]
    # addsitedir, not a plain path line: their own .pth files (editable installs) count too
    (Path(purelib) / "_running_interpreter.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in outer))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", f"set -euo pipefail\n{_pip_install_function()}"
                               f"{script}"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    # scripts/test.sh's step, then an install that makes pip re-check syne-tune's requirements
    done = bash('pip_install --no-deps "syne-tune==0.16.0"\n'
                "pip_install --force-reinstall tqdm\n")
    assert done.returncode == 0, done.stderr
    assert RESOLVER not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert "note: syne-tune is installed without xgboost and statsmodels on purpose" \
        in done.stderr
    # the same install through bare pip shows the complaint the function hides
    bare = bash("python3 -m pip install --quiet --force-reinstall tqdm\n")
    assert bare.returncode == 0 and RESOLVER in bare.stderr, bare.stderr
    assert re.search(r"syne-tune \S+ requires xgboost, which is not installed", bare.stderr)
