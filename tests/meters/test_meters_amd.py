"""AMD SMI meter against a stand-in libamd_smi.so compiled here and loaded by the real amdsmi
bindings. amdsmi finds its library through ROCM_PATH when it is imported, so the meter runs in
this process; `ecnas hardware` and `ecnas measure` run as the real command."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.amd import (
    ENERGY,
    FAIL_ENERGY,
    GONE,
    GUEST,
    N_A,
    NO_ENUMERATION,
    NO_PARTITIONS,
    FakeAmdGpu,
    build_stub,
    compiler,
    import_amdsmi,
    joules,
    write_state,
)
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)

from ecnas import Monitor
from ecnas.meters import default_meters
from ecnas.meters.amd import AmdSmiMeter, library_may_load

ROOT = Path(__file__).resolve().parents[2]
PROFILES = [ROOT / "hardware_profiles"]  # this tree's profiles, whatever is installed
TESTS = Path(__file__).resolve().parents[1]
ENV = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "ROCM_HOME",
       "FAKE_ROCM_VERSION", "ECNAS_AMD_WHOLE_BOARD")


@pytest.fixture(scope="session")
def rocm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROCM_PATH holding the stand-in libraries, amdsmi imported against it."""
    if importlib.util.find_spec("amdsmi") is None:
        pytest.skip("amdsmi is not installed (pip install 'ecnas[amd]')")
    if compiler() is None:
        pytest.skip("no C compiler to build the stand-in libamd_smi.so")
    root = build_stub(tmp_path_factory.mktemp("rocm"))
    saved = os.environ.get("ROCM_PATH")
    os.environ["ROCM_PATH"] = str(root)
    try:
        import_amdsmi(root)
    except RuntimeError as exc:
        pytest.skip(f"the stand-in cannot stand in here: {exc}")
    finally:
        if saved is None:
            os.environ.pop("ROCM_PATH")
        else:
            os.environ["ROCM_PATH"] = saved
    return root


@pytest.fixture
def state(rocm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in's device table for this test (the stub reads it on every call), under a
    sysfs root where the amdgpu driver is loaded."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    (tmp_path / "root" / "sys" / "module" / "amdgpu").mkdir(parents=True)
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(tmp_path / "root"))
    path = tmp_path / "amdsmi-state.txt"
    monkeypatch.setenv("FAKE_AMDSMI_STATE", str(path))
    return path


def window(meter: AmdSmiMeter, state: Path, after: list[FakeAmdGpu], wait_s: float = 0.0,
           ) -> dict[str, Any]:
    """One Monitor window over ``meter`` while the devices move to ``after``."""
    with Monitor([meter], profile_paths=PROFILES) as mon:
        mon.begin("w")
        write_state(state, after)
        time.sleep(wait_s)
        return mon.end("w").to_dict()


def mi210(uuid: str = "aaaa-0000", **kw: Any) -> FakeAmdGpu:
    return FakeAmdGpu(uuid, serial=kw.pop("serial", "5B0A6E6FD3C2B5C8"), **kw)


def test_energy_counter_path_two_gpus_exact_joules(state: Path) -> None:
    gpus = [mi210(acc=1000, bus=12), mi210("bbbb-1111", serial="00C0FFEE00000001", acc=7,
                                           bus=13, hip=1)]
    write_state(state, gpus)
    meter = AmdSmiMeter()
    status = meter.status()
    assert status.usable and status.domains == ("gpu:0", "gpu:1")
    assert "gpu:0 AMD Instinct MI210: energy counter" in status.reason
    dev = status.devices[0]
    assert (dev.name, dev.pci_device_id, dev.uuid) == ("AMD Instinct MI210", "0x740f",
                                                      "aaaa-0000")
    out = window(meter, state, [replace(gpus[0], acc=1000 + 98_039),
                                replace(gpus[1], acc=7 + 1_000_000)])
    d = out["domain_details"]
    assert d["gpu:0"]["raw_joules"] == pytest.approx(joules(98_039), rel=1e-12)
    assert d["gpu:1"]["raw_joules"] == pytest.approx(joules(1_000_000), rel=1e-12)
    assert d["gpu:0"]["status"] == "measured" and d["gpu:0"]["meter"] == "amdsmi"
    assert d["gpu:0"]["profile_id"] == "amd-instinct-mi210"
    assert out["estimated"] is False and out["warnings"] == []


