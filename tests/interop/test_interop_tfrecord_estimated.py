"""Issue 37, points 1 and 12: estimated energy never comes back as measured through EC-NAS's
TFRecord, and the messages say measured or estimated truthfully.

The table is a real one: ``ecnas train`` of one cell with no energy counter readable (an empty
sysfs root), so every row holds the CPU-time estimate, as on the user's machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults import cli, one_line

from ecnas.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
MATRIX, OPS = "0110000010000010000100000", "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,output"
QUERY = ("--matrix", MATRIX, "--ops", OPS, "--epochs", "1")


@pytest.fixture(scope="module")
def estimated_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cell trained by ``ecnas train`` with no counter readable: all rows estimated."""
    tmp = tmp_path_factory.mktemp("est")
    (tmp / "empty-root").mkdir()
    env = dict(os.environ, ECNAS_SYSFS_ROOT=str(tmp / "empty-root"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", MAIN, "train", "--matrix", MATRIX, "--ops", OPS,
                        "--epochs", "1", "--max-train-images", "128", "--max-eval-images", "32",
                        "--quiet", "--out", str(tmp / "est.parquet")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert read_table(tmp / "est.parquet")["estimated"].all()
    return tmp / "est.parquet"


def test_export_refuses_estimated_rows_without_the_flag(capsys, estimated_table, tmp_path):
    out = tmp_path / "demo.tfrecord"
    rc, _, err = cli(capsys, "export", estimated_table, "--format", "ecnas-tfrecord", "--out", out)
    assert rc == 2
    line = one_line(err)
    assert "1 of 1 runs hold estimated energy" in line and "--allow-estimated" in line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_estimated_rows_round_trip_as_estimated_through_the_sidecar(capsys, estimated_table,
                                                                   tmp_path):
    out = tmp_path / "demo.tfrecord"
    rc, text, err = cli(capsys, "export", estimated_table, "--format", "ecnas-tfrecord",
                        "--out", out, "--allow-estimated")
    assert rc == 0, err
    assert "wrote 1 EC-NAS records (all 1 estimated; flags in" in text
    side = json.loads((tmp_path / "demo.tfrecord.ecnas.json").read_text())
    assert side["records_estimated"] == 1 and side["entries"][0]["estimated"] is True
    assert side["meters"] == ["estimate"] and side["estimated_because"]

    rc, text, _ = cli(capsys, "query", out, *QUERY, "--json")
    assert rc == 0
    q = json.loads(text)
    assert q["estimated"] is True and q["source"] == "imported"

    rc, text, err = cli(capsys, "import-ecnas", out, "--out", tmp_path / "back.parquet")
    assert rc == 0, err
    assert "estimated (meters: estimate), imported" in text and "measured by" not in text
    back = read_table(tmp_path / "back.parquet")
    assert back["estimated"].all()
    rc, text, _ = cli(capsys, "check", tmp_path / "back.parquet")
    assert "(all estimated)" in text and "all measured" not in text


def _bare_tfrecord(capsys, estimated_table: Path, tmp_path: Path) -> Path:
    """The estimated table exported with --allow-estimated, then copied without its sidecar
    (what a user passes on)."""
    made = tmp_path / "made"
    made.mkdir()
    rc, _, err = cli(capsys, "export", estimated_table, "--format", "ecnas-tfrecord",
                     "--out", made / "demo.tfrecord", "--allow-estimated")
    assert rc == 0, err
    bare = tmp_path / "bare.tfrecord"
    shutil.copy(made / "demo.tfrecord", bare)
    return bare


def test_a_bare_tfrecord_reads_unknown_never_measured(capsys, estimated_table, tmp_path):
    bare = _bare_tfrecord(capsys, estimated_table, tmp_path)

    rc, text, _ = cli(capsys, "query", bare, *QUERY, "--json")
    assert rc == 0 and json.loads(text)["estimated"] is None
    rc, text, _ = cli(capsys, "query", bare, *QUERY)
    assert "measured or estimated: unknown" in text

    rc, text, err = cli(capsys, "import-ecnas", bare, "--out", tmp_path / "bare.parquet")
    assert rc == 0, err
    assert "measured or estimated: unknown" in text and "measured by" not in text
    rc, text, _ = cli(capsys, "check", tmp_path / "bare.parquet")
    assert "all measured" not in text and "unknown for 1 runs" in text


def test_unknown_stays_unknown_through_a_second_export(capsys, estimated_table, tmp_path):
    bare = _bare_tfrecord(capsys, estimated_table, tmp_path)
    rc, _, err = cli(capsys, "import-ecnas", bare, "--out", tmp_path / "bare.parquet")
    assert rc == 0, err

    # the unknown table is not laundered into measured records: refused without the flag
    again = tmp_path / "again.tfrecord"
    rc, _, err = cli(capsys, "export", tmp_path / "bare.parquet", "--format", "ecnas-tfrecord",
                     "--out", again)
    assert rc == 2 and "measured or estimated is unknown" in one_line(err)
    assert not again.exists()
    rc, text, err = cli(capsys, "export", tmp_path / "bare.parquet", "--format",
                        "ecnas-tfrecord", "--out", again, "--allow-estimated")
    assert rc == 0 and "measured or estimated: unknown" in text and "all measured" not in text
    side = json.loads((tmp_path / "again.tfrecord.ecnas.json").read_text())
    assert [e["estimated"] for e in side["entries"]] == [None]
    rc, text, _ = cli(capsys, "query", again, *QUERY, "--json")
    assert rc == 0 and json.loads(text)["estimated"] is None
    # and a bundle says so too
    rc, text, err = cli(capsys, "export", tmp_path / "bare.parquet", "--out", tmp_path / "b")
    assert rc == 0 and "measured or estimated unknown" in text and "none estimated" not in text


def test_a_stale_sidecar_is_not_believed(capsys, estimated_table, tmp_path):
    from ecnas.interop import import_ecnas
    from ecnas.tables import get_metadata

    rc, _, err = cli(capsys, "export", estimated_table, "--format", "ecnas-tfrecord",
                     "--out", tmp_path / "a.tfrecord", "--allow-estimated")
    assert rc == 0, err
    side = tmp_path / "a.tfrecord.ecnas.json"
    doc = json.loads(side.read_text())
    doc["tfrecord_sha256"] = "0" * 64  # the file was replaced after its export
    side.write_text(json.dumps(doc))
    table = import_ecnas(tmp_path / "a.tfrecord")
    meta = get_metadata(table)
    assert meta["measurement"]["estimated"] is None
    assert "describes another file" in meta["estimated_unknown"]["because"]


def test_bundle_export_counts_estimated_rows_not_sources(capsys, estimated_table, tmp_path):
    rc, text, err = cli(capsys, "export", estimated_table, "--out", tmp_path / "b")
    assert rc == 0, err
    assert "3 rows (source: 3 measured; energy: 3 estimated)" in text
    # `source: measured` (trained here) is never left to read as "the energy was measured"
    rc, text, _ = cli(capsys, "query", tmp_path / "b", *QUERY)
    assert rc == 0 and "(trained here, energy ESTIMATED, device" in text
    rc, text, _ = cli(capsys, "query", tmp_path / "b", *QUERY, "--json")
    q = json.loads(text)
    assert q["source"] == "measured" and q["estimated"] is True and q["energy"] == "estimated"


def test_contribute_device_mismatch_says_how_to_fix_it(capsys, estimated_table, tmp_path):
    device = str(read_table(estimated_table)["device"].iloc[0])
    other = next(p for p in sorted((ROOT / "hardware_profiles").glob("generic-*.toml"))
                 if p.stem != device)
    rc, _, err = cli(capsys, "contribute", "--profile", other, "--table", estimated_table,
                     "--out", tmp_path / "c.tar.gz", "--allow-estimated")
    assert rc == 1
    assert f"device column holds ['{device}'], expected only '{other.stem}'. Fix:" in err
    assert f"--profile hardware_profiles/{device}.toml" in err and "ECNAS_PROFILE_PATH" in err
    assert not (tmp_path / "c.tar.gz").exists()
