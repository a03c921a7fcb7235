"""Bundles: write/load/verify, tamper detection, counts by source, pandas-only reading."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecnas.benchmark import Benchmark
from ecnas.benchmark.bundle import load_bundle, read_manifest, verify_bundle, write_bundle
from ecnas.cli import main
from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.tables import write_table


@pytest.fixture(scope="module")
def table5v(ecnas_5v_dir):
    return import_ecnas(ecnas_5v_dir)


@pytest.fixture(scope="module")
def mixed(table5v):
    """100 architectures of the 5V data plus extrapolated 12-epoch runs with intervals."""
    keep = table5v["arch_hash"].isin(table5v["arch_hash"].unique()[:100])
    base = table5v[keep]
    ext = base[base["epoch"] == 4].copy()
    ext["budget_epochs"], ext["epoch"], ext["source"], ext["estimated"] = 12, 12.0, "extrapolated", True
    # a consistent extrapolation (a bundle refuses a table that fails ecnas check)
    for col in ("energy_j", "gpu_energy_j", "cpu_energy_j", "dram_energy_j", "training_time_s",
                "wall_time_s"):
        if col in ext.columns:
            ext[col] = ext[col] * 3
    for col in [c for c in ext.columns if "kwh" in c]:
        ext[col] = np.nan
    ext["energy_j_low"], ext["energy_j_high"] = ext["energy_j"] * 0.9, ext["energy_j"] * 1.1
    out = pd.concat([base, ext], ignore_index=True)
    out.attrs = dict(table5v.attrs)
    return out


def test_write_load_verify_and_manifest(mixed, tmp_path):
    out = write_bundle(mixed, tmp_path / "b", license="CC0-1.0", citation="cite me")
    m = read_manifest(out)
    assert m["budgets"] == [4, 12] and m["spaces"] == ["5V9E"]
    assert m["row_counts"]["rows_by_source"] == {"measured": 0, "imported": 300,
                                                 "extrapolated": 100, "surrogate": 0}
    assert m["row_counts"]["runs_by_source"]["extrapolated"] == 100
    assert m["row_counts"]["architectures"] == 100
    assert m["license"] == "CC0-1.0" and m["citation"] == "cite me"
    assert "imported" in m["data_licenses"]
    dev = m["devices"][0]
    assert dev["id"] == "nvidia-quadro-rtx-6000" and dev["profile"]["kind"] == "gpu"
    assert m["calibration"]["nvidia-quadro-rtx-6000"]["calibrated"] in (True, False)
    assert m["table_metadata"]["pue"]["factor"] == 1.59
    assert m["provenance"][-1]["tool"] == "ecnas export --format bundle"
    assert set(m["files"]) == {p.name for p in out.iterdir()} - {"manifest.json"}
    report = verify_bundle(out)
    assert report.ok and len(report.files) == 4  # table, archs, metrics, status
    back = load_bundle(out)
    assert len(back) == len(mixed)
    assert back.attrs["ecnas"]["pue"]["factor"] == 1.59
    bench = Benchmark.load(out)
    assert len(bench) == 100 and bench.budgets == (4, 12) and bench.pue == 1.59
    q = bench.query(bench.spec_of(next(bench.hash_iterator())), 12, "mean")
    assert q["source"] == "extrapolated" and q["estimated"] is True
    assert q["energy_j_low"] < q["energy_j"] < q["energy_j_high"]


def test_pandas_alone_reads_the_table(mixed, tmp_path):
    out = write_bundle(mixed, tmp_path / "b")
    df = pd.read_parquet(out / "table.parquet")
    assert len(df) == len(mixed)
    assert set(df["source"].astype(str)) == {"imported", "extrapolated"}
    one = mixed.sort_values(["arch_hash", "budget_epochs", "epoch"]).iloc[0]
    row = df[(df["arch_hash"] == one["arch_hash"]) & (df["budget_epochs"] == one["budget_epochs"])
             & (df["epoch"] == one["epoch"])].iloc[0]
    assert row["energy_j"] == one["energy_j"]
    status = np.load(out / read_manifest(out)["layouts"][0]["status"], allow_pickle=False)
    assert int((status >= 0).sum()) == 200  # one entry per run present


@pytest.mark.parametrize("victim", ["table.parquet", "metrics", "status", "archs"])
def test_tampered_file_is_named(mixed, tmp_path, victim):
    out = write_bundle(mixed, tmp_path / "b")
    name = victim if "." in victim else next(p.name for p in out.iterdir() if p.name.startswith(victim))
    path = out / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{name}: SHA-256 mismatch"):
        verify_bundle(out)
    if victim != "table.parquet":
        with pytest.raises(InputError, match="SHA-256 mismatch"):
            Benchmark.load(out)
    else:
        assert len(Benchmark.load(out)) == 100  # the query layout is intact


def test_missing_file_and_bad_manifest(mixed, tmp_path):
    out = write_bundle(mixed, tmp_path / "b")
    (out / "table.parquet").unlink()
    with pytest.raises(InputError, match="table.parquet: missing"):
        verify_bundle(out)
    (out / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(InputError, match="not an ecnas benchmark manifest"):
        Benchmark.load(out)


def test_refuses_to_replace_a_non_bundle_folder(mixed, tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "thesis.tex").write_text("x")
    with pytest.raises(InputError, match="not a bundle"):
        write_bundle(mixed, d)
    assert (d / "thesis.tex").read_text() == "x"
    out = write_bundle(mixed, tmp_path / "b")
    write_bundle(mixed.iloc[:30], out)  # an existing bundle is replaced
    assert read_manifest(out)["row_counts"]["rows"] == 30


def test_cli_export_bundle(mixed, tmp_path, capsys):
    src = tmp_path / "t.parquet"
    write_table(mixed, src)
    assert main(["export", str(src), "--out", str(tmp_path / "b"), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["runs"] == 200 and obj["budgets"] == [4, 12]
    assert main(["export", str(src), "--out", str(tmp_path / "b")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(src), "--out", str(tmp_path / "b"), "--force"]) == 0


def test_multi_device_bundle(mixed, tmp_path):
    other = mixed.iloc[:60].copy()
    other["device"] = "nvidia-a100-40gb"
    both = pd.concat([mixed, other], ignore_index=True)
    both.attrs = dict(mixed.attrs)
    out = write_bundle(both, tmp_path / "b")
    assert len(read_manifest(out)["layouts"]) == 2
    assert Benchmark.load(out).device == "nvidia-quadro-rtx-6000"
    b2 = Benchmark.load(out, device="nvidia-a100-40gb")
    assert len(b2) == 20 and np.isfinite(b2.arrays(4)["energy_j"]).all()
    with pytest.raises(InputError, match="not in the bundle"):
        Benchmark.load(out, device="nvidia-h200")


def _schema_1_runs(lay):
    """The present runs as schema 1's flat runs.parquet held them (source as its int8 code)."""
    from ecnas.benchmark.layout import METRICS

    a, b, r = np.nonzero(lay.present)
    rows = (a * len(lay.budgets) + b) * lay.repeats + r
    out = {"arch_index": a.astype("int32"),
           "budget_epochs": np.asarray(lay.budgets, dtype="int32")[b],
           "repeat": (r + 1).astype("int16"),
           "source": lay.source[a, b, r].astype("int8"),
           "estimated": lay.estimated[a, b, r]}
    for k, name in enumerate(METRICS):
        out[name] = lay.metrics[rows, k]
    return pd.DataFrame(out)


