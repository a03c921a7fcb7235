"""The seven phases of the GPU validation. Each takes the run's :class:`Context` and returns
its checks and its raw figures (``details``), so a reader of ``validation.json`` can redo any
comparison."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.gpucheck import nvml_probe as probe
from ecnas.gpucheck.loads import TorchLoad
from ecnas.gpucheck.plan import ValidationPlan
from ecnas.gpucheck.results import (
    Check,
    expect_at_least,
    expect_at_most,
    expect_true,
    info,
    relative_difference,
    skipped,
)
from ecnas.meters.nvml import COUNTER_UPDATE_S, NvmlMeter
from ecnas.monitor import Monitor
from ecnas.monitor.hardware import hardware_summary
from ecnas.tables.checks import run_checks
from ecnas.tracker.rows import to_frame, write_rows
from ecnas.trainer.data.synthetic import write_synthetic_cifar10
from ecnas.trainer.train import TrainConfig, train_architecture

Phase = tuple[list[Check], dict[str, Any]]

# Expectations, each with its reason (docs/validation.md repeats them).
COUNTER_VS_POWER_PCT = 5.0  # NVML's counter and its own power reading integrate the same sensor
SMI_VS_NVML_PCT = 10.0  # nvidia-smi samples the same reading, coarser and on another clock
SYNC_ENERGY_PCT = 10.0  # a window over launched work holds the energy of the blocking run
SYNC_SHARE = 0.9  # share of the work's energy in the window that launched it, with sync
SHORT_WINDOW_POWER_PCT = 25.0  # mean power of windows at the counter's update period
OVERHEAD_LIMIT_PCT = {5.0: 2.0, 20.0: 0.5, 50.0: 0.5}  # per-step metering, by step length
# The counter's update period is measured by polling it as fast as NVML answers, so it is
# known to within one poll only (an H200 in a VM: 4.4 ms a read, 0.10001 s measured for its
# 0.1 s period): it passes when <= the meter's floor + this many of the probe's poll periods.
UPDATE_PERIOD_SLACK_POLLS = 1.0


@dataclass
class Context:
    """What the phases share: the plan, the output folder, the load, the nvidia-smi executable, and
    the steady power the counter-vs-power phase measured (the short-windows phase compares with
    it)."""

    plan: ValidationPlan
    out: Path
    test_mode: bool
    load: TorchLoad
    smi: str | None  # the nvidia-smi executable (None: not found)
    steady_power_w: float = math.nan  # filled by the counter-vs-power phase

    def nvml_meter(self) -> Any:
        """A fresh NVML meter polling at the plan's interval."""
        return NvmlMeter(poll_interval_s=self.plan.poll_interval_s)

    def gpu_monitor(self, *, sync: bool) -> Any:
        """A Monitor over gpu:0's NVML meter alone (no CPU meters: these phases are about
        the GPU's counter)."""
        return Monitor([self.nvml_meter()], sync_cuda=sync, use_profiles=False)


