"""What a calibration run measured, kept in a JSON file beside the profile (``X.run.json``).

``ecnas calibrate --out X.toml`` measures first and writes this record before it reads any
reference, so a wall meter's export that arrives later can be fitted with
``ecnas calibrate fit X.run.json --reference meter.csv --out X.toml`` — the same code the
one-step path runs on the same numbers, hence the same profile.

The record holds the device and meter, the phase options, the counter probe's result, and
every reading (host Unix time, monotonic time, cumulative joules per domain, phase label),
plus the profile as measured (before any fit). JSON floats round-trip exactly. Never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.meters.base import DeviceInfo
from ecnas.outputs import write_json
from ecnas.profiles.model import HardwareProfile, profile_to_dict
from ecnas.profiles.toml_io import parse_profile

FORMAT = "ecnas-calibration-run"
VERSION = 1
PHASES = ("idle", "probe", "load", "steps")


@dataclass(frozen=True)
class Sample:
    """One reading during calibration: host Unix time, monotonic time, cumulative joules
    per domain, and the phase it was taken in."""

    wall_s: float
    mono_s: float
    energy_j: Mapping[str, float]
    phase: str = ""


@dataclass(frozen=True)
class PhaseResult:
    """One phase's length (s), and each domain's energy (J) and mean power (W) over it."""

    name: str
    duration_s: float
    power_w: dict[str, float]  # mean power per domain over the phase (measured)
    energy_j: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The phase as plain data, marked ``measured``."""
        return {"duration_s": self.duration_s, "power_w": self.power_w,
                "energy_j": self.energy_j, "status": "measured"}


def phase_samples(samples: Sequence[Sample], name: str) -> list[Sample]:
    """A phase's readings, from the reading it started at (the previous phase's last)."""
    idx = [i for i, s in enumerate(samples) if s.phase == name]
    if not idx:
        return []
    return list(samples[max(idx[0] - 1, 0):idx[-1] + 1])


def phase_result(name: str, samples: Sequence[Sample]) -> PhaseResult:
    """The energy and mean power per domain between a phase's first and last reading (NaN power
    for a phase of no length)."""
    dt = samples[-1].mono_s - samples[0].mono_s
    energy = {d: samples[-1].energy_j[d] - samples[0].energy_j[d] for d in samples[0].energy_j}
    power = {d: (e / dt if dt > 0 else float("nan")) for d, e in energy.items()}
    return PhaseResult(name, dt, power, energy)


