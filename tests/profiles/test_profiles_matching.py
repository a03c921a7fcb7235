"""Matching rules: PCI id, normalized name, CPU patterns, fallback, override layers."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from ecnas.errors import InputError
from ecnas.meters.base import DeviceInfo
from ecnas.profiles import (
    get_profile,
    load_profiles,
    match_device,
    normalize_device_name,
    normalize_pci_id,
    write_profile,
)


def gpu(name: str = "", pci: str | None = None) -> DeviceInfo:
    return DeviceInfo(domain="gpu:0", kind="gpu", name=name, pci_device_id=pci)


def cpu(name: str) -> DeviceInfo:
    return DeviceInfo(domain="cpu:0/package", kind="cpu", name=name)


@pytest.mark.parametrize(("raw", "norm"), [
    ("NVIDIA Quadro RTX 6000", "quadro rtx 6000"),
    ("Quadro RTX 6000", "quadro rtx 6000"),
    ("  NVIDIA   GeForce RTX 3090 ", "geforce rtx 3090"),
    ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", "intel xeon gold 6130 cpu @ 2.10ghz"),
    ("NVIDIA TITAN Xp™", "titan xp"),
])
def test_normalize_device_name(raw, norm):
    assert normalize_device_name(raw) == norm


@pytest.mark.parametrize(("raw", "norm"), [
    ("0x1E30", "0x1e30"), ("1e30", "0x1e30"), ("10de:1e30", "0x1e30"),
    ("0x1E3010DE", "0x1e30"), ("xyz", None), ("0x12345", None),
])
def test_normalize_pci_id(raw, norm):
    assert normalize_pci_id(raw) == norm


def test_ecnas_device_names_match_quadro_rtx_6000(ecnas_5v_results):
    # Both spellings appear across driver versions; EC-NAS records the board name.
    names = {d.strip() for r in list(ecnas_5v_results.values())[:200]
             for d in r["avg_power_usages:"]["gpu"]["devices"]}
    assert names
    for name in names | {"Quadro RTX 6000"}:
        m = match_device(gpu(name))
        assert m.profile_id == "nvidia-quadro-rtx-6000", name
        assert m.rule == "name"


def test_pci_id_comes_first_and_reason_says_so():
    m = match_device(gpu("something odd", "0x2204"))
    assert m.profile_id == "nvidia-rtx-3090"
    assert m.reason.startswith("PCI device id 0x2204")
    m = match_device(gpu("", "0x1DB4"))  # NVML may report upper case
    assert m.profile_id == "nvidia-v100" and m.reason == "PCI device id 0x1db4"


def test_shared_pci_id_is_settled_by_name(tmp_path):
    base = get_profile("nvidia-quadro-rtx-6000")
    sibling = replace(base, id="nvidia-quadro-rtx-8000", name="Quadro RTX 8000",
                      match=replace(base.match, names=("Quadro RTX 8000",)))
    write_profile(sibling, tmp_path / "nvidia-quadro-rtx-8000.toml")
    m = match_device(gpu("NVIDIA Quadro RTX 8000", "0x1e30"), [tmp_path])
    assert m.profile_id == "nvidia-quadro-rtx-8000"
    m = match_device(gpu("Quadro RTX 6000", "0x1e30"), [tmp_path])
    assert m.profile_id == "nvidia-quadro-rtx-6000"


def test_unknown_gpu_has_no_profile_and_says_why():
    m = match_device(gpu("NVIDIA L4", "0x27b8"))
    assert m.profile is None and m.rule == "none"
    assert "'l4'" in m.reason and "0x27b8" in m.reason and "ecnas calibrate" in m.reason


@pytest.mark.parametrize(("model", "pid"), [
    ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", "generic-intel-xeon"),
    ("AMD EPYC 7763 64-Core Processor", "generic-amd-epyc"),
    ("AMD EPYC", "generic-amd-epyc"),
    ("Intel(R) Core(TM) i7-9700K CPU @ 3.60GHz", "generic-desktop-cpu"),
    ("AMD Ryzen 9 5950X 16-Core Processor", "generic-desktop-cpu"),
    ("ARM Neoverse-N1", "generic-cpu"),
    ("", "generic-cpu"),
])
def test_cpu_patterns_and_fallback(model, pid):
    m = match_device(cpu(model))
    assert m.profile_id == pid
    if pid == "generic-cpu":
        assert m.rule == "fallback" and "generic fallback" in m.reason
    else:
        assert m.rule == "cpu_model_pattern" and "matches pattern" in m.reason


def test_more_specific_cpu_pattern_wins(tmp_path):
    epyc = get_profile("generic-amd-epyc")
    mine = replace(epyc, id="amd-epyc-7763", name="AMD EPYC 7763",
                   match=replace(epyc.match, cpu_model_patterns=(r"AMD EPYC 7763\b",)))
    write_profile(mine, tmp_path / "amd-epyc-7763.toml")
    assert match_device(cpu("AMD EPYC 7763 64-Core Processor"), [tmp_path]).profile_id == "amd-epyc-7763"
    assert match_device(cpu("AMD EPYC 7543 32-Core Processor"), [tmp_path]).profile_id == "generic-amd-epyc"


def test_layers_override_by_id(tmp_path, monkeypatch):
    env_dir, extra_dir = tmp_path / "env", tmp_path / "extra"
    base = get_profile("nvidia-a100-40gb")
    write_profile(replace(base, idle_w=51.0), env_dir / "a.toml")
    write_profile(replace(base, idle_w=52.0), extra_dir / "b.toml")
    monkeypatch.setenv("ECNAS_PROFILE_PATH", f"{env_dir}{os.pathsep}")
    assert get_profile("nvidia-a100-40gb").idle_w == 51.0
    assert get_profile("nvidia-a100-40gb", [extra_dir]).idle_w == 52.0
    ids = [p.id for p in load_profiles([extra_dir])]
    assert ids.count("nvidia-a100-40gb") == 1 and ids[-1] == "nvidia-a100-40gb"
    m = match_device(gpu("NVIDIA A100-SXM4-40GB", "0x20b0"), [extra_dir])
    assert m.profile.idle_w == 52.0 and m.profile.source_path == extra_dir / "b.toml"


def test_bad_layers_are_loud(tmp_path, monkeypatch):
    monkeypatch.setenv("ECNAS_PROFILE_PATH", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="ECNAS_PROFILE_PATH: .*missing: no such profile folder"):
        load_profiles()
    monkeypatch.delenv("ECNAS_PROFILE_PATH")
    base = get_profile("generic-cpu")
    write_profile(base, tmp_path / "one.toml")
    write_profile(base, tmp_path / "two.toml")
    with pytest.raises(InputError, match=r"two.toml: id: 'generic-cpu' is also defined in .*one.toml"):
        load_profiles([tmp_path])
    (tmp_path / "two.toml").write_text("id = 3\n")
    with pytest.raises(InputError, match=r"two.toml: id: expected a string, got 3"):
        load_profiles([tmp_path])


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, ecnas.profiles; "
            "print(sorted(m for m in ('numpy', 'scipy', 'torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