def test_counter_wrap_is_counted_across(state: Path) -> None:
    start = 2**32 - 400
    write_state(state, [mi210(acc=start)])
    out = window(AmdSmiMeter(), state, [mi210(acc=(start + 1100) % 2**32)])
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(joules(1100),
                                                                          rel=1e-12)
    assert out["warnings"] == []  # a wrap is normal, not a fault


def test_counter_reset_counts_on_from_zero_and_warns(state: Path) -> None:
    write_state(state, [mi210(acc=5 * 2**32)])  # a 64-bit counter cannot wrap here: a reset
    out = window(AmdSmiMeter(), state, [mi210(acc=250)])
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(joules(250), rel=1e-12)
    assert any("gpu:0: energy counter went back" in w for w in out["warnings"])


def test_implausible_wrap_is_a_reset(state: Path) -> None:
    # From 1000 down to 10 within a moment: a wrap would mean 65 kJ in milliseconds.
    write_state(state, [mi210(acc=1000)])
    out = window(AmdSmiMeter(), state, [mi210(acc=10)])
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(joules(10), rel=1e-12)
    assert any("went back (1000 -> 10)" in w for w in out["warnings"])


def test_polling_current_power_when_the_counter_is_missing(state: Path) -> None:
    write_state(state, [mi210(flags=0, cur=300, avg=150)])
    meter = AmdSmiMeter(poll_interval_s=0.01)
    assert meter.boards()[0].mode == "current"
    assert "no energy counter (AMDSMI_STATUS_NOT_SUPPORTED)" in meter.status().reason
    out = window(meter, state, [mi210(flags=0, cur=300, avg=150)], wait_s=0.3)
    detail = out["domain_details"]["gpu:0"]
    # A constant power integrates exactly: energy / duration is the power.
    assert detail["raw_joules"] / out["duration_s"] == pytest.approx(300.0, rel=1e-9)
    assert detail["short_window"] is False


def test_polling_average_power_flags_sub_second_windows(state: Path) -> None:
    write_state(state, [mi210(flags=0, cur=N_A, avg=90)])
    meter = AmdSmiMeter(poll_interval_s=0.01)
    assert meter.boards()[0].mode == "average"
    out = window(meter, state, [mi210(flags=0, cur=N_A, avg=90)], wait_s=0.2)
    detail = out["domain_details"]["gpu:0"]
    assert detail["raw_joules"] / out["duration_s"] == pytest.approx(90.0, rel=1e-9)
    assert detail["short_window"] is True  # a ~1 s average cannot resolve 0.2 s


@pytest.mark.parametrize("flag, message", [(FAIL_ENERGY, "AMDSMI_STATUS_UNKNOWN_ERROR"),
                                           (GONE, "AMDSMI_STATUS_NOT_FOUND")])
def test_amdsmi_error_mid_window_keeps_energy_so_far_and_warns(
        state: Path, flag: int, message: str) -> None:
    write_state(state, [mi210(acc=1000)])
    with Monitor([AmdSmiMeter()], profile_paths=PROFILES) as mon:
        mon.begin("w")
        write_state(state, [mi210(acc=1000 + 65_360)])
        mon.peek("w")
        write_state(state, [mi210(acc=9_000_000, flags=ENERGY | flag)])
        out = mon.end("w").to_dict()
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(joules(65_360),
                                                                          rel=1e-12)
    assert any(f"gpu:0: amdsmi error ({message})" in w for w in out["warnings"])


MI100 = {"devid": 0x738C, "name": "AMD Instinct MI100", "avg": 150}