@dataclass(frozen=True)
class ProbeResult:
    """What the back-to-back probe found: the counter's update period (s) and smallest step (J),
    None when it moved too seldom to tell, and how many reads and changes it saw in how long."""

    update_period_s: float | None
    resolution_j: float | None
    changes: int
    reads: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """The probe's fields as plain data."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class CalibrationRecord:
    """Everything a calibration run measured (see the module doc)."""

    meter: str
    device: DeviceInfo
    domains: tuple[str, ...]  # calibrated together (their sum is fitted)
    other_domains: tuple[str, ...]  # the meter's other domains (left uncalibrated)
    options: Mapping[str, float]  # idle_s, probe_s, load_s, steps_s, poll_s
    samples: tuple[Sample, ...]
    probe: ProbeResult
    polled_energy_j: float | None  # GPU: power polled and integrated over the load test
    counter_vs_polled: float | None
    notes: tuple[str, ...]
    not_calibrated: tuple[str, ...]  # what the measurement could not establish
    base_profile: str | None
    base_reason: str
    profile: HardwareProfile  # as measured, before any fit
    date: str  # ISO date of the measurement
    host: str
    ecnas_version: str

    @property
    def kind(self) -> str:
        """The device's kind (``gpu``, ``cpu``)."""
        return self.device.kind

    def phase(self, name: str) -> list[Sample]:
        """The readings labelled with phase ``name`` (without the previous phase's last reading:
        see :func:`phase_samples`)."""
        return [s for s in self.samples if s.phase == name]

    def result(self, name: str) -> PhaseResult | None:
        """Mean power and energy of a phase (None when it was not run)."""
        samples = phase_samples(self.samples, name)
        return phase_result(name, samples) if len(samples) >= 2 else None

    def series(self) -> tuple[list[float], list[float]]:
        """(host Unix time, cumulative joules summed over the calibrated domains)."""
        return ([s.wall_s for s in self.samples],
                [math.fsum(s.energy_j[d] for d in self.domains) for s in self.samples])

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object of ``X.run.json``: the readings stored column-wise
        under ``series``."""
        d = self.device
        return {
            "format": FORMAT, "version": VERSION, "ecnas_version": self.ecnas_version,
            "date": self.date, "host": self.host, "meter": self.meter,
            "device": {"domain": d.domain, "kind": d.kind, "name": d.name,
                       "pci_device_id": d.pci_device_id, "uuid": d.uuid,
                       "extra": dict(d.extra)},
            "domains": list(self.domains), "other_domains": list(self.other_domains),
            "options": dict(self.options), "probe": self.probe.to_dict(),
            "polled_energy_j": self.polled_energy_j,
            "counter_vs_polled": self.counter_vs_polled,
            "notes": list(self.notes), "not_calibrated": list(self.not_calibrated),
            "base_profile": self.base_profile, "base_reason": self.base_reason,
            "profile": profile_to_dict(self.profile),
            "series": {
                "phase": [s.phase for s in self.samples],
                "wall_s": [s.wall_s for s in self.samples],
                "mono_s": [s.mono_s for s in self.samples],
                "energy_j": {dom: [s.energy_j[dom] for s in self.samples]
                             for dom in self.domains},
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> CalibrationRecord:
        """Read a record written by :meth:`to_json`. Anything that is not one, of another
        version, or malformed (series of unequal length, non-finite or out-of-order readings) is
        an :class:`~ecnas.errors.InputError` naming ``where``."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise InputError(f"{where}: not an ecnas calibration run (no \"format\": "
                             f"\"{FORMAT}\"); 'ecnas calibrate --out X.toml' writes X.run.json")
        if data.get("version") != VERSION:
            raise InputError(f"{where}: version: {data.get('version')!r} is not {VERSION}")
        try:
            series = data["series"]
            domains = tuple(data["domains"])
            columns = [series["phase"], series["wall_s"], series["mono_s"],
                       *(series["energy_j"][d] for d in domains)]
            if len({len(c) for c in columns}) != 1:
                raise InputError(f"{where}: series: columns differ in length")
            samples = tuple(
                Sample(float(w), float(m), {d: float(e) for d, e in zip(domains, es, strict=True)},
                       str(p))
                for p, w, m, *es in zip(*columns, strict=True))
            _check_series(samples, where)
            dev = data["device"]
            device = DeviceInfo(domain=dev["domain"], kind=dev["kind"], name=dev["name"],
                                pci_device_id=dev.get("pci_device_id"), uuid=dev.get("uuid"),
                                extra=dict(dev.get("extra") or {}))
            probe = ProbeResult(**data["probe"])
            return cls(
                meter=str(data["meter"]), device=device, domains=domains,
                other_domains=tuple(data.get("other_domains", ())),
                options={k: float(v) for k, v in data["options"].items()}, samples=samples,
                probe=probe, polled_energy_j=data.get("polled_energy_j"),
                counter_vs_polled=data.get("counter_vs_polled"),
                notes=tuple(data.get("notes", ())),
                not_calibrated=tuple(data.get("not_calibrated", ())),
                base_profile=data.get("base_profile"), base_reason=str(data["base_reason"]),
                profile=parse_profile(data["profile"], f"{where}: profile"),
                date=str(data["date"]), host=str(data["host"]),
                ecnas_version=str(data["ecnas_version"]))
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: malformed calibration run ({type(exc).__name__}: "
                             f"{exc})") from None


def _check_series(samples: tuple[Sample, ...], where: str) -> None:
    """Times and energies finite, times in order: JSON readers accept Infinity and NaN, and a
    fit over them would give a profile of NaN or nothing without saying why."""
    prev_w = prev_m = -math.inf
    for i, s in enumerate(samples):
        values = (s.wall_s, s.mono_s, *s.energy_j.values())
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{where}: series: sample {i} holds a value that is not finite "
                             f"({', '.join(repr(v) for v in values)})")
        if s.wall_s < prev_w or s.mono_s < prev_m:
            raise InputError(f"{where}: series: sample {i} is earlier than the one before it")
        prev_w, prev_m = s.wall_s, s.mono_s


def run_path_for(profile_path: str | Path) -> Path:
    """Where the run of a profile is kept: ``X.toml`` → ``X.run.json`` beside it."""
    p = Path(profile_path)
    return p.with_name(p.stem + ".run.json")


def is_record_file(path: Path) -> bool:
    """Whether ``path`` is a calibration run ecnas wrote (so --force may replace it)."""
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(200)
    except (OSError, UnicodeDecodeError):
        return False
    return f'"format": "{FORMAT}"' in head


def write_record(record: CalibrationRecord, path: str | Path) -> Path:
    """Write the record as JSON through :mod:`ecnas.outputs` (atomic, modes from the umask)."""
    return write_json(path, record.to_json(), indent=1)


def read_record(path: str | Path) -> CalibrationRecord:
    """Read a calibration run; ``InputError`` naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such calibration run") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a calibration run") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    return CalibrationRecord.from_json(data, str(path))
