"""Fault injection, hostile and broken inputs (issue 19 "tracebacks"): each is one line and
exit status 2 from the real CLI, and nothing the user had is touched."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from faults import TESTS, cli, make_table, one_line, snapshot

NESTED = "x = " + "[" * 500 + "]" * 500 + "\n"


@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-in"))


@pytest.fixture(scope="module")
def bundle(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ecnas.benchmark.bundle import write_bundle
    from ecnas.tables import read_table

    return write_bundle(read_table(table), tmp_path_factory.mktemp("faults-b") / "b")


# ---------------------------------------------------------------- campaign store
def test_read_only_store_on_resume(capsys, tmp_path):
    from campaign_runfns import campaign_toml

    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    store = tmp_path / "s.sqlite"
    argv = ["run", toml, "--store", store, "--workers", "0", "--run-fn",
            "campaign_runfns:trivial", "--quiet"]
    assert cli(capsys, *argv)[0] == 0
    campaign_toml(tmp_path / "c.toml", count=1, repeats=2)  # one more run to do
    store.chmod(0o444)
    before = store.read_bytes()
    rc, _, err = cli(capsys, *argv, "--resume")
    assert rc == 2 and "read-only" in one_line(err)
    assert store.read_bytes() == before
    # an archived store (read-only file) still exports
    rc, _, err = cli(capsys, "table", store, "--out", tmp_path / "t.parquet")
    assert rc == 0, err


def _foreign_db(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (k TEXT, v TEXT); CREATE TABLE runs (x INTEGER);"
                     "INSERT INTO meta VALUES ('owner', 'someone else'); "
                     "INSERT INTO runs VALUES (1);")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("command", ["table", "run"])
def test_foreign_sqlite_is_refused_and_left_alone(capsys, tmp_path, command):
    from campaign_runfns import campaign_toml

    db = _foreign_db(tmp_path / "theirs.sqlite")
    before = db.read_bytes()
    if command == "table":
        argv = ["table", db, "--out", tmp_path / "t.parquet"]
    else:
        argv = ["run", campaign_toml(tmp_path / "c.toml", count=1, repeats=1), "--store", db,
                "--workers", "0", "--run-fn", "campaign_runfns:trivial", "--quiet"]
    rc, _, err = cli(capsys, *argv)
    assert rc == 2 and "not a campaign store" in one_line(err)
    assert db.read_bytes() == before
    assert {p.name for p in tmp_path.iterdir()} <= {"theirs.sqlite", "c.toml"}


def test_store_in_a_read_only_folder_exports(capsys, tmp_path):
    from campaign_runfns import campaign_toml

    arch = tmp_path / "archive"
    arch.mkdir()
    toml = campaign_toml(arch / "c.toml", count=1, repeats=1)
    store = arch / "s.sqlite"
    assert cli(capsys, "run", toml, "--store", store, "--workers", "0", "--run-fn",
               "campaign_runfns:trivial", "--quiet")[0] == 0
    arch.chmod(0o555)
    try:
        rc, out, err = cli(capsys, "table", store, "--out", tmp_path / "t.parquet", "--json")
    finally:
        arch.chmod(0o755)
    assert rc == 0, err
    assert json.loads(out)["runs"] == 1


# ---------------------------------------------------------------- measure
def test_script_without_shebang_is_one_line(capsys, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    rc, _, err = cli(capsys, "measure", "--meters", "estimate", "--", script)
    # found but not runnable as a program: 126, as shells exit for a command they cannot run
    assert rc == 126 and "#!" in one_line(err)


# ---------------------------------------------------------------- results.json types
@pytest.mark.parametrize("field,value", [("total_energy (kWh)", "lots"),
                                         ("total_energy (kWh)", float("nan")),
                                         ("evaluation_results", "none"),
                                         ("eval_energy", "x")])
def test_wrong_types_in_results_json(capsys, table, tmp_path, field, value):
    import shutil

    tree = shutil.copytree(table.parent / "tree", tmp_path / "tree")
    f = sorted(tree.rglob("results.json"))[0]
    d = json.loads(f.read_text())
    if field == "eval_energy":
        d["evaluation_results"][1]["energy (kWh)"] = value
    else:
        d[field] = value
    f.write_text(json.dumps(d))
    rc, _, err = cli(capsys, "import-ecnas", tree, "--out", tmp_path / "t.parquet", "--json")
    assert rc == 2 and "results.json" in one_line(err)
    assert not (tmp_path / "t.parquet").exists()


# ---------------------------------------------------------------- hostile TOML
def test_nested_toml_in_profiles_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(NESTED)
    marker = tmp_path / "ran"
    for argv in (["measure", "--meters", "estimate", "--profiles", bad, "--",
                  sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                 ["hardware", "--profiles", bad],
                 ["profile", "validate", bad]):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2 and "nested too deeply" in one_line(err), argv
    assert not marker.exists()


def test_nested_toml_campaign_is_one_line(capsys, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text(NESTED)
    rc, _, err = cli(capsys, "run", bad, "--store", tmp_path / "s.sqlite")
    assert rc == 2 and "nested too deeply" in one_line(err)


def test_nested_toml_on_profile_path_inside_measure(tmp_path, monkeypatch):
    import ecnas
    from ecnas.errors import InputError

    (tmp_path / "bad.toml").write_text(NESTED)
    monkeypatch.setenv("ECNAS_PROFILE_PATH", str(tmp_path))
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    meters = ecnas.meters.registry.create_meters(["estimate"])
    # issue 36: in-code metering never breaks the program over the environment's profile path
    with pytest.warns(RuntimeWarning, match="nested too deeply"), \
            ecnas.measure("x", meters=meters) as m:
        pass
    assert any("nested too deeply" in w for w in m.report.warnings)
    with pytest.raises(InputError, match="nested too deeply"), \
            ecnas.measure("x", meters=meters, profile_paths=[tmp_path]):
        pass


# ---------------------------------------------------------------- bundle manifest
def _edit_manifest(bundle: Path, dst: Path, edit) -> Path:
    import shutil

    b = shutil.copytree(bundle, dst)
    m = json.loads((b / "manifest.json").read_text())
    edit(m)
    (b / "manifest.json").write_text(json.dumps(m))
    return b


@pytest.mark.parametrize("name,edit", [
    ("files-list", lambda m: m.__setitem__("files", ["table.parquet"])),
    ("layouts-text", lambda m: m.__setitem__("layouts", "all")),
    ("budgets-text", lambda m: m["layouts"][0].__setitem__("budgets", "4")),
    ("repeats-float", lambda m: m["layouts"][0].__setitem__("repeats", 2.5)),
    ("metrics-null", lambda m: m["layouts"][0].__setitem__("metrics", None)),
    ("status-number", lambda m: m["layouts"][0].__setitem__("status", 3)),
    ("devices-text", lambda m: m.__setitem__("devices", "gpu")),
    ("sha-number", lambda m: m["files"]["table.parquet"].__setitem__("sha256", 5)),
    ("meta-list", lambda m: m.__setitem__("table_metadata", [])),
])
def test_manifest_fields_of_the_wrong_type(capsys, bundle, tmp_path, name, edit):
    b = _edit_manifest(bundle, tmp_path / "b", edit)
    for argv in (["query", b, "--matrix", "0100", "--ops", "input,output", "--epochs", "4"],
                 ["pareto", b]):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2, (name, argv, err)
        one_line(err)


def test_manifest_path_outside_the_bundle_is_refused(capsys, bundle, tmp_path):
    import hashlib

    secret = tmp_path / "secret.parquet"
    secret.write_bytes((bundle / "table.parquet").read_bytes())
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    b = tmp_path / "deep" / "er"
    b.parent.mkdir()

    def edit(m):
        m["files"]["../../secret.parquet"] = {"sha256": digest, "bytes": secret.stat().st_size}
        m["layouts"][0]["archs"] = "../../secret.parquet"

    _edit_manifest(bundle, b, edit)
    from ecnas.benchmark.bundle import verify_bundle
    from ecnas.errors import InputError

    with pytest.raises(InputError, match="plain file name"):
        verify_bundle(b)
    rc, _, err = cli(capsys, "pareto", b)
    assert rc == 2 and "plain file name" in one_line(err)


# ---------------------------------------------------------------- model files
def _npz(arrays: dict[str, bytes], bomb_mib: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in arrays.items():
            z.writestr(name, data)
        if bomb_mib:  # zeros, streamed: a few hundred KB that unpack to bomb_mib MiB
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {
                "descr": "<f8", "fortran_order": False, "shape": (bomb_mib << 17,)})
            with z.open("extrapolator/bomb.npy", "w", force_zip64=True) as fh:
                fh.write(header.getvalue())
                chunk = bytes(1 << 20)
                for _ in range(bomb_mib):
                    fh.write(chunk)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _meta() -> bytes:
    return _npy(np.frombuffer(json.dumps({"format": "ecnas-surrogate/1"}).encode(), np.uint8))


@pytest.mark.parametrize("case", ["object-dtype", "complex", "shape-lie", "huge-member",
                                  "bomb", "text-member", "not-zip"])
def test_hostile_model_files(capsys, table, tmp_path, case):
    header = np.lib.format.header_data_from_array_1_0(np.zeros(3))
    if case == "object-dtype":
        bad = _npy(np.array([1.0])).replace(b"'<f8'", b"'|O' ")
    elif case == "complex":
        bad = _npy(np.zeros(3, dtype=np.complex128))
    elif case == "shape-lie":  # claims 10^6 values, holds 3
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {**header, "shape": (1000, 1000)})
        bad = buf.getvalue() + np.zeros(3).tobytes()
    elif case == "huge-member":  # claims 745 GiB
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {**header, "shape": (100_000_000_000,)})
        bad = buf.getvalue()
    elif case == "bomb":  # about 70 KB on disk, 72 MiB unpacked
        bad = _npy(np.zeros(3))
    elif case == "text-member":
        bad = b"not an array"
    data = b"MZ not a zip" if case == "not-zip" else _npz(
        {"__meta__.npy": _meta(), "extrapolator/w.npy" if case != "text-member"
         else "notes.txt": bad}, bomb_mib=72 if case == "bomb" else 0)
    model = tmp_path / "m.npz"
    model.write_bytes(data)
    if case == "bomb":
        import tracemalloc

        from ecnas.errors import InputError
        from ecnas.surrogate.modelfile import read_model

        assert model.stat().st_size < 1 << 20
        tracemalloc.start()
        with pytest.raises(InputError):
            read_model(model)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 << 20, f"{peak} bytes allocated to refuse a 400 KB zip bomb"
    rc, _, err = cli(capsys, "surrogate", "predict", model, table, "--budget", "4", "--out",
                     tmp_path / "p.parquet")
    assert rc == 2
    one_line(err)
    assert not (tmp_path / "p.parquet").exists()


def test_model_with_arrays_of_the_wrong_shape(capsys, table, tmp_path):
    """A real model file whose arrays were swapped for wrong shapes or dtypes: refused on
    load with one line, not a numpy error at predict time."""
    import pandas as pd

    from ecnas.surrogate.modelfile import read_model, write_model

    m = tmp_path / "m.npz"
    rc, _, err = cli(capsys, "surrogate", "fit", table, "--out", m, "--kind", "linear")
    assert rc == 0, err
    cells = tmp_path / "cells.csv"  # cells only: every prediction comes from the model
    pd.read_parquet(table)[["matrix", "ops"]].drop_duplicates().to_csv(cells, index=False)
    assert cli(capsys, "surrogate", "predict", m, cells, "--budget", "4", "--out",
               tmp_path / "ok.parquet")[0] == 0
    meta, arrays = read_model(m)
    meta.pop("format")
    for bad in ({k: v.reshape(-1)[:1] for k, v in arrays.items()},
                {k: np.zeros((2, 2, 2)) for k in arrays},
                {k: np.zeros(v.shape, dtype=np.int8) for k, v in arrays.items()}):
        write_model(tmp_path / "bad.npz", meta, bad)
        rc, _, err = cli(capsys, "surrogate", "predict", tmp_path / "bad.npz", cells,
                         "--budget", "4", "--out", tmp_path / "p.parquet")
        assert rc == 2, err
        assert "model" in one_line(err)
        assert not (tmp_path / "p.parquet").exists()


# ---------------------------------------------------------------- pareto
@pytest.mark.parametrize("argv", [["--max-accuracy-loss", "-1"], ["--max-accuracy-loss", "nan"],
                                  ["--plot", "f.txt"]])
def test_pareto_bad_values(capsys, bundle, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "pareto", bundle, *argv)
    assert rc == 2
    one_line(err)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- non-UTF-8 file names
@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names are a POSIX matter")
def test_non_utf8_file_names(capsys, table, tmp_path):
    """Names as POSIX allows them (any bytes): read, written, and printed escaped."""
    odd = os.fsencode(tmp_path) + b"/t\xff\xfe.parquet"
    with open(odd, "wb") as fh:
        fh.write(table.read_bytes())
    rc, out, err = cli(capsys, "check", os.fsdecode(odd))
    assert rc == 0, err
    assert "t\\xff\\xfe.parquet" in out  # escaped, not a UnicodeEncodeError
    bundle = os.fsencode(tmp_path) + b"/b\xff"
    rc, _, err = cli(capsys, "export", os.fsdecode(odd), "--out", os.fsdecode(bundle))
    assert rc == 0, err
    assert os.path.isfile(bundle + b"/manifest.json")
    rc, _, err = cli(capsys, "check", os.fsdecode(os.fsencode(tmp_path) + b"/none\xff.parquet"))
    assert rc == 2 and "none\\xff" in one_line(err)


# ---------------------------------------------------------------- hostile sysfs
def test_hostile_rapl_values_never_kill_the_guard_silently(capsys, tmp_path, monkeypatch):
    sys.path.insert(0, str(TESTS))
    from fakes.sysfs import FakePowercap

    tree = FakePowercap(tmp_path / "sys")
    good = tree.package(0, dram=False, core=False)["package"]
    bad = tree.package(1, dram=False, core=False)["package"]
    (bad.path / "max_energy_range_uj").write_text("9" * 400 + "\n")  # overflows a float
    good.set(1_000_000)
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(tree.root))
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    # mid-run the command writes a hostile value into the good counter
    hostile = (f"import os; fd = os.open({str(good.energy_file)!r}, os.O_WRONLY); "
               "os.pwrite(fd, b'-99999999999999999999999\\n', 0)")
    rc, out, err = cli(capsys, "measure", "--meters", "rapl", "--json", "--",
                       sys.executable, "-c", hostile)
    assert "Traceback" not in err and "Exception in thread" not in err, err
    report = json.loads(out)
    assert rc == 0
    assert any("counter stopped reading" in w or "outside its range" in w
               for w in report["warnings"]), report["warnings"]
    assert snapshot(tmp_path / "sys")  # the tree is still there, untouched by ecnas


def test_nested_toml_is_refused_whatever_the_recursion_limit(capsys, tmp_path):
    """Another library may raise the interpreter's recursion limit (then tomllib reads 500
    nested arrays without a RecursionError): the depth rule refuses them all the same."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        bad = tmp_path / "bad.toml"
        bad.write_text(NESTED)
        for argv in (["profile", "validate", bad], ["run", bad, "--store", tmp_path / "s.sqlite"]):
            rc, _, err = cli(capsys, *argv)
            assert rc == 2 and "nested too deeply" in one_line(err), argv
    finally:
        sys.setrecursionlimit(limit)
