"""Which meters exist (built-ins, pyRAPL when installed, third-party entry points) and which
of them meter by default.

Third-party meters register in the entry-point group ``ecnas.meters``; the entry point names a
:class:`~ecnas.meters.base.Meter` subclass (or any callable returning a Meter or a list of
them) that can be built without arguments::

    [project.entry-points."ecnas.meters"]
    ipmi = "my_lab.meters:IpmiMeter"

Entry points are found by scanning ``sys.path`` for ``entry_points.txt`` files that mention the
group before asking importlib.metadata, which would parse every installed distribution
(~15 ms here) and dominate the cold start of ``measure()``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module

from ecnas.errors import InputError
from ecnas.meters.base import Meter, MeterStatus, Status

ENTRY_POINT_GROUP = "ecnas.meters"
BUILTIN = {
    "rapl": "ecnas.meters.rapl:RaplMeter",
    "nvml": "ecnas.meters.nvml:NvmlMeter",
    "amdsmi": "ecnas.meters.amd:AmdSmiMeter",
    "estimate": "ecnas.meters.estimate:EstimateMeter",
}
PYRAPL = ("pyrapl", "ecnas.meters.pyrapl:PyRaplMeter")


@dataclass(frozen=True)
class MeterEntry:
    """A meter that can be built by name, and where it comes from."""

    name: str
    target: str  # "module:attr"
    origin: str  # "builtin", "extra: pyRAPL" or "entry point of <distribution>"

    def load(self) -> Callable[..., Meter | list[Meter]]:
        """The object ``target`` names (a Meter class or a factory), imported now."""
        module, _, attr = self.target.partition(":")
        obj = import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[return-value]


def _entry_point_files() -> list[str]:
    """The ``entry_points.txt`` files on ``sys.path`` that declare the ``ecnas.meters`` group.

    A plain byte scan, not ``importlib.metadata``: every ``measure()`` start runs it, and
    ``importlib.metadata`` costs about 15 ms with a hundred distributions installed.
    """
    out = []
    marker = f"[{ENTRY_POINT_GROUP}]".encode()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                path = os.path.join(entry or ".", name, "entry_points.txt")
                try:
                    with open(path, "rb") as fh:
                        if marker in fh.read():
                            out.append(path)
                except OSError:
                    continue
    return out


def entry_point_meters() -> list[MeterEntry]:
    """Meters that installed distributions register in the ``ecnas.meters`` group."""
    if not _entry_point_files():
        return []
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        found.append(MeterEntry(ep.name, ep.value, f"entry point of {dist}"))
    return found


def available_meters() -> dict[str, MeterEntry]:
    """name → entry: the built-ins, ``pyrapl`` when pyRAPL is installed, then entry points
    (which cannot shadow a built-in name)."""
    from ecnas.meters.pyrapl import installed

    out = {n: MeterEntry(n, t, "builtin") for n, t in BUILTIN.items()}
    if installed():
        out[PYRAPL[0]] = MeterEntry(*PYRAPL, "extra: pyRAPL")
    for entry in entry_point_meters():
        out.setdefault(entry.name, entry)
    return out


def _build(entry: MeterEntry, **kwargs: object) -> list[Meter]:
    made = entry.load()(**kwargs)
    meters = list(made) if isinstance(made, (list, tuple)) else [made]
    for m in meters:
        if not isinstance(m, Meter):
            raise TypeError(f"meter {entry.name!r} ({entry.target}) built a "
                            f"{type(m).__name__}, not an ecnas.meters.Meter")
    return meters


def create_meters(names: Sequence[str], *, include_psys: bool = False) -> list[Meter]:
    """Build meters by name (``rapl``, ``nvml``, ``amdsmi``, ``estimate``, ``pyrapl``,
    plugins)."""
    known = available_meters()
    out: list[Meter] = []
    for name in names:
        entry = known.get(name)
        if entry is None and name == PYRAPL[0]:
            raise InputError("meter 'pyrapl': pyRAPL is not installed "
                             "(pip install 'ecnas[pyrapl]')")
        if entry is None:
            raise InputError(f"meter {name!r}: unknown (known: {', '.join(sorted(known))})")
        kwargs: dict[str, object] = {"include_psys": include_psys} if name == "rapl" else {}
        if name == "nvml":
            from ecnas.meters.nvml import background_setting

            kwargs["background"] = background_setting()
        out += _build(entry, **kwargs)
    return out


def _plugins() -> tuple[list[Meter], list[MeterStatus]]:
    meters, failed = [], []
    for entry in entry_point_meters():
        if entry.name in BUILTIN or entry.name == PYRAPL[0]:
            continue
        try:
            meters += _build(entry)
        except (ImportError, AttributeError, TypeError, ValueError, OSError) as exc:
            failed.append(MeterStatus(entry.name, Status.UNAVAILABLE,
                                      reason=f"{entry.origin} ({entry.target}) failed to load: "
                                             f"{type(exc).__name__}: {exc}",
                                      fix="fix or uninstall the plugin"))
    return meters, failed


#: Hands profiles to meters that need one before their status (the layer above passes
#: ``ecnas.monitor.profile_cache.bind_profiles``; the registry never imports profiles).
Binder = Callable[[Sequence[Meter]], object]


def _cpu_and_gpu(include_psys: bool, with_estimate_status: bool = True,
                 bind: Binder | None = None) -> tuple[list[Meter], list[MeterStatus]]:
    from ecnas.meters.amd import AmdSmiMeter
    from ecnas.meters.estimate import EstimateMeter
    from ecnas.meters.nvml import NvmlMeter, background_setting
    from ecnas.meters.rapl import RaplMeter

    chosen: list[Meter] = []
    statuses: list[MeterStatus] = []
    nvml = NvmlMeter(background=background_setting())  # ECNAS_NVML_BACKGROUND
    s = nvml.status()
    statuses.append(s)
    if s.usable:
        chosen.append(nvml)
    # gpu:i names the i-th GPU of one runtime; AMD's get their own names beside NVIDIA's
    amd = AmdSmiMeter(domain_prefix="gpu-amd" if s.usable else "gpu")
    s = amd.status()
    statuses.append(s)
    if s.usable:
        chosen.append(amd)
    rapl = RaplMeter(include_psys=include_psys)
    s = rapl.status()
    statuses.append(s)
    if s.usable:
        chosen.append(rapl)
    else:
        estimate = EstimateMeter(reason=f"RAPL unavailable: {s.reason}")
        chosen.append(estimate)
        if with_estimate_status:  # its per-core power comes from the bound profile
            if bind is not None:
                bind([estimate])
            statuses.append(estimate.status())
    return chosen, statuses


def default_meters(include_psys: bool = False) -> list[Meter]:
    """NVML and AMD SMI for the visible GPUs when they can read, RAPL when readable, else the
    estimate meter for the CPU, plus every usable third-party meter."""
    chosen, _ = _cpu_and_gpu(include_psys, with_estimate_status=False)
    plugins, _ = _plugins()
    return chosen + [m for m in plugins if m.status().usable]


def discover(include_psys: bool = False, bind: Binder | None = None) -> list[MeterStatus]:
    """The status of every meter (built-in, pyRAPL, plugins): what ``ecnas hardware`` shows.
    ``bind`` hands profiles to the meters that need one first (else: generic defaults)."""
    chosen, statuses = _cpu_and_gpu(include_psys, bind=bind)
    for meter in chosen:
        meter.close()  # discovery only probes; release NVML and AMD SMI
    if PYRAPL[0] in available_meters():
        from ecnas.meters.pyrapl import PyRaplMeter

        statuses.append(PyRaplMeter().status())
    plugins, failed = _plugins()
    if bind is not None:
        bind(plugins)
    return statuses + [m.status() for m in plugins] + failed
