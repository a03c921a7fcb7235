"""Profile files: the packaged set validates; each malformed file gives a precise error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_inproc import run_cli

from ecnas.errors import InputError
from ecnas.profiles import (
    dumps_profile,
    loads_profile,
    packaged_profiles,
    validate_file,
    write_profile,
)
from ecnas.profiles.model import profile_to_dict

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_IDS = {
    "nvidia-quadro-rtx-6000", "nvidia-rtx-3060", "nvidia-rtx-3090", "nvidia-titan-xp",
    "nvidia-v100", "nvidia-a100-40gb", "nvidia-a100-80gb", "nvidia-h100-sxm",
    "nvidia-h100-pcie", "nvidia-h200", "generic-intel-xeon", "generic-amd-epyc",
    "generic-desktop-cpu", "generic-cpu",
    "amd-instinct-mi210", "amd-instinct-mi250x", "amd-instinct-mi300x",
}

GOOD = '''
id = "test-gpu"
kind = "gpu"
name = "Test GPU"
provenance = "made up for a test"

[match]
names = ["Test GPU"]
pci_device_ids = ["0x1234"]

[power]
tdp_w = 200
idle_w = 20

[meter]
energy_counter = true
counter_update_s = 0.1

[calibration]
status = "uncalibrated"
gain = 1.0
offset_w = 0.0
'''


def test_packaged_profiles_are_the_seed_set_and_valid():
    profiles = packaged_profiles()
    assert {p.id for p in profiles} == EXPECTED_IDS
    for p in profiles:
        assert p.source_path is not None and p.source_path.stem == p.id
        assert p.provenance.strip()
        assert not p.calibrated  # nobody calibrated the seeds: they must say so
        assert p.calibration.gain == 1.0 and p.calibration.offset_w == 0.0
        assert p.max_w >= p.tdp_w > p.idle_w >= 0


def test_seed_facts_follow_the_spec_sheets():
    by_id = {p.id: p for p in packaged_profiles()}
    assert by_id["nvidia-titan-xp"].energy_counter is False  # Pascal: no energy counter
    assert by_id["nvidia-quadro-rtx-6000"].energy_counter is True  # Turing (Volta+)
    assert by_id["nvidia-a100-40gb"].power_averaging_s == 0.0  # A100: no 1 s averaging
    for pid in ("nvidia-rtx-3060", "nvidia-rtx-3090", "nvidia-h100-sxm", "nvidia-h200"):
        assert by_id[pid].power_averaging_s == 1.0
    assert "0x1e30" in by_id["nvidia-quadro-rtx-6000"].match.pci_device_ids
    assert by_id["generic-amd-epyc"].rapl_domains == ("package",)  # AMD: no DRAM domain
    assert by_id["generic-cpu"].match.fallback
    for p in by_id.values():
        if p.kind == "cpu":
            assert p.per_core_w and p.per_core_w < p.tdp_w


def test_good_profile_parses():
    p = loads_profile(GOOD, "good.toml")
    assert (p.id, p.kind, p.tdp_w, p.idle_w, p.max_w) == ("test-gpu", "gpu", 200.0, 20.0, 200.0)
    assert p.match.pci_device_ids == ("0x1234",)
    assert p.counter_update_s == 0.1


def _mutate(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


BAD = [
    (_mutate('id = "test-gpu"\n', ""), "id: missing required key"),
    (_mutate('"test-gpu"', '"Test_GPU"'), "id: 'Test_GPU' is not kebab-case"),
    (_mutate('kind = "gpu"', 'kind = "tpu"'), "kind: 'tpu' is not one of: gpu, cpu"),
    (_mutate("tdp_w = 200", 'tdp_w = "200"'), "power.tdp_w: expected a number, got '200'"),
    (_mutate("tdp_w = 200", "tdp_w = true"), "power.tdp_w: expected a number, got true"),
    (_mutate("tdp_w = 200", "tdp_w = -5"), "power.tdp_w: must be > 0, got -5"),
    (_mutate("idle_w = 20", "idle_w = 250"), "power.idle_w: idle power 250 W must be below tdp_w 200 W"),
    (_mutate("idle_w = 20", "idle_w = 20\nmax_w = 150"), "power.max_w: 150 W is below tdp_w 200 W"),
    (_mutate("idle_w = 20", "idle_w = 20\ntdp = 3"), "power.tdp: unknown key (allowed: tdp_w, idle_w, max_w, per_core_w)"),
    (_mutate('"0x1234"', '"12345"'), "match.pci_device_ids[0]: '12345' is not a 4-digit hex PCI device id"),
    (_mutate('pci_device_ids = ["0x1234"]', 'cpu_model_patterns = ["Xeon"]'), "match.cpu_model_patterns: a gpu profile cannot match CPU model names"),
    (_mutate('names = ["Test GPU"]\npci_device_ids = ["0x1234"]', ""), "match: no rule"),
    (_mutate('names = ["Test GPU"]', "names = \"Test GPU\""), "match.names: expected a list of strings"),
    (_mutate("counter_update_s = 0.1", "counter_update_s = 0"), "meter.counter_update_s: must be > 0, got 0"),
    (_mutate("energy_counter = true", 'energy_counter = "yes"'), "meter.energy_counter: expected true or false, got 'yes'"),
    (_mutate("counter_update_s = 0.1", 'rapl_domains = ["package"]'), "meter.rapl_domains: only a cpu profile has RAPL domains"),
    (_mutate("gain = 1.0", "gain = 1.05"), "calibration.status: 'uncalibrated' requires gain = 1 and offset_w = 0"),
    (_mutate('status = "uncalibrated"', 'status = "calibrated"'), "calibration.reference: a calibrated profile must name its reference instrument and date"),
    (_mutate('status = "uncalibrated"', 'status = "maybe"'), "calibration.status: 'maybe' is not one of"),
    (_mutate("[calibration]\n", "[calibration]\ndomains = { gpu = { gain = 0 } }\n"), "calibration.domains.gpu.gain: must be > 0, got 0"),
    (_mutate('provenance = "made up for a test"\n', ""), "provenance: missing required key"),
    (_mutate('id = "test-gpu"', 'id = "test-gpu"\nschema_version = 2'), "schema_version: unsupported version 2"),
    (_mutate('id = "test-gpu"', 'id = "test-gpu"\ncolour = "green"'), "colour: unknown key"),
    (_mutate("tdp_w = 200", "tdp_w = 200 W"), "TOML syntax:"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_malformed_profile_names_file_key_and_reason(tmp_path, text, expected):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        validate_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_cpu_profile_rules(tmp_path):
    text = (GOOD.replace('kind = "gpu"', 'kind = "cpu"')
            .replace('pci_device_ids = ["0x1234"]', 'cpu_model_patterns = ["Test(CPU"]'))
    with pytest.raises(InputError, match=r"match.cpu_model_patterns\[0\]: invalid regular expression"):
        loads_profile(text, "x.toml")
    text = GOOD.replace('kind = "gpu"', 'kind = "cpu"')
    with pytest.raises(InputError, match="match.pci_device_ids: a cpu profile cannot match PCI"):
        loads_profile(text, "x.toml")


def test_non_toml_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="not a .toml file"):
        validate_file(ROOT / "hardware_profiles" / "__init__.py")
    with pytest.raises(InputError, match="no such file"):
        validate_file(tmp_path / "nope.toml")


def test_write_profile_round_trips_every_packaged_profile(tmp_path):
    for p in packaged_profiles():
        out = write_profile(p, tmp_path / f"{p.id}.toml")
        back = validate_file(out)
        assert profile_to_dict(back) == profile_to_dict(p)
        assert back.calibration == p.calibration and back.match == p.match


def test_write_profile_keeps_calibration_and_escapes_strings(tmp_path):
    text = (GOOD.replace('status = "uncalibrated"', 'status = "calibrated"')
            .replace("gain = 1.0", 'gain = 1.0712\nreference = "Yokogawa \\"WT310E\\"\\nbench 2"\n'
                     'date = 2024-05-01\nby = "lab A"\ngain_sd = 0.004\nn = 120')
            .replace("offset_w = 0.0", "offset_w = 12.5\nuncertainty_w = 1.5\n"
                     "[calibration.domains.gpu]\nstatus = \"calibrated\"\ngain = 1.1\nidle_w = 19.0"))
    p = loads_profile(text, "cal.toml")
    assert p.calibrated and p.calibration.gain == 1.0712 and p.calibration.offset_w == 12.5
    assert p.calibration_info.date == "2024-05-01" and p.calibration_info.n == 120
    assert p.calibration_for("gpu:0").gain == 1.1 and p.idle_w_for("gpu:3") == 19.0
    back = loads_profile(dumps_profile(p), "again.toml")
    assert profile_to_dict(back) == profile_to_dict(p)
    assert back.calibration_info.reference == 'Yokogawa "WT310E"\nbench 2'


MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT, env=env)


def test_cli_validate_packaged_glob_skips_init_py():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "hardware_profiles").iterdir()
                   if p.is_file())
    result = _cli("profile", "validate", *files)
    assert result.returncode == 0, result.stderr
    tomls = sum(f.endswith(".toml") for f in files)
    assert tomls >= 17 and f"{tomls} valid, 0 invalid, 1 skipped" in result.stdout
    assert "skipped  hardware_profiles/__init__.py  (not a .toml file)" in result.stdout


def test_cli_validate_broken_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("tdp_w = 200", 'tdp_w = "lots"'))
    result = _cli("profile", "validate", str(ROOT / "hardware_profiles" / "generic-cpu.toml"),
                  str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"ecnas profile validate: error: {bad}: power.tdp_w: expected a number, "
                     "got 'lots'"]
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from 3.11")
def test_a_source_checkout_run_without_installing_finds_the_packaged_profiles():
    # ``PYTHONPATH=.`` in a checkout (how the GPU validation first ran on a lent machine):
    # ecnas.hardware_profiles exists only once installed; the same files are then read from
    # the checkout's hardware_profiles/ (-S: no site-packages, so no editable install either).
    root = Path(__file__).resolve().parents[2]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from ecnas.profiles.loading import packaged_profiles; "
            "print(' '.join(sorted(p.id for p in packaged_profiles())))")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(root)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == sorted(p.id for p in packaged_profiles())


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*", r"(\w+\s?)+", "([a-z]+)*",
                                     "(?:a{2,})+", "(a(b)*)+", "(x+){2,}"])
def test_nested_quantifiers_are_refused_statically(pattern):
    from ecnas.profiles.bounds import pattern_problem

    assert "nested quantifiers" in pattern_problem(pattern)


@pytest.mark.parametrize("pattern", ["AMD EPYC", r"Intel\(R\) Xeon", r"\bCore\(TM\) i[3579]",
                                     r"(\d{2})?x", "(ab|cd)+", "[+*]+", r"EPYC 7\d{3}",
                                     "(?i)ryzen (5|7|9)"])
def test_ordinary_patterns_pass(pattern):
    from ecnas.profiles.bounds import pattern_problem

    assert pattern_problem(pattern) is None


def test_every_seed_pattern_passes_the_backtracking_check():
    from ecnas.profiles.bounds import pattern_problem

    patterns = [p for prof in packaged_profiles() for p in prof.match.cpu_model_patterns]
    assert patterns and all(pattern_problem(p) is None for p in patterns)


@pytest.mark.parametrize(("key", "value"), [("tdp_w", "1e300"), ("max_w", "6000")])
def test_watts_no_device_draws_are_refused(tmp_path, key, value):
    path = tmp_path / "p.toml"
    lines = [ln for ln in GOOD.splitlines() if not ln.startswith(f"{key} =")]
    at = lines.index("[power]") + 1
    lines.insert(at, f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"power\.{key}: .* W is above 5000 W"):
        validate_file(path)