@pytest.mark.parametrize("rocm_version, mode, words", [
    ("6.2.1", "average", "unreliable under ROCm 6.2.1, amdgpu driver 6.8.5"),
    ("6.0.2", "average", "unreliable under ROCm 6.0.2"),
    (None, "average", "ROCm version unknown on an MI100"),
    ("6.1.3", "counter", "energy counter"),
])
def test_mi100_counter_is_distrusted_on_broken_rocm_releases(
        state: Path, monkeypatch: pytest.MonkeyPatch, rocm_version: str | None, mode: str,
        words: str) -> None:
    if rocm_version:
        monkeypatch.setenv("FAKE_ROCM_VERSION", rocm_version)
    write_state(state, [mi210(acc=10, **MI100)])
    meter = AmdSmiMeter()
    assert meter.boards()[0].mode == mode
    assert words in meter.status().reason
    meter.close()
    assert AmdSmiMeter(counter=True).boards()[0].mode == "counter"  # the user's override


def three() -> list[FakeAmdGpu]:
    """Three MI210s whose HIP order (hip=) differs from amdsmi's (line) order."""
    return [mi210("aaaa-0000", serial="00000000000000AA", hip=2, bus=1, acc=0),
            mi210("bbbb-1111", serial="00000000000000BB", hip=0, bus=2, acc=0),
            mi210("cccc-2222", serial="00000000000000CC", hip=1, bus=3, acc=0)]


def advanced() -> list[FakeAmdGpu]:
    return [replace(g, acc=1000 * (k + 1)) for k, g in enumerate(three())]


