"""ecnas contribute: a real profile and a device table built from real EC-NAS results,
validated through ecnas.tables and bundled with a manifest."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from cli_inproc import run_cli

ROOT = Path(__file__).resolve().parents[2]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
PROFILE = ROOT / "hardware_profiles" / "nvidia-quadro-rtx-6000.toml"


def _table(path: Path, src: Path, device: str, n: int = 6) -> Path:
    """A device table made by the real EC-NAS importer from the first n runs of the 5V tree."""
    from ecnas.interop import import_ecnas
    from ecnas.tables import write_table

    df = import_ecnas(src)
    keep = sorted(df["arch_hash"].unique())[:n]
    df = df[df["arch_hash"].isin(keep)].reset_index(drop=True)
    df["device"] = device  # a table from another device, for the refusal tests
    write_table(df, path)
    return path


@pytest.fixture
def tables():
    return pytest.importorskip("ecnas.tables.checks",
                               reason="ecnas.tables (device-table checks) not built yet")


def _cli(*args):
    return run_cli(*args, cwd=ROOT)


def test_contribute_bundles_profile_table_and_manifest(tables, tmp_path, ecnas_5v_dir):
    table = _table(tmp_path / "t.csv", ecnas_5v_dir, "nvidia-quadro-rtx-6000")
    out = tmp_path / "bundle.tar.gz"
    result = _cli("contribute", "--profile", str(PROFILE), "--table", str(table), "--out",
                  str(out), "--who", "test lab", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["rows"] == 18 and report["architectures"] == 6
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        member = tar.extractfile("profile/nvidia-quadro-rtx-6000.toml").read()
    assert names == {"manifest.json", "profile/nvidia-quadro-rtx-6000.toml", "table/t.csv"}
    assert manifest["profile"]["sha256"] == hashlib.sha256(member).hexdigest()
    assert manifest["contributor"] == "test lab"
    assert any(c["name"] == "device-matches-profile" and c["passed"] for c in manifest["checks"])


def test_contribute_refuses_a_table_from_another_device(tables, tmp_path, ecnas_5v_dir):
    table = _table(tmp_path / "t.csv", ecnas_5v_dir, "nvidia-v100")
    out = tmp_path / "bundle.tar.gz"
    result = _cli("contribute", "--profile", str(PROFILE), "--table", str(table), "--out", str(out))
    assert result.returncode == 1
    assert "device-matches-profile" in result.stderr and "nvidia-v100" in result.stderr
    assert not out.exists()


def test_contribute_refuses_a_broken_profile(tmp_path, ecnas_5v_dir):
    table = _table(tmp_path / "t.csv", ecnas_5v_dir, "x")
    bad = tmp_path / "bad.toml"
    bad.write_text(PROFILE.read_text().replace("tdp_w = 260", "tdp_w = 0"))
    result = _cli("contribute", "--profile", str(bad), "--table", str(table), "--out",
                  str(tmp_path / "b.tar.gz"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ecnas contribute: error: {bad}: power.tdp_w: "
                                     "must be > 0, got 0")
