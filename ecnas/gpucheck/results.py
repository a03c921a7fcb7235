"""Checks (a figure, its expectation, pass/fail) and the validation report with its two
renderings (JSON and Markdown)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "info", "skipped"]


@dataclass(frozen=True)
class Check:
    """One figure of the validation. ``verdict`` is ``info`` for figures shown without an
    expectation (what happens without synchronization, say) and ``skipped`` when the figure
    could not be taken (``note`` says why)."""

    phase: str
    name: str
    value: float | str | None
    unit: str
    expectation: str
    verdict: Verdict
    note: str = ""

    @property
    def failed(self) -> bool:
        """Whether the figure missed its expectation (``info`` and ``skipped`` never fail)."""
        return self.verdict == "fail"


def expect_at_most(phase: str, name: str, value: float, limit: float, unit: str,
                   note: str = "") -> Check:
    """A check that passes when ``value`` is finite and at most ``limit`` (both in ``unit``); NaN
    fails."""
    ok = math.isfinite(value) and value <= limit
    return Check(phase, name, value, unit, f"<= {limit:g} {unit}".strip(),
                 "pass" if ok else "fail", note)


def expect_at_least(phase: str, name: str, value: float, limit: float, unit: str,
                    note: str = "") -> Check:
    """A check that passes when ``value`` is finite and at least ``limit`` (both in ``unit``); NaN
    fails."""
    ok = math.isfinite(value) and value >= limit
    return Check(phase, name, value, unit, f">= {limit:g} {unit}".strip(),
                 "pass" if ok else "fail", note)


def expect_true(phase: str, name: str, ok: bool, value: Any, expectation: str,
                note: str = "") -> Check:
    """A check that passes when ``ok``; ``value`` and ``expectation`` are only shown."""
    return Check(phase, name, value, "", expectation, "pass" if ok else "fail", note)


def info(phase: str, name: str, value: Any, unit: str = "", note: str = "") -> Check:
    """A figure shown without an expectation: it never passes or fails."""
    return Check(phase, name, value, unit, "", "info", note)


def skipped(phase: str, name: str, why: str, expectation: str = "") -> Check:
    """A check that could not be taken, with ``why`` as its note."""
    return Check(phase, name, None, "", expectation, "skipped", why)


def relative_difference(a: float, b: float) -> float:
    """|a - b| / |b| in percent (infinite when b is 0 and a is not)."""
    if b == 0:
        return 0.0 if a == 0 else math.inf
    return abs(a - b) / abs(b) * 100.0


@dataclass(frozen=True)
class ValidationReport:
    """The whole validation: the plan's name, when it started and how long it took (s), the machine,
    every check in phase order and each phase's raw figures."""

    plan: str
    started: str  # ISO time
    duration_s: float
    machine: dict[str, Any]
    checks: tuple[Check, ...]
    details: dict[str, Any] = field(default_factory=dict)  # per phase: the raw figures
    test_mode: bool = False

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped and informational checks do not count)."""
        return not any(c.failed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (the contents of ``validation.json``), with the count of each
        verdict."""
        return {"ecnas_validation": "gpu", "plan": self.plan, "started": self.started,
                "duration_s": self.duration_s, "test_mode": self.test_mode,
                "passed": self.passed,
                "counts": {v: sum(c.verdict == v for c in self.checks)
                           for v in ("pass", "fail", "info", "skipped")},
                "machine": self.machine, "checks": [asdict(c) for c in self.checks],
                "details": self.details}

    def to_json(self) -> str:
        """The report as indented JSON; NaN and infinities are written as strings (JSON has no
        literal for them)."""
        return json.dumps(_finite(self.to_dict()), indent=2, sort_keys=False) + "\n"

    def to_markdown(self) -> str:
        """The report as Markdown: the verdict counts, the machine, and a table of checks per
        phase."""
        counts = self.to_dict()["counts"]
        lines = [f"# ecnas GPU validation ({self.plan} plan)", "",
                 f"- started: {self.started}, took {self.duration_s:.0f} s",
                 f"- result: **{'PASSED' if self.passed else 'FAILED'}** "
                 f"({counts['pass']} passed, {counts['fail']} failed, {counts['info']} shown "
                 f"without expectation, {counts['skipped']} skipped)"]
        if self.test_mode:
            lines.append("- TEST MODE: stand-in NVML library and a CPU load; these figures "
                         "say nothing about real hardware")
        lines += ["", "## Machine", ""]
        for key, value in self.machine.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(_finite(value))
            lines.append(f"- {key}: {value}")
        phase = None
        for c in self.checks:
            if c.phase != phase:
                phase = c.phase
                lines += ["", f"## {phase}", "", "| figure | value | expectation | verdict | note |",
                          "|---|---|---|---|---|"]
            lines.append(f"| {c.name} | {_fmt(c.value)} {c.unit} | {c.expectation or '—'} | "
                         f"{c.verdict.upper() if c.verdict == 'fail' else c.verdict} | "
                         f"{c.note.replace('|', '/')} |")
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _finite(obj: Any) -> Any:
    """NaN and infinities as strings: JSON has no literal for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
