"""Untrusted input to the contribution commands, ``profile validate``, ``check`` and ``surrogate
transfer`` (issue 36 points 1, 6, 9, 10, 11, 13, 15; issue 37 point 9): each case runs the exact
command, asserts its exit status and one-line message, and that no file outside the intended
output changed (SHA-256 of every file before and after).

Tables are real: EC-NAS 5V runs (Quadro RTX 6000) imported by the real importer, relabelled as
a lab's measured table where a case needs one. Hostile archives are built byte by byte here,
as an attacker would: the bomb's gzip stream repeats one compressed block of zeros, so a
6 GB archive costs a few MB and no time to build.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from faults import ROOT, TESTS, cli, make_table, one_line

from ecnas.benchmark.bundle import write_bundle
from ecnas.interop import import_ecnas
from ecnas.tables import read_table, write_table

RTX = ROOT / "hardware_profiles" / "nvidia-quadro-rtx-6000.toml"
V100 = ROOT / "hardware_profiles" / "nvidia-v100.toml"
XEON = ROOT / "hardware_profiles" / "generic-intel-xeon.toml"
FORMAT = "ecnas-device-contribution/1"
ENERGY = ("energy_j", "gpu_energy_j", "cpu_energy_j", "dram_energy_j")
MIB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (to prove nothing outside the output changed)."""
    return {str(p.relative_to(folder)): _sha(p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def measured(src: Path, out: Path, **edits) -> Path:
    """The imported table as a lab's measured table on ``device`` (default the RTX 6000), with
    ``energy_scale``, ``time_scale``, ``budget`` or ``estimated`` applied."""
    t = read_table(src).drop(columns=["energy_kwh"], errors="ignore")
    t["source"] = "measured"
    t["device"] = edits.get("device", "nvidia-quadro-rtx-6000")
    for c in ENERGY:
        t[c] = t[c] * edits.get("energy_scale", 1.0)
    for c in ("training_time_s", "wall_time_s"):
        t[c] = t[c] * edits.get("time_scale", 1.0)
    if "budget" in edits:  # the same runs, scheduled for another budget
        t["epoch"] = t["epoch"] * edits["budget"] / t["budget_epochs"]
        t["budget_epochs"] = edits["budget"]
    if edits.get("estimated"):
        t["estimated"] = True
    return write_table(t, out)


def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def archive(out: Path, profile: Path, table: Path, *, edit=None, extra=(),
            manifest_last: bool = False) -> Path:
    """A contribution archive as an attacker writes it: the manifest (``edit`` changes it),
    the profile and the table with their true SHA-256, and ``extra`` members."""
    pdata, tdata = profile.read_bytes(), table.read_bytes()
    pid = next(ln.split('"')[1] for ln in pdata.decode().splitlines() if ln.startswith("id "))
    m = {"format": FORMAT, "contributor": "a stranger", "notes": "",
         "profile": {"id": pid, "file": f"profile/{pid}.toml", "sha256": _sha(pdata)},
         "table": {"file": f"table/{table.name}", "sha256": _sha(tdata)},
         "energy": {"allow_estimated": False}}
    if edit:
        edit(m)
    mem = [member("manifest.json", json.dumps(m).encode()),
           member(m["profile"]["file"], pdata), member(m["table"]["file"], tdata), *extra]
    if manifest_last:
        mem = mem[1:] + mem[:1]
    with tarfile.open(out, "w:gz") as tar:
        for info, data in mem:
            tar.addfile(info, io.BytesIO(data))
    return out


def zero_bomb(out: Path, names: list[str], size: int, head: list[tuple[str, bytes]] = ()) -> Path:
    """A .tar.gz whose members ``names`` each hold ``size`` zero bytes (a multiple of 1 MiB),
    after the small members ``head``: built from one compressed 1 MiB block of zeros repeated
    (a full flush resets the compressor, so the block's bytes repeat exactly). The stream ends
    without gzip's trailer: a reader that gets that far has read 6 GB already."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    flush = zlib.Z_FULL_FLUSH
    block = comp.compress(b"\0" * MIB) + comp.flush(flush)
    assert comp.compress(b"\0" * MIB) + comp.flush(flush) == block
    with out.open("wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header, raw deflate after
        for name, data in head:
            info, _ = member(name, data)
            pad = b"\0" * (-len(data) % 512)
            f.write(comp.compress(info.tobuf(format=tarfile.GNU_FORMAT) + data + pad)
                    + comp.flush(flush))
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = size
            f.write(comp.compress(info.tobuf(format=tarfile.GNU_FORMAT)) + comp.flush(flush))
            f.write(block * (size // MIB))
    return out


# VmHWM: the peak resident set of this process's own memory since exec (ru_maxrss would
# carry over the forking parent's, pytest's, across exec)
RSS_RUNNER = ("import sys\nfrom ecnas.cli import main\n"
              "try:\n    rc = main(sys.argv[2:])\nfinally:\n"
              "    hwm = next(ln.split()[1] for ln in open('/proc/self/status') "
              "if ln.startswith('VmHWM:'))\n"
              "    open(sys.argv[1], 'w').write(hwm)\nsys.exit(rc)\n")


def run_measured(tmp: Path, *argv: object) -> tuple[subprocess.CompletedProcess, float]:
    """``ecnas ARGV`` in a process of its own: (result, peak resident MB)."""
    rss = tmp / "rss.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    proc = subprocess.run([sys.executable, "-c", RSS_RUNNER, str(rss), *map(str, argv)],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
    return proc, int(rss.read_text()) / 1024


@pytest.fixture(scope="module")
def imported(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("untrusted-contrib"))


@pytest.fixture
def work(tmp_path: Path, imported: Path) -> Path:
    """A folder holding a measured RTX table (the inputs every case starts from)."""
    measured(imported, tmp_path / "rtx.parquet")
    return tmp_path


# ------------------------------------------------------------------ 1. the archive bomb
def test_bomb_at_default_caps_is_refused_on_its_first_header(work: Path) -> None:
    # the probe's archive: three 2000 MiB zero members, each under the old 2 GiB member cap
    bomb = zero_bomb(work / "bomb.tar.gz", ["zero0", "zero1", "zero2"], 2000 * MIB)
    assert bomb.stat().st_size < 16 * MIB
    before = digests(work)
    proc, rss_mb = run_measured(work, "contribution", "verify", bomb)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.stderr) == (
        f"ecnas contribution: error: {bomb}: unpacks to more than 1073741824 bytes (member "
        "'zero0' declares 2097152000); a larger contribution needs --max-bytes")
    assert rss_mb < 200, rss_mb
    after = digests(work)
    after.pop("rss.txt")
    assert after == before


def test_members_within_each_cap_are_stopped_at_the_total(work: Path) -> None:
    # manifest last (so names cannot be judged on the headers): the total cap still holds
    bomb = zero_bomb(work / "bomb.tar.gz", ["zero0", "zero1", "zero2"], 30 * MIB)
    before = digests(work)
    proc, rss_mb = run_measured(work, "contribution", "verify", bomb, "--max-bytes", 50_000_000)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.stderr) == (
        f"ecnas contribution: error: {bomb}: unpacks to more than 50000000 bytes (member "
        "'zero1' declares 31457280); a larger contribution needs --max-bytes")
    assert rss_mb < 200, rss_mb
    after = digests(work)
    after.pop("rss.txt")
    assert after == before


def test_a_member_the_manifest_does_not_name_is_refused_before_it_is_read(
        work: Path, capsys) -> None:
    good = archive(work / "good.tar.gz", RTX, work / "rtx.parquet")
    with tarfile.open(good) as tar:
        head = [(m.name, tar.extractfile(m).read()) for m in tar]  # manifest first
    bomb = zero_bomb(work / "bomb.tar.gz", ["zero0"], 2000 * MIB, head=head[:1])
    before = digests(work)
    rc, out, err = cli(capsys, "contribution", "verify", bomb)
    assert rc == 2 and out == ""
    assert one_line(err) == (f"ecnas contribution: error: {bomb}: zero0 is in the archive but "
                             "not in its manifest")
    assert digests(work) == before


def test_more_members_than_a_contribution_holds(work: Path, capsys) -> None:
    bad = archive(work / "bad.tar.gz", RTX, work / "rtx.parquet",
                  extra=[member("table/more.csv", b"x")], manifest_last=True)
    before = digests(work)
    rc, _, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 2
    assert one_line(err) == (f"ecnas contribution: error: {bad}: more than 3 members (a "
                             "contribution holds a manifest, a profile and a table)")
    assert digests(work) == before


# ------------------------------------------------------------------ 6./9. the manifest
@pytest.mark.parametrize(("energy", "shown"), [([], "list"), ("x", "str")])
def test_manifest_energy_that_is_not_an_object(work: Path, capsys, energy, shown) -> None:
    bad = archive(work / "bad.tar.gz", RTX, work / "rtx.parquet",
                  edit=lambda m: m.update(energy=energy))
    before = digests(work)
    rc, _, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 2
    assert one_line(err) == (f"ecnas contribution: error: {bad}: manifest.json: energy is "
                             f"{shown}, not an object")
    assert digests(work) == before


def test_allow_estimated_must_be_true_or_false(work: Path, capsys, imported: Path) -> None:
    measured(imported, work / "est.parquet", estimated=True)
    bad = archive(work / "bad.tar.gz", RTX, work / "est.parquet",
                  edit=lambda m: m["energy"].update(allow_estimated="no"))
    before = digests(work)
    rc, _, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 2
    assert one_line(err) == (f"ecnas contribution: error: {bad}: manifest.json: "
                             "energy.allow_estimated is 'no', not true or false")
    assert digests(work) == before


# ------------------------------------------------------------------ 9./11. the profile
def _edited_profile(path: Path, src: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_profile_with_tdp_1e300_is_refused_by_validate_and_verify(work: Path, capsys) -> None:
    prof = _edited_profile(work / "rtx.toml", RTX, "tdp_w = 260", "tdp_w = 1e300")
    bad = archive(work / "bad.tar.gz", prof, work / "rtx.parquet")
    before = digests(work)
    rc, _, err = cli(capsys, "profile", "validate", prof)
    assert rc == 2
    reason = "power.tdp_w: 1e+300 W is above 5000 W, more than any single device draws (a " \
             "typo, or milliwatts?)"
    assert one_line(err) == f"ecnas profile validate: error: {prof}: {reason}"
    rc, out, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 1
    assert "FAIL profile-valid: profile/nvidia-quadro-rtx-6000.toml: " + reason in out
    assert one_line(err).startswith(f"ecnas contribution: error: {bad}: refused: ")
    assert digests(work) == before


def test_profile_with_a_catastrophic_pattern_is_refused(work: Path, capsys) -> None:
    prof = _edited_profile(work / "xeon.toml", XEON,
                           'cpu_model_patterns = ["Intel\\\\(R\\\\) Xeon", "\\\\bXeon\\\\b"]',
                           'cpu_model_patterns = ["(a+)+$"]')
    measured(work / "rtx.parquet", work / "xeon.parquet", device="generic-intel-xeon")
    bad = archive(work / "bad.tar.gz", prof, work / "xeon.parquet")
    before = digests(work)
    rc, _, err = cli(capsys, "profile", "validate", prof)
    assert rc == 2
    reason = ("match.cpu_model_patterns[0]: '(a+)+$' repeats a group that itself repeats "
              "(nested quantifiers): matching can take exponential time; write it without the "
              "nesting")
    assert one_line(err) == f"ecnas profile validate: error: {prof}: {reason}"
    rc, out, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 1 and f"FAIL profile-valid: profile/generic-intel-xeon.toml: {reason}" in out
    one_line(err)
    assert digests(work) == before


# ------------------------------------------------------------------ 9. the table's energy
def test_energies_x1e15_on_two_second_runs_are_refused(work: Path, capsys, imported) -> None:
    # runs of ~2 s: the old bound judged only windows of 10 s and more
    t = read_table(work / "rtx.parquet")
    scale = 2.0 / float(t["wall_time_s"].max())
    measured(imported, work / "big.parquet", energy_scale=1e15 * scale, time_scale=scale)
    bad = archive(work / "bad.tar.gz", RTX, work / "big.parquet")
    before = digests(work)
    rc, out, err = cli(capsys, "contribution", "verify", bad)
    assert rc == 1
    line = one_line(err)
    assert "check power-bounds: error: mean power outside the device profile's bounds" in line
    assert "48 row(s) above 100000 W, more than any machine draws" in line
    assert digests(work) == before


def test_all_zero_measured_energies_are_refused_without_warnings(work: Path, imported) -> None:
    t = read_table(work / "rtx.parquet")
    scale = 2.0 / float(t["wall_time_s"].max())
    measured(imported, work / "zero.parquet", energy_scale=0.0, time_scale=scale)
    bad = archive(work / "bad.tar.gz", RTX, work / "zero.parquet")
    before = digests(work)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "ecnas", "contribution",
                           "verify", str(bad)], capture_output=True, text=True, env=env,
                          cwd=work, timeout=300)
    assert proc.returncode == 1
    line = one_line(proc.stderr)  # no RuntimeWarning (divide by zero) beside it
    assert ("device(s) nvidia-quadro-rtx-6000: every measured row after the start reads 0 J "
            "(the meter measured nothing)") in line
    assert digests(work) == before


# ------------------------------------------------------------------ 6./10. merge
@pytest.fixture
def merge_inputs(work: Path, imported: Path, capsys) -> dict[str, Path]:
    """The RTX 6000 bundle (base) and a V100 contribution made by ``ecnas contribute``."""
    base = write_bundle(read_table(imported), work / "base")
    measured(imported, work / "v100.parquet", device="nvidia-v100")
    rc, _, err = cli(capsys, "contribute", "--profile", V100, "--table", work / "v100.parquet",
                     "--out", work / "v100.tar.gz", "--who", "lab")
    assert rc == 0, err
    return {"base": base, "archive": work / "v100.tar.gz"}


def _edit_manifest(bundle: Path, **fields) -> None:
    mf = bundle / "manifest.json"
    m = json.loads(mf.read_text())
    m.update(fields)
    mf.write_text(json.dumps(m))


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("contributions", "abc", "contributions is not a list of objects"),
    ("calibration", [], "calibration is list, not an object of device id -> calibration"),
])
def test_merge_refuses_a_base_manifest_of_the_wrong_shape(work: Path, capsys, merge_inputs,
                                                          field, value, reason) -> None:
    base = merge_inputs["base"]
    _edit_manifest(base, **{field: value})
    before = digests(work)
    rc, out, err = cli(capsys, "contribution", "merge", merge_inputs["archive"], "--into", base,
                       "--out", work / "merged")
    assert rc == 2 and out == ""
    assert one_line(err) == f"ecnas contribution: error: {base}/manifest.json: {reason}"
    assert not (work / "merged").exists()
    assert digests(work) == before


def test_merge_refuses_an_out_inside_the_base_bundle(work: Path, capsys, merge_inputs) -> None:
    base = merge_inputs["base"]
    before = digests(work)
    rc, _, err = cli(capsys, "contribution", "merge", merge_inputs["archive"], "--into", base,
                     "--out", base / "merged")
    assert rc == 2
    assert one_line(err) == (f"ecnas contribution: error: --out {base / 'merged'}: is inside "
                             f"the --into bundle {base}; write the merged bundle to a folder "
                             "of its own")
    assert not (base / "merged").exists()
    assert digests(work) == before


# ------------------------------------------------------------------ issue 37.9: merge says so
def test_merge_says_when_the_device_shares_no_budget(work: Path, capsys, imported) -> None:
    base = write_bundle(read_table(imported), work / "base")  # 4 epochs
    measured(imported, work / "two.parquet", device="nvidia-v100", budget=2)
    assert cli(capsys, "contribute", "--profile", V100, "--table", work / "two.parquet",
               "--out", work / "two.tar.gz")[0] == 0
    before = digests(work)
    rc, out, err = cli(capsys, "contribution", "merge", work / "two.tar.gz", "--into", base,
                       "--out", work / "merged")
    assert rc == 0, err
    assert ("note: device nvidia-v100 is measured at 2 epoch(s) only, the bundle's other "
            "devices at 4 epoch(s): no budget in common, so no query or search compares it "
            "with them") in out.splitlines()
    rc, out, _ = cli(capsys, "contribution", "merge", work / "two.tar.gz", "--into", base,
                     "--out", work / "merged2", "--json")
    assert rc == 0 and len(json.loads(out)["notes"]) == 1
    after = {k: v for k, v in digests(work).items() if not k.startswith("merged")}
    assert after == before


def test_merge_says_when_every_row_is_estimated(work: Path, capsys, imported) -> None:
    base = write_bundle(read_table(imported), work / "base")
    measured(imported, work / "est.parquet", device="nvidia-v100", estimated=True)
    assert cli(capsys, "contribute", "--profile", V100, "--table", work / "est.parquet",
               "--out", work / "est.tar.gz", "--allow-estimated")[0] == 0
    rc, out, err = cli(capsys, "contribution", "merge", work / "est.tar.gz", "--into", base,
                       "--out", work / "merged")
    assert rc == 0, err
    assert ("note: device nvidia-v100: all rows hold estimated energy (contributed with "
            "--allow-estimated), not measured by the lab's meters") in out.splitlines()


# ------------------------------------------------------------------ 13. ecnas check
def test_check_warns_on_nan_validation_accuracy(work: Path, capsys) -> None:
    t = read_table(work / "rtx.parquet")
    t.loc[t.index[[0, 5, 9, 20, 33]], "validation_accuracy"] = np.nan
    write_table(t, work / "nan.parquet")
    before = digests(work)
    rc, out, _ = cli(capsys, "check", work / "nan.parquet")
    assert rc == 0
    assert ("WARN missing-accuracy [5]: 5 trained row(s) have no validation accuracy (NaN) "
            "where the rest of the table has one: queries and searches there have no "
            "accuracy") in out
    assert out.splitlines()[-1] == "PASSED: 0 error(s), 1 warning(s)"
    assert digests(work) == before


# ------------------------------------------------------------------ 15. surrogate transfer
@pytest.fixture(scope="module")
def device_a(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EC-NAS's RTX 6000 table as a file (a folder would be imported with a progress line)."""
    return write_table(import_ecnas(ecnas_5v_dir), tmp_path_factory.mktemp("a") / "a.parquet")


@pytest.fixture(scope="module")
def device_b(device_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ecnas.surrogate.synthetic import derive_device

    b = derive_device(read_table(device_a))
    keep = sorted(b["arch_hash"].unique())[:24]
    return write_table(b[b["arch_hash"].isin(keep)], tmp_path_factory.mktemp("b") / "b.parquet")


def test_transfer_refuses_a_device_b_x1e30(work: Path, capsys, device_b: Path,
                                           device_a: Path) -> None:
    b = read_table(device_b)
    for c in ENERGY:
        b[c] = b[c] * 1e30
    write_table(b, work / "b30.parquet")
    before = digests(work)
    rc, out, err = cli(capsys, "surrogate", "transfer", device_a, work / "b30.parquet",
                       "--kind", "linear", "--sizes", "10", "--draws", "1")
    assert rc == 2 and out == ""
    line = one_line(err)
    assert line.startswith(f"ecnas surrogate: error: device B's table: {len(b)} of {len(b)} "
                           "rows implausible, refused (first: cell ")
    assert "W above 100000 W, more than any machine draws); 'ecnas check' names them all" in line
    assert digests(work) == before


def test_transfer_names_each_dropped_cell_of_b(work: Path, capsys, device_b: Path,
                                               device_a: Path) -> None:
    b = read_table(device_b)
    full = b.index[(b["epoch"] == b["budget_epochs"])]
    cell = str(b.loc[full[0], "arch_hash"])
    b.loc[full[0], "energy_j"] = np.inf
    write_table(b, work / "binf.parquet")
    before = digests(work)
    rc, out, err = cli(capsys, "surrogate", "transfer", device_a, work / "binf.parquet",
                       "--kind", "linear", "--sizes", "10", "--draws", "1", "--json")
    assert rc == 0, err
    budget = int(b.loc[full[0], "budget_epochs"])
    notes = json.loads(out)["notes"]
    assert f"cell {cell} of B: 1 run(s) at {budget} epochs dropped, energy_j infinite" in notes
    assert digests(work) == before


def test_make_bundle_takes_allow_estimated_as_a_real_bool(work: Path) -> None:
    from ecnas.contributions import make_bundle
    from ecnas.errors import InputError

    before = digests(work)
    with pytest.raises(InputError, match="allow_estimated must be True or False, got 'no'"):
        make_bundle(RTX, work / "rtx.parquet", work / "x.tar.gz", allow_estimated="no")
    assert digests(work) == before