def machine(ctx: Context) -> Phase:
    """The machine phase: the NVML meter's status, NVML and driver versions, the boards, torch's
    CUDA, the hardware summary and gpu:0's power profile; informational apart from the NVML meter
    reading gpu:0."""
    meter = ctx.nvml_meter()
    status = meter.status()
    checks = [expect_true("machine", "NVML meter reads gpu:0", status.status.value == "measured",
                          status.status.value, "measured", status.reason)]
    details: dict[str, Any] = {"nvml_status": status.to_dict()}
    gpu = probe.first_gpu(meter)
    if gpu is not None:
        import pynvml as nv  # the bindings the meter initialized (NVML counts its inits)
        details["versions"] = probe.nvml_versions(nv)
        details["boards"] = probe.boards(nv)
        details["gpu0"] = {"name": gpu.name, "uuid": gpu.uuid, "nvml_index": gpu.nvml_index,
                           "mode": gpu.mode}
        checks.append(info("machine", "gpu:0", f"{gpu.name} ({gpu.uuid})",
                           note=f"NVML index {gpu.nvml_index}, read by {gpu.mode}"))
    meter.close()
    import torch

    details["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                        "cuda_available": torch.cuda.is_available()}
    details["load"] = ctx.load.description
    summary = hardware_summary()
    details["hardware"] = summary
    profile = _gpu0_profile(summary)
    checks.append(info("machine", "gpu:0 profile", profile.get("profile") or "none",
                       note=profile.get("reason", "")))
    return checks, details


def _gpu0_profile(summary: dict[str, Any]) -> dict[str, Any]:
    for m in summary.get("meters", []):
        for dev in m.get("devices", []):
            if dev.get("domain") == "gpu:0":
                return dev.get("profile") or {}
    return {}


def counter_vs_power(ctx: Context) -> Phase:
    """Under a steady load, the NVML meter's energy against NVML power polled on a thread and
    against nvidia-smi's power samples (each within a stated percentage), and the energy counter's
    update period against the meter's floor. Sets ``ctx.steady_power_w``."""
    plan = ctx.plan
    mon = ctx.gpu_monitor(sync=True).start()
    meter = mon.meters[0]
    gpu = probe.first_gpu(meter)
    import pynvml as nv  # initialized by the Monitor's start
    warmup = 0.0 if ctx.test_mode else 2.0  # reach steady power before the interval starts
    smi = probe.SmiSampler(gpu.nvml_index, executable=ctx.smi)
    with probe.PowerPoller(nv, gpu.handle, plan.poll_interval_s) as poller, smi:
        ctx.load.run_for(warmup)
        mon.begin("steady")
        multiplies = ctx.load.run_for(plan.steady_load_s)
        rep = mon.end("steady")
        # the counter's update period, under the same load
        ctx.load.launch(plan.update_probe_s + 0.3)
        period = (probe.counter_update_period(nv, gpu.handle, plan.update_probe_s)
                  if gpu.mode == "counter" else None)
        ctx.load.synchronize()
    mon.close()
    t0, t1 = rep.start_monotonic, rep.end_monotonic
    meter_j = rep.domains["gpu:0"].raw_joules
    poll = poller.trace()
    poll_j = poll.energy_j(t0, t1)
    smi_trace = smi.trace()
    smi_j = smi_trace.energy_j(t0, t1) if smi.available else math.nan
    ctx.steady_power_w = meter_j / rep.duration_s if rep.duration_s > 0 else math.nan
    details = {"interval_s": rep.duration_s, "multiplies": multiplies, "mode": gpu.mode,
               "meter_j": meter_j, "nvml_power_j": poll_j, "nvml_power_samples": len(poll.watts),
               "nvml_power_mean_w": poll.mean_w(), "nvml_power_cv": poll.cv(),
               "smi_j": smi_j, "smi_samples": len(smi_trace.watts),
               "smi_sample_period_s": smi.sample_period_s() if smi.available else None,
               "counter_update": period}
    phase = "counter vs power"
    checks = [info(phase, "steady load", ctx.load.description,
                   note=f"{rep.duration_s:.1f} s, {multiplies} multiplies, mean "
                        f"{ctx.steady_power_w:.1f} W, power CV {poll.cv():.3f}")]
    label = "energy counter" if gpu.mode == "counter" else f"meter ({gpu.mode})"
    checks.append(expect_at_most(
        phase, f"{label} vs NVML power polled every {plan.poll_interval_s * 1000:g} ms",
        relative_difference(meter_j, poll_j), COUNTER_VS_POWER_PCT, "%",
        f"{meter_j:.1f} J vs {poll_j:.1f} J ({len(poll.watts)} samples)"))
    if smi.available and len(smi_trace.watts) >= 2:
        checks.append(expect_at_most(
            phase, f"{label} vs nvidia-smi power.draw", relative_difference(meter_j, smi_j),
            SMI_VS_NVML_PCT, "%", f"{meter_j:.1f} J vs {smi_j:.1f} J ({len(smi_trace.watts)} "
            f"samples, every {details['smi_sample_period_s'] or math.nan:.3f} s)"))
        checks.append(expect_at_most(
            phase, "NVML power vs nvidia-smi power.draw", relative_difference(poll_j, smi_j),
            SMI_VS_NVML_PCT, "%", f"{poll_j:.1f} J vs {smi_j:.1f} J"))
    else:
        why = "nvidia-smi not found on PATH" if not smi.available else "nvidia-smi gave no samples"
        checks += [skipped(phase, f"{label} vs nvidia-smi power.draw", why),
                   skipped(phase, "NVML power vs nvidia-smi power.draw", why)]
    if period is None:
        checks.append(skipped(phase, "counter update period", f"gpu:0 has no energy counter "
                                                             f"(read by {gpu.mode})"))
    else:
        checks.append(update_period_check(phase, period))
    return checks, details


def update_period_check(phase: str, period: dict[str, Any]) -> Check:
    """The counter's measured update period against the meter's floor, within the probe's
    resolution (one poll: see UPDATE_PERIOD_SLACK_POLLS)."""
    poll = period["poll_period_s"]
    limit = COUNTER_UPDATE_S + UPDATE_PERIOD_SLACK_POLLS * poll
    return expect_at_most(
        phase, "counter update period", period["update_period_s"], limit, "s",
        f"{period['changes']} changes in {period['polls']} polls; resolution one poll "
        f"({poll * 1000:.2g} ms), so up to {COUNTER_UPDATE_S:g} s + one poll passes; the "
        f"meter flags windows shorter than {COUNTER_UPDATE_S:g} s")


def window_semantics(ctx: Context) -> Phase:
    """Work launched in a window must land in it: with synchronization at the edges the window
    lasts until the work is done; without it the window closes early and the next one gets the
    energy. On the CPU (test mode) the edge synchronization is the load's own."""
    work = ctx.plan.async_work_s
    phase = "window semantics"
    details: dict[str, Any] = {"work_s": work}
    with ctx.gpu_monitor(sync=True) as mon:
        mon.begin("reference")
        ctx.load.busy(work)
        ref = mon.end("reference")
    details["reference"] = {"j": ref.energy_j, "s": ref.duration_s}
    for sync in (True, False):
        with ctx.gpu_monitor(sync=sync) as mon:
            mon.begin("launch")
            ctx.load.launch(work)
            if sync and not ctx.load.cuda:
                ctx.load.synchronize()  # what the Monitor's CUDA sync does on a GPU
            launch = mon.end("launch")
            mon.begin("after")
            ctx.load.synchronize()
            after = mon.end("after")
        total = launch.energy_j + after.energy_j
        details["sync" if sync else "no_sync"] = {
            "launch_j": launch.energy_j, "launch_s": launch.duration_s,
            "after_j": after.energy_j, "after_s": after.duration_s,
            "launch_share": launch.energy_j / total if total > 0 else math.nan}
    s, n = details["sync"], details["no_sync"]
    checks = [
        expect_at_most(phase, "with sync: launch window vs blocking run (energy)",
                       relative_difference(s["launch_j"], ref.energy_j), SYNC_ENERGY_PCT, "%",
                       f"{s['launch_j']:.2f} J in {s['launch_s']:.3f} s vs {ref.energy_j:.2f} J "
                       f"in {ref.duration_s:.3f} s"),
        expect_at_least(phase, "with sync: share of the work's energy in the launch window",
                        s["launch_share"], SYNC_SHARE, ""),
        info(phase, "without sync: share of the work's energy in the launch window",
             n["launch_share"], note=f"launch window {n['launch_s'] * 1000:.1f} ms, "
                                     f"{n['after_j']:.2f} J landed in the next window"),
    ]
    return checks, details


def short_windows(ctx: Context) -> Phase:
    """Windows of a few milliseconds: each must be flagged ``short_window`` exactly when it is
    shorter than the counter's update period, and the mean power of windows at least that long must
    match the steady power of the counter-vs-power phase."""
    phase = "short windows"
    details: dict[str, Any] = {}
    checks: list[Check] = []
    with ctx.gpu_monitor(sync=True) as mon:
        floor = mon.meters[0].min_window_s("gpu:0")
        ctx.load.busy(0.05)
        for ms in ctx.plan.short_windows_ms:
            energies, durations, flags = [], [], []
            for _ in range(ctx.plan.short_window_repeats):
                mon.begin("w")
                ctx.load.busy(ms / 1000.0)
                rep = mon.end("w")
                energies.append(rep.domains["gpu:0"].joules)
                durations.append(rep.duration_s)
                flags.append(rep.domains["gpu:0"].short_window)
            mean_w = sum(energies) / sum(durations) if sum(durations) > 0 else math.nan
            details[f"{ms:g}ms"] = {"energy_j": energies, "duration_s": durations,
                                    "short_window": flags, "mean_power_w": mean_w}
            consistent = all(f == (d < floor) for f, d in zip(flags, durations, strict=True))
            checks.append(expect_true(
                phase, f"{ms:g} ms windows flagged short_window iff shorter than {floor:g} s",
                consistent, f"{sum(flags)}/{len(flags)} flagged",
                "flag == (duration < update period)",
                f"mean duration {statistics.fmean(durations) * 1000:.1f} ms"))
            err = relative_difference(mean_w, ctx.steady_power_w)
            spread = statistics.pstdev(energies) / statistics.fmean(energies) \
                if statistics.fmean(energies) > 0 else math.nan
            note = (f"mean {mean_w:.1f} W vs steady {ctx.steady_power_w:.1f} W; per-window "
                    f"energy CV {spread:.2f} (resolution: the counter's update period)")
            if statistics.fmean(durations) >= floor:
                checks.append(expect_at_most(phase, f"{ms:g} ms windows: mean power vs steady",
                                             err, SHORT_WINDOW_POWER_PCT, "%", note))
            else:
                checks.append(info(phase, f"{ms:g} ms windows: mean power vs steady", err, "%",
                                   note))
    details["floor_s"] = floor
    return checks, details


def overhead(ctx: Context) -> Phase:
    """Per-step metering on a real training loop: alternating blocks of plain and metered
    steps (one Monitor window per step, the machine's default meters), paired by round."""
    phase = "overhead"
    checks: list[Check] = []
    details: dict[str, Any] = {}
    with Monitor() as mon:
        statuses = mon.statuses()
        details["meters"] = [s.meter for s in statuses]
        # how the NVML meter reads here (at the edges, or from its background sampler, and
        # how long a read takes): the overhead below depends on it
        nvml = next((s for s in statuses if s.meter == "nvml"), None)
        details["nvml_reading"] = nvml.reason if nvml is not None else None
        checks.append(info(phase, "how the NVML meter reads",
                           "background sampler" if "in the background" in (
                               details["nvml_reading"] or "") else "at window edges",
                           note=details["nvml_reading"] or "no NVML meter among the defaults"))
        clock = time.perf_counter
        for ms in ctx.plan.loop_steps_ms:
            step = ctx.load.training_step(ms)
            n = max(3, round(ctx.plan.loop_block_s * 1000.0 / ms))
            plain, metered, edges = [], [], []
            for _ in range(ctx.plan.loop_rounds):
                t0 = clock()
                for _ in range(n):
                    step()
                plain.append((clock() - t0) / n)
                spent = 0.0
                t0 = clock()
                for _ in range(n):
                    a = clock()
                    mon.begin("step")
                    b = clock()
                    step()
                    c = clock()
                    mon.end("step")
                    spent += (b - a) + (clock() - c)
                metered.append((clock() - t0) / n)
                edges.append(spent / n)
            # The check is the time spent in the window edges, timed inside the loop (cold
            # caches after each step included): on a shared or virtual machine whole blocks
            # of the same step differ by more than the 0.5 % asked (10-40 % on the H200 VM of
            # docs/validation.md), so blocks with and without windows cannot resolve it. Their
            # difference (any indirect cost, e.g. a background sampler) is shown beside it.
            base = statistics.median(plain)
            cost = statistics.median(edges)
            pct = cost / base * 100.0
            blocks = statistics.median([m - p for m, p in zip(metered, plain, strict=True)])
            spread = (max(plain) - min(plain)) / base * 100.0
            details[f"{ms:g}ms"] = {"steps_per_block": n, "plain_s": plain, "metered_s": metered,
                                    "edges_s": edges, "overhead_us": cost * 1e6,
                                    "overhead_pct": pct, "block_difference_us": blocks * 1e6,
                                    "plain_block_spread_pct": spread}
            limit = OVERHEAD_LIMIT_PCT.get(ms, 0.5)
            checks.append(expect_at_most(
                phase, f"~{ms:g} ms steps: metering overhead", pct, limit, "%",
                f"{cost * 1e6:.0f} µs per step in the window edges on {base * 1000:.2f} ms "
                f"steps ({ctx.plan.loop_rounds} rounds of {n} steps)"))
            checks.append(info(
                phase, f"blocks with and without windows, ~{ms:g} ms steps",
                round(blocks / base * 100.0, 3), "%",
                note=f"{blocks * 1e6:+.0f} µs per step; blocks of plain steps alone spread "
                     f"{spread:.1f} %, so a difference within that is noise"))
    return checks, details


def trainer(ctx: Context) -> Phase:
    """One epoch of the trainer at NAS-Bench-101's full width (stem 128) on synthetic CIFAR-10 under
    the default Monitor: its rows must pass ``ecnas check`` and carry GPU energy measured by NVML.
    Writes ``trainer-rows.parquet`` to the output folder."""
    plan, phase = ctx.plan, "trainer at full width"
    # the example cell of NAS-Bench-101's README: seven vertices, all five op kinds
    matrix = "0111010" "0000001" "0000001" "0000100" "0000001" "0000001" "0000000"
    ops = ("input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,"
           "maxpool3x3,output")
    with tempfile.TemporaryDirectory(prefix="ecnas-validate-cifar-") as tmp:
        write_synthetic_cifar10(Path(tmp), plan.train_images, plan.eval_images)
        config = TrainConfig(matrix=matrix, ops=ops, budget_epochs=1, dataset="cifar10",
                             data_dir=tmp, stem_channels=plan.stem_channels,
                             num_stacks=plan.num_stacks, cells_per_stack=plan.cells_per_stack,
                             batch_size=plan.batch_size, device="cuda" if ctx.load.cuda else "cpu",
                             max_train_images=plan.train_images,
                             max_eval_images=plan.eval_images)
        t0 = time.perf_counter()
        with Monitor() as mon:
            statuses = {s.meter: s.status.value for s in mon.statuses()}
            rows = train_architecture(config, monitor=mon)
        took = time.perf_counter() - t0
    table = ctx.out / "trainer-rows.parquet"
    write_rows(rows, table, {"producer": "ecnas validate gpu", "configs": [config.to_dict()]})
    report = run_checks(to_frame(rows))
    final = rows[-1]
    failed = [r.name for r in report.failed if r.severity == "error"]
    warned = [r.name for r in report.failed if r.severity != "error"]
    details = {"config": config.to_dict(), "seconds": took, "meters": statuses,
               "table": str(table), "rows": len(rows), "check": report.to_dict(),
               "final": {k: final[k] for k in ("energy_j", "gpu_energy_j", "cpu_energy_j",
                                               "dram_energy_j", "training_time_s",
                                               "wall_time_s", "estimated")}}
    gpu_j = final["gpu_energy_j"]
    checks = [
        info(phase, "network", f"stem {plan.stem_channels}, {plan.num_stacks} stacks x "
                               f"{plan.cells_per_stack} cells, {plan.train_images} images",
             note=f"1 epoch in {final['training_time_s']:.1f} s of training "
                  f"({took:.1f} s in all)"),
        expect_true(phase, "rows pass ecnas check", report.ok, f"{len(rows)} rows",
                    "no error-level check fails",
                    ("failed: " + ", ".join(failed)) if failed else
                    ("warnings: " + ", ".join(warned)) if warned else "all checks passed"),
        expect_true(phase, "GPU energy measured by NVML",
                    statuses.get("nvml") == "measured" and math.isfinite(gpu_j) and gpu_j > 0,
                    gpu_j, "> 0 J, nvml measured",
                    f"{final['energy_j']:.1f} J in all; CPU part "
                    f"{'estimated' if final['estimated'] else 'measured'}"),
    ]
    return checks, details


def device_selection(ctx: Context) -> Phase:
    """CUDA_VISIBLE_DEVICES as an index and as a UUID must select the same board, for the
    NVML meter and for torch."""
    phase = "device selection"
    meter = ctx.nvml_meter()
    try:
        listed = []
        if meter.status().usable:  # NVML initialized by the meter's probe
            import pynvml

            listed = probe.boards(pynvml)
    finally:
        meter.close()
    if not listed:
        return [skipped(phase, "index vs UUID", "NVML lists no board")], {}
    board = listed[-1]  # the last one: on a multi-GPU machine not the default gpu:0
    seen = {}
    for how, value in (("index", str(board["index"])), ("uuid", board["uuid"])):
        seen[how] = _probe_selection(value)
    same = (seen["index"].get("nvml_uuid") == seen["uuid"].get("nvml_uuid") == board["uuid"])
    checks = [expect_true(phase, "NVML meter: index and UUID select the same board", same,
                          f"{seen['index'].get('nvml_uuid')} / {seen['uuid'].get('nvml_uuid')}",
                          f"both {board['uuid']}")]
    torch_ids = [str(seen[h].get("torch_uuid") or "") for h in ("index", "uuid")]
    if all(torch_ids):
        checks.append(expect_true(phase, "torch: index and UUID select the same board",
                                  torch_ids[0] == torch_ids[1] == board["uuid"],
                                  " / ".join(torch_ids), f"both {board['uuid']}"))
    else:
        checks.append(skipped(phase, "torch: index and UUID select the same board",
                              "torch sees no CUDA device" if ctx.test_mode or not ctx.load.cuda
                              else f"torch did not answer: {seen}"))
    return checks, {"board": board, "by": seen}


def _probe_selection(value: str) -> dict[str, Any]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=value)
    proc = subprocess.run([sys.executable, "-m", "ecnas.gpucheck.select_probe"], env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: (short name for --phases, title, function), in the order they run
PHASES: tuple[tuple[str, str, Callable[[Context], Phase]], ...] = (
    ("machine", "machine", machine),
    ("counter", "counter vs power", counter_vs_power),
    ("windows", "window semantics", window_semantics),
    ("short", "short windows", short_windows),
    ("overhead", "overhead", overhead),
    ("trainer", "trainer at full width", trainer),
    ("selection", "device selection", device_selection),
)
