"""The contribution loop, one command each side, on real tables.

The existing device: EC-NAS's Quadro RTX 6000 runs (``tests/data/ec-nas-5v.tar.gz``), imported
and exported as a bundle. The contribution: a second device's table measured by ``ecnas train``
(a real cell trained on CPU) through RAPL, where the package counter is a fake sysfs zone that
``fakes.live_meter`` advances from the training process's real CPU time, so every row is
``measured``. Without the zone, ``ecnas train`` falls back to the CPU-time estimate: that
table is the estimated one ``ecnas contribute`` must refuse.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import run_cli

from ecnas.benchmark import Benchmark
from ecnas.benchmark.bundle import read_manifest, write_bundle
from ecnas.interop import import_ecnas
from ecnas.tables import read_table, write_table

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
XEON = ROOT / "hardware_profiles" / "generic-intel-xeon.toml"
CELLS = [("0110000010000010000100000", "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,output"),
         ("0100000110000010000100000", "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,output")]
SMALL = ("--epochs", "1", "--max-train-images", "128", "--max-eval-images", "32", "--quiet")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT, env=_env(**env))


def _train_measured(tmp: Path, matrix: str, ops: str, out: Path) -> None:
    from fakes.sysfs import FakePowercap

    fake = FakePowercap(tmp / f"root-{out.stem}", cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    zone = fake.package(0, dram=False, core=False)["package"]
    train = subprocess.Popen([sys.executable, "-c", MAIN, "train", "--matrix", matrix, "--ops", ops,
                              *SMALL, "--out", str(out)], cwd=ROOT,
                             env=_env(ECNAS_SYSFS_ROOT=str(fake.root)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meter = subprocess.Popen([sys.executable, "-m", "fakes.live_meter", "--zone", str(zone.path),
                              "--pid", str(train.pid), "--log", str(tmp / f"{out.stem}.csv"),
                              "--idle-w", "100", "--core-w", "40"], cwd=TESTS, env=_env())
    try:
        _, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
        meter.wait(timeout=30)
    assert train.returncode == 0, err


@pytest.fixture(scope="module")
def measured_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cells trained by ecnas on the 'generic-intel-xeon' device, RAPL-measured (the fake
    package draws 100 W idle: a two-socket Xeon's floor, so the merged table, whose metadata
    counts EC-NAS's two sockets, passes power-bounds)."""
    import pandas as pd

    tmp = tmp_path_factory.mktemp("measured")
    parts = []
    for k, (m, o) in enumerate(CELLS):
        _train_measured(tmp, m, o, tmp / f"cell{k}.parquet")
        parts.append(read_table(tmp / f"cell{k}.parquet"))
    table = pd.concat(parts, ignore_index=True)
    table.attrs = parts[0].attrs
    assert set(table["device"]) == {"generic-intel-xeon"}
    assert set(table["source"]) == {"measured"} and not table["estimated"].any()
    write_table(table, tmp / "xeon.parquet")
    return tmp / "xeon.parquet"