def test_a_schema_1_bundle_still_loads(mixed, tmp_path):
    """Schema 1 kept one runs.<device>.parquet per device; its loader path still answers alike."""
    from ecnas.benchmark.bundle import _file_entry, _write_arrow

    out = write_bundle(mixed, tmp_path / "b")
    new = Benchmark.load(out)
    m = read_manifest(out)
    entry = m["layouts"][0]
    runs = _schema_1_runs(new.layout)
    name = entry["metrics"].replace("metrics.", "runs.").replace(".npy", ".parquet")
    _write_arrow({c: runs[c].to_numpy() for c in runs.columns}, out / name, compression="none")
    for key in ("metrics", "status"):
        (out / entry[key]).unlink()
        del m["files"][entry.pop(key)]
    entry.pop("metric_columns")
    entry["runs"] = name
    m["files"][name] = _file_entry(out / name)
    m["schema_version"] = 1
    (out / "manifest.json").write_text(json.dumps(m))
    old = Benchmark.load(out)
    assert np.array_equal(old.layout.metrics, new.layout.metrics, equal_nan=True)
    assert np.array_equal(old.layout.present, new.layout.present)
    assert np.array_equal(old.layout.source, new.layout.source)
    assert np.array_equal(old.layout.estimated, new.layout.estimated)


def test_chunked_checksums_are_verified_at_load(mixed, tmp_path, monkeypatch):
    """Files over CHUNK_BYTES get one SHA-256 per chunk, hashed in parallel at load; a changed
    byte is named with its chunk, and a manifest whose chunks do not cover the file is refused."""
    from ecnas.benchmark import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "CHUNK_BYTES", 4096)
    out = write_bundle(mixed, tmp_path / "b")
    m = read_manifest(out)
    name = m["layouts"][0]["metrics"]
    size = (out / name).stat().st_size
    chunks = m["files"][name]["chunks"]
    assert chunks["bytes"] == 4096 and len(chunks["sha256"]) == -(-size // 4096) > 2
    Benchmark.load(out)
    data = bytearray((out / name).read_bytes())
    data[4096 + 10] ^= 0x01
    (out / name).write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{name}: SHA-256 mismatch at bytes 4096"):
        Benchmark.load(out)
    assert len(Benchmark.load(out, verify=False)) == 100  # verify=False: no hashing at all
    m["files"][name]["chunks"]["sha256"] = chunks["sha256"][:-1]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="chunks does not match"):
        Benchmark.load(out)