@pytest.mark.parametrize("env, expected", [
    # HIP order (the hip ids): bbbb, cccc, aaaa
    ({}, ["bbbb-1111", "cccc-2222", "aaaa-0000"]),
    ({"HIP_VISIBLE_DEVICES": "GPU-00000000000000aa,0"}, ["aaaa-0000", "bbbb-1111"]),
    ({"HIP_VISIBLE_DEVICES": "cccc-2222"}, ["cccc-2222"]),  # amdsmi's UUID form
    ({"ROCR_VISIBLE_DEVICES": "2,1", "HIP_VISIBLE_DEVICES": "1"}, ["cccc-2222"]),
    ({"CUDA_VISIBLE_DEVICES": "2"}, ["aaaa-0000"]),  # HIP reads it when HIP's is unset
    ({"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "2"}, ["cccc-2222"]),
])
def test_visible_devices_by_index_and_uuid(state: Path, monkeypatch: pytest.MonkeyPatch,
                                           env: dict[str, str], expected: list[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_state(state, three())
    meter = AmdSmiMeter()
    assert [b.uuid for b in meter.boards()] == expected
    out = window(meter, state, advanced())
    counts = {g.uuid: g.acc for g in advanced()}
    assert out["domains"] == {f"gpu:{k}": pytest.approx(joules(counts[u]), rel=1e-12)
                              for k, u in enumerate(expected)}


def test_without_hip_ids_the_order_is_amdsmi_order_and_said(state: Path) -> None:
    write_state(state, [replace(g, flags=ENERGY | NO_ENUMERATION) for g in three()])
    meter = AmdSmiMeter()
    assert [b.uuid for b in meter.boards()] == ["aaaa-0000", "bbbb-1111", "cccc-2222"]
    assert "gpu:i follows amdsmi (PCI) order" in meter.status().reason


@pytest.mark.parametrize("env, words", [
    ({"HIP_VISIBLE_DEVICES": "GPU-zzz"}, "GPU-zzz matches 0 GPUs by UUID"),
    ({"HIP_VISIBLE_DEVICES": "5"}, "names GPU 5, but only 3 are there"),
    ({"HIP_VISIBLE_DEVICES": ""}, "HIP_VISIBLE_DEVICES is empty"),
    ({"ROCR_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "1"}, "only 1 are there"),
])
def test_bad_visible_devices_are_unavailable_with_a_reason(
        state: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], words: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_state(state, three())
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert words in status.reason and status.fix


def mi250x() -> list[FakeAmdGpu]:
    """Two MI250X packages: dies 0/1 on OAM 0, dies 2/3 on OAM 1; the second die of each
    reads 0 W and its counter stands still."""
    def die(k: int, acc: int) -> FakeAmdGpu:
        second = k % 2 == 1
        return FakeAmdGpu(f"die-{k}", devid=0x740C, serial=f"00000000000000{k}{k}", hip=k,
                          oam=k // 2, bus=k + 1, acc=0 if second else acc,
                          avg=0 if second else 280, name="AMD Instinct MI250X/MI250")
    return [die(k, 10_000 * (k + 1)) for k in range(4)]


def test_mi250_second_die_is_counted_once_with_its_package(state: Path) -> None:
    write_state(state, mi250x())
    meter = AmdSmiMeter()
    status = meter.status()
    assert status.domains == ("gpu:0", "gpu:2")
    assert "both dies of the package (the second die reads 0 W)" in status.reason
    assert "gpu:0, gpu:1" in status.reason and "gpu:2, gpu:3" in status.reason
    after = [replace(g, acc=g.acc + 5000) if g.avg else g for g in mi250x()]
    out = window(meter, state, after)
    assert out["domains"] == {"gpu:0": pytest.approx(joules(5000), rel=1e-12),
                              "gpu:2": pytest.approx(joules(5000), rel=1e-12)}
    assert out["domain_details"]["gpu:0"]["profile_id"] == "amd-instinct-mi250x"


def test_one_die_of_a_package_is_refused_unless_whole_board(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(state, mi250x())
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")  # the second die alone, as SLURM gives it
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert ("gpu:0 is one die of a two-die package (AMD Instinct MI250X/MI250)"
            in status.reason)
    assert "whole_board=True" in status.fix
    assert "amdsmi" not in [m.name for m in default_meters()]
    meter = AmdSmiMeter(whole_board=True)
    assert "1 GPU(s) this job cannot see" in meter.status().reason
    after = [replace(g, acc=g.acc + 777) if g.avg else g for g in mi250x()]
    out = window(meter, state, after)
    assert out["domains"] == {"gpu:0": pytest.approx(joules(777), rel=1e-12)}  # die 0 reads


def mi300x_dpx() -> list[FakeAmdGpu]:
    """One MI300X in DPX: two partitions of one PCI device; the first reads the board."""
    common = {"devid": 0x74A1, "name": "AMD Instinct MI300X", "bus": 12, "cpart": "DPX"}
    return [FakeAmdGpu("part-0", part=0, hip=0, func=0, acc=4000, cur=500, **common),
            FakeAmdGpu("part-1", part=1, hip=1, func=1, flags=0, cur=N_A, avg=N_A, **common)]


def test_partitions_of_one_board_are_counted_once(state: Path) -> None:
    write_state(state, mi300x_dpx())
    meter = AmdSmiMeter()
    status = meter.status()
    assert status.domains == ("gpu:0",)
    assert "all partitions of the board once: gpu:0, gpu:1" in status.reason
    after = [replace(mi300x_dpx()[0], acc=4000 + 12_345), mi300x_dpx()[1]]
    out = window(meter, state, after)
    assert out["domains"] == {"gpu:0": pytest.approx(joules(12_345), rel=1e-12)}
    assert out["domain_details"]["gpu:0"]["profile_id"] == "amd-instinct-mi300x"


def test_one_partition_is_refused_with_the_reason_or_metered_as_the_board(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(state, mi300x_dpx())
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    meter = AmdSmiMeter()
    status = meter.status()
    assert status.status.value == "unavailable"
    assert "gpu:0 is 1 of 2 partitions (DPX/NPS1) of one AMD Instinct MI300X" in status.reason
    assert "energy per board, not per partition" in status.reason
    with pytest.raises(Exception, match="amdsmi: .*partitions"):
        Monitor([meter]).start()
    monkeypatch.setenv("ECNAS_AMD_WHOLE_BOARD", "1")  # what the fix says, for the CLI
    board = AmdSmiMeter()
    assert board.status().usable
    after = [replace(mi300x_dpx()[0], acc=4000 + 99), mi300x_dpx()[1]]
    out = window(board, state, after)
    assert out["domains"] == {"gpu:0": pytest.approx(joules(99), rel=1e-12)}


def test_sub_partitions_that_do_not_answer_mode_queries_still_join_their_board(
        state: Path) -> None:
    # Only a device's first partition answers the partition queries (ROCm/rocm-systems#8491).
    gpus = [mi300x_dpx()[0], replace(mi300x_dpx()[1], flags=NO_PARTITIONS, cpart="")]
    write_state(state, gpus)
    assert AmdSmiMeter().status().domains == ("gpu:0",)


def test_vm_guest_is_refused_with_the_reason(state: Path) -> None:
    write_state(state, [mi210(virt=GUEST, name="AMD Instinct MI300X VF", devid=0x74B5)])
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert "virtual function in a VM guest" in status.reason
    assert "host" in status.fix and "estimate" in status.fix


def test_no_counter_and_no_power_is_unavailable(state: Path) -> None:
    write_state(state, [mi210(flags=0, cur=N_A, avg=N_A)])
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert "no energy counter and no power reading" in status.reason


def test_amdsmi_init_failure_is_unavailable(state: Path, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_AMDSMI_STATE", str(tmp_path / "no-such-file"))
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert "amdsmi_init failed: AMDSMI_STATUS_INIT_ERROR" in status.reason
    assert "amd-smi list" in status.fix


def test_driver_precheck_spares_machines_without_amd(state: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(state, [mi210()])
    assert AmdSmiMeter().status().usable
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(tmp_path / "no-amd"))
    status = AmdSmiMeter().status()
    assert status.status.value == "unavailable"
    assert status.reason.startswith("the amdgpu driver is not loaded") and "amdgpu" in status.fix


def test_library_precheck(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if library_may_load({}):
        pytest.skip("this machine has ROCm's libamd_smi.so")
    assert not library_may_load({"ROCM_PATH": str(tmp_path)})
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libamd_smi.so").write_bytes(b"")
    assert library_may_load({"ROCM_PATH": str(tmp_path)})
    assert library_may_load({"ROCM_HOME": str(tmp_path)})
    monkeypatch.setenv("ROCM_PATH", str(tmp_path / "elsewhere"))
    status = AmdSmiMeter().status()
    assert status.reason == "libamd_smi.so not found: no ROCm here" and "ROCM_PATH" in status.fix


# -- the real commands ---------------------------------------------------------------------------
def ecnas(*args: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "ecnas", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ecnas_hardware_lists_amd_gpus(state: Path) -> None:
    write_state(state, mi250x()[:2] + [mi210(hip=2, bus=40)])
    summary = ecnas("hardware", "--json", "--profiles", str(PROFILES[0]))
    amd = next(m for m in summary["meters"] if m["meter"] == "amdsmi")
    assert amd["status"] == "measured" and amd["domains"] == ["gpu:0", "gpu:2"]
    names = [(d["domain"], d["name"], d["pci_device_id"], d["profile"]["profile"])
             for d in amd["devices"]]
    assert names == [("gpu:0", "AMD Instinct MI250X/MI250", "0x740c", "amd-instinct-mi250x"),
                     ("gpu:2", "AMD Instinct MI210", "0x740f", "amd-instinct-mi210")]
    assert "amdsmi" in summary["default_meters"]


def test_ecnas_measure_reports_exact_joules_across_a_wrap(state: Path) -> None:
    start = 2**32 - 500
    write_state(state, [mi210(acc=start)])
    report = ecnas("measure", "--json", "--profiles", str(PROFILES[0]), "--",
                   sys.executable, "-m", "fakes.amd", "advance", str(state), "1100")
    detail = report["domain_details"]["gpu:0"]
    assert detail["meter"] == "amdsmi" and detail["status"] == "measured"
    assert detail["raw_joules"] == pytest.approx(joules(1100), rel=1e-12)
    assert detail["profile_id"] == "amd-instinct-mi210"
    assert report["returncode"] == 0