@pytest.fixture(scope="module")
def rtx_bundle(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RTX 6000 5V table (EC-NAS's release) as a bundle."""
    return write_bundle(import_ecnas(ecnas_5v_dir), tmp_path_factory.mktemp("rtx") / "bundle")


@pytest.fixture(scope="module")
def contribution(measured_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contrib") / "xeon.tar.gz"
    r = _cli("contribute", "--profile", str(XEON), "--table", str(measured_table), "--out",
             str(out), "--who", "test lab", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_contribute_records_provenance_and_measured_energy(contribution: Path) -> None:
    with tarfile.open(contribution) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["energy"]["rows_estimated"] == 0
    assert manifest["energy"]["rows_by_source"]["measured"] == manifest["table"]["rows"] == 6
    assert manifest["energy"]["allow_estimated"] is False
    assert manifest["energy"]["profile_calibrated"] is False
    assert manifest["table_metadata"]["producer"] == "ecnas train"
    assert manifest["table_metadata"]["meters"] == ["rapl"]


def test_verify_passes_every_check_and_says_uncalibrated(contribution: Path) -> None:
    r = _cli("contribution", "verify", str(contribution), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    names = {c["name"] for c in rep["checks"]}
    assert {"profile-sha256", "table-sha256", "profile-valid", "schema", "device-matches-profile",
            "hashes-in-space", "source-measured", "energy-measured"} <= names
    assert any(n.startswith("check ") for n in names)  # the ecnas check results
    assert rep["ok"] and rep["device"] == "generic-intel-xeon" and rep["calibrated"] is False


def _retar(src: Path, dst: Path, edit) -> None:
    """Copy the archive, passing each member's bytes through ``edit(name, data)``."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w:gz") as out:
        for m in tar.getmembers():
            data = edit(m.name, tar.extractfile(m).read())
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def test_tampered_table_is_refused_with_the_reason(contribution: Path, rtx_bundle: Path,
                                                   tmp_path: Path) -> None:
    import pandas as pd

    def halve_energy(name: str, data: bytes) -> bytes:
        if not name.startswith("table/"):
            return data
        df = pd.read_parquet(io.BytesIO(data))
        df["energy_j"] = df["energy_j"] / 2
        buf = io.BytesIO()
        df.to_parquet(buf)
        return buf.getvalue()

    bad = tmp_path / "tampered.tar.gz"
    _retar(contribution, bad, halve_energy)
    r = _cli("contribution", "verify", str(bad))
    assert r.returncode == 1
    assert "FAIL table-sha256: table/xeon.parquet: SHA-256" in r.stdout
    assert "changed after ecnas contribute wrote it" in r.stderr
    before = _sha(rtx_bundle / "manifest.json")
    out = tmp_path / "merged"
    r = _cli("contribution", "merge", str(bad), "--into", str(rtx_bundle), "--out", str(out))
    assert r.returncode == 2 and "refused" in r.stderr and "table-sha256" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists()
    assert _sha(rtx_bundle / "manifest.json") == before


def test_tampered_with_consistent_checksum_fails_the_checks(contribution: Path,
                                                            tmp_path: Path) -> None:
    """A table edited and its checksum re-written in the manifest: the content checks catch it."""
    import pandas as pd

    new = {}

    def negative(name: str, data: bytes) -> bytes:
        if name.startswith("table/"):
            df = pd.read_parquet(io.BytesIO(data))
            df["arch_hash"] = df["arch_hash"].str.replace("^.", "f", regex=True)
            buf = io.BytesIO()
            df.to_parquet(buf)
            new["sha"] = hashlib.sha256(buf.getvalue()).hexdigest()
            return buf.getvalue()
        if name == "manifest.json":
            return data  # fixed below, once the table's new checksum is known
        return data

    step = tmp_path / "step.tar.gz"
    _retar(contribution, step, negative)

    def fix_manifest(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        m = json.loads(data)
        m["table"]["sha256"] = new["sha"]
        return json.dumps(m).encode()

    bad = tmp_path / "consistent.tar.gz"
    _retar(step, bad, fix_manifest)
    r = _cli("contribution", "verify", str(bad), "--json")
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    failed = {c["name"]: c["detail"] for c in rep["checks"] if not c["passed"]}
    assert "table-sha256" not in failed
    assert "hashes-in-space" in failed and "hashes to" in failed["hashes-in-space"]


def test_merge_adds_the_device_and_query_and_export_per_device(
        contribution: Path, rtx_bundle: Path, measured_table: Path, tmp_path: Path) -> None:
    before = {p.name: _sha(p) for p in rtx_bundle.iterdir()}
    out = tmp_path / "merged"
    r = _cli("contribution", "merge", str(contribution), "--into", str(rtx_bundle), "--out",
             str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["devices"] == ["generic-intel-xeon", "nvidia-quadro-rtx-6000"]
    assert rep["rows_added"] == 6
    assert {p.name: _sha(p) for p in rtx_bundle.iterdir()} == before  # the base is untouched
    m = read_manifest(out)
    assert {d["id"] for d in m["devices"]} == {"generic-intel-xeon", "nvidia-quadro-rtx-6000"}
    xeon = next(d for d in m["devices"] if d["id"] == "generic-intel-xeon")
    assert xeon["profile"]["kind"] == "cpu"
    c = m["contributions"][0]
    assert c["device"] == "generic-intel-xeon" and c["sha256"] == _sha(contribution)
    assert c["contributor"] == "test lab"
    pue = m["table_metadata"]["pue_by_device"]
    assert pue["generic-intel-xeon"] == 1.0 and pue["nvidia-quadro-rtx-6000"] > 1.0

    # query per device: the RTX answer is the base bundle's, the Xeon answer the measured row
    bench = Benchmark.load(out, device="nvidia-quadro-rtx-6000")
    base = Benchmark.load(rtx_bundle)
    spec = base.spec_of(next(base.hash_iterator()))
    keys = ("energy_j", "training_time", "validation_accuracy", "energy (kWh)", "device")
    got, want = bench.query(spec, 4, 1), base.query(spec, 4, 1)
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    table = read_table(measured_table)
    final = table[table["epoch"] == 1.0].iloc[0]
    q = bench.query((final["matrix"], final["ops"].split(",")), 1, 1, device="generic-intel-xeon")
    assert q["device"] == "generic-intel-xeon" and q["source"] == "measured"
    assert q["energy_j"] == final["energy_j"] and q["estimated"] is False
    t, e = bench.get_budget_counters()
    assert e == pytest.approx(want["energy_j"] + final["energy_j"])

    # the EC-NAS export, one device at a time
    r = _cli("export", str(out), "--format", "ecnas-tfrecord", "--out", str(tmp_path / "x.tfrecord"))
    assert r.returncode == 2 and "pass --device" in r.stderr
    r = _cli("export", str(out), "--format", "ecnas-tfrecord", "--device", "generic-intel-xeon",
             "--out", str(tmp_path / "xeon.tfrecord"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["records"] == 2
    back = import_ecnas(tmp_path / "xeon.tfrecord")
    assert len(back) == 6
    assert np.allclose(np.sort(back["energy_j"]), np.sort(table["energy_j"]), rtol=1e-6)


def test_merge_refuses_a_device_the_bundle_holds(contribution: Path, rtx_bundle: Path,
                                                 tmp_path: Path) -> None:
    once = tmp_path / "once"
    assert _cli("contribution", "merge", str(contribution), "--into", str(rtx_bundle),
                "--out", str(once)).returncode == 0
    r = _cli("contribution", "merge", str(contribution), "--into", str(once), "--out",
             str(tmp_path / "twice"))
    assert r.returncode == 2 and "already holds device 'generic-intel-xeon'" in r.stderr


@pytest.fixture(scope="module")
def estimated_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell trained by ecnas with no meter readable: the CPU-time estimate fills in."""
    tmp = tmp_path_factory.mktemp("estimated")
    (tmp / "empty-root").mkdir()
    m, o = CELLS[0]
    r = _cli("train", "--matrix", m, "--ops", o, *SMALL, "--out", str(tmp / "est.parquet"),
             ECNAS_SYSFS_ROOT=str(tmp / "empty-root"))
    assert r.returncode == 0, r.stderr
    table = read_table(tmp / "est.parquet")
    assert table["estimated"].all()
    return tmp / "est.parquet"


def test_contribute_refuses_an_estimated_table_unless_allowed(estimated_table: Path,
                                                             tmp_path: Path) -> None:
    device = str(read_table(estimated_table)["device"].iloc[0])
    profile = ROOT / "hardware_profiles" / f"{device}.toml"
    out = tmp_path / "est.tar.gz"
    r = _cli("contribute", "--profile", str(profile), "--table", str(estimated_table), "--out",
             str(out))
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.count("\n") == 1
    assert "all rows hold estimated energy and the profile is uncalibrated" in r.stderr
    assert "--allow-estimated" in r.stderr and "ecnas hardware" in r.stderr
    r = _cli("contribute", "--profile", str(profile), "--table", str(estimated_table), "--out",
             str(out), "--allow-estimated", "--json")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["energy"]["allow_estimated"] is True
    assert manifest["energy"]["rows_estimated"] == 3
    v = _cli("contribution", "verify", str(out), "--json")
    rep = json.loads(v.stdout)
    energy = next(c for c in rep["checks"] if c["name"] == "energy-measured")
    assert energy["passed"] and "contributed with --allow-estimated" in energy["detail"]
