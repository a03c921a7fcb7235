"""Issue 30's bundle and export cases, each as the exact command, with checksums before/after.

Tables are real: 20 architectures of EC-NAS's RTX 6000 5V release (``tests/data``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import run_cli

from ecnas.benchmark.bundle import _file_entry, chunk_digests, read_manifest, verify_bundle
from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


def _sums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small(ecnas_5v_dir: Path):
    df = import_ecnas(ecnas_5v_dir)
    keep = df["arch_hash"].isin(sorted(df["arch_hash"].unique())[:20])
    out = df[keep].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


@pytest.fixture
def table(small, tmp_path: Path) -> Path:
    return write_table(small, tmp_path / "t.parquet")


@pytest.fixture
def bundle(table: Path, tmp_path: Path) -> Path:
    r = _cli("export", str(table), "--out", str(tmp_path / "bundle"))
    assert r.returncode == 0, r.stderr
    return tmp_path / "bundle"


def _query_args(small, bundle: Path) -> list[str]:
    row = small.iloc[0]
    return ["query", str(bundle), "--matrix", row["matrix"], "--ops", row["ops"],
            "--epochs", str(int(row["budget_epochs"])), "--repeat", "1"]


def _rewrite(bundle: Path, name: str, data: bytes) -> None:
    """Replace a bundle file and make the manifest's checksums agree (a deliberate tamper)."""
    (bundle / name).write_bytes(data)
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"][name] = _file_entry(bundle / name)
    mf.write_text(json.dumps(m))


def test_export_refuses_a_table_that_fails_check(small, tmp_path: Path) -> None:
    bad = small.copy()
    run = bad["arch_hash"] == bad["arch_hash"].iloc[0]
    for col in ("energy_j", "gpu_energy_j", "cpu_energy_j"):
        bad.loc[run, col] = -35993.0
    bad = bad.drop(columns=[c for c in bad.columns if "kwh" in c])
    src = write_table(bad, tmp_path / "bad.parquet")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    r = _cli("export", str(src), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "fails ecnas check" in r.stderr and not (tmp_path / "b").exists()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_query_never_serves_a_negative_energy(small, bundle: Path) -> None:
    """Checksums consistent with a metrics file edited to hold -35993 J: not served."""
    m = read_manifest(bundle)
    name = m["layouts"][0]["metrics"]
    arr = np.load(bundle / name)
    arr[:, 3] = -35993.0  # energy_j (METRICS order)
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    _rewrite(bundle, name, buf.getvalue())
    r = _cli(*_query_args(small, bundle))
    assert r.returncode == 2 and "-35993.0 J" in r.stderr and "not served" in r.stderr, r.stderr


def test_a_corrupt_table_parquet_with_a_consistent_checksum_is_refused(small, bundle: Path) -> None:
    assert _cli(*_query_args(small, bundle)).returncode == 0
    _rewrite(bundle, "table.parquet", b"PAR1 this is not a parquet file PAR1")
    r = _cli(*_query_args(small, bundle))
    assert r.returncode == 2 and "table.parquet: not a readable Parquet file" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_export_over_a_symlinked_bundle_is_refused_before_writing(table: Path, bundle: Path,
                                                                  tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(bundle)
    before = _sums(bundle)
    r = _cli("export", str(table), "--out", str(link), "--force")
    assert r.returncode == 2 and "is a symbolic link" in r.stderr, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(bundle)
    assert _sums(bundle) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "link", "t.parquet"]


def test_force_never_deletes_a_file_a_tampered_manifest_lists(table: Path, bundle: Path) -> None:
    notes = bundle / "notes.txt"
    notes.write_text("my lab notes\n")
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"]["notes.txt"] = {"sha256": "0" * 64, "bytes": notes.stat().st_size}
    mf.write_text(json.dumps(m))
    before = _sums(bundle)
    r = _cli("export", str(table), "--out", str(bundle), "--force")
    assert r.returncode == 2 and "notes.txt" in r.stderr and "did not write" in r.stderr, r.stderr
    assert _sums(bundle) == before and notes.read_text() == "my lab notes\n"


def test_force_replaces_a_bundle_whose_files_are_as_written(table: Path, bundle: Path) -> None:
    r = _cli("export", str(table), "--out", str(bundle), "--force")
    assert r.returncode == 0, r.stderr


def test_a_failed_tfrecord_export_keeps_the_previous_output(small, table: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "x.tfrecord"
    assert _cli("export", str(table), "--format", "ecnas-tfrecord", "--out", str(out)).returncode == 0
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    ext = small.copy()
    ext["source"], ext["estimated"] = "extrapolated", True  # nothing EC-NAS's format holds
    src = write_table(ext, tmp_path / "ext.parquet")
    r = _cli("export", str(src), "--format", "ecnas-tfrecord", "--out", str(out), "--force")
    assert r.returncode == 2 and "no run can be written" in r.stderr, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.parquet", "t.parquet", "x.tfrecord",
                                                          "x.tfrecord.ecnas.json"]


def _metrics_name(bundle: Path) -> str:
    m = read_manifest(bundle)
    return next(e["metrics"] for e in m["layouts"] if "metrics" in e)


def test_chunk_digests_updated_and_whole_digest_stale_is_refused(small, bundle: Path) -> None:
    """Issue 36 point 4: an edit whose chunk digests were updated (and whose whole-file
    SHA-256 was left stale) is refused by query, verify_bundle and load: every digest the
    manifest holds must match."""

    name = _metrics_name(bundle)
    f = bundle / name
    data = bytearray(f.read_bytes())
    # a value of the dense metrics array becomes 12345
    offset = len(data) - 8  # the last float64 of the metrics array
    data[offset:offset + 8] = np.float64(12345.0).tobytes()
    f.write_bytes(bytes(data))
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"][name]["chunks"] = {"bytes": 1024, "sha256": chunk_digests(f, 1024)}
    mf.write_text(json.dumps(m))  # whole-file sha256 left as written
    before = _sums(bundle)
    r = _cli(*_query_args(small, bundle), "--json")
    assert r.returncode == 2, r.stdout
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"{name}: SHA-256 mismatch (whole file; every chunk digest matches" in r.stderr
    assert "12345" not in r.stdout
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        verify_bundle(bundle)
    assert _sums(bundle) == before


def test_a_stale_chunk_digest_is_refused_though_the_whole_file_matches(small,
                                                                       bundle: Path) -> None:

    name = _metrics_name(bundle)
    f = bundle / name
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    digests = chunk_digests(f, 1024)
    digests[-1] = "0" * 64
    m["files"][name]["chunks"] = {"bytes": 1024, "sha256": digests}
    mf.write_text(json.dumps(m))
    r = _cli(*_query_args(small, bundle))
    assert r.returncode == 2 and f"{name}: SHA-256 mismatch at bytes " in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
