"""A synthetic second device derived from a measured table, to validate cross-device transfer.

Only one real device is in the EC-NAS fixture, so transfer is tested against a device B made
from it by a physically plausible, non-linear transformation (documented in
docs/surrogate.md). Per run, with ``M`` the network's forward multiply-adds and ``M̃`` their
median over the table:

* training time: ``T_B(e) = speedup · T_A(e) · (M/M̃)^(−time_exponent)`` — a newer GPU whose
  speed-up grows with network size (small networks stay launch/memory bound);
* power: ``P_B = idle_w + dynamic_w · (M/M̃)^power_exponent`` — bigger networks keep the
  device busier;
* energy: ``E_B(e) = startup_share · E_A(0) + P_B · T_B(e) · ε`` with ``ε`` a seeded log-normal
  per-run noise of ``noise`` (relative), the same kind of noise as the measured repeats;
* wall time keeps device A's evaluation overhead ratio.

The result is a table like the input (``device`` = ``device_id``, ``estimated`` = True,
components NaN) so that nothing downstream treats it as measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecnas.interop.record import record_columns_in
from ecnas.surrogate.features import batch_from_strings, cell_features


@dataclass(frozen=True)
class SyntheticDevice:
    """The transformation to device B (see the module doc): speed-up and its size exponent, idle
    and dynamic power (W) and the power's size exponent, start-up share, relative per-run noise,
    and the seed."""

    device_id: str = "synthetic-device-b"
    speedup: float = 2.5
    time_exponent: float = 0.12
    idle_w: float = 70.0
    dynamic_w: float = 180.0
    power_exponent: float = 0.2
    startup_share: float = 0.5
    noise: float = 0.015
    seed: int = 0


def derive_device(table: pd.DataFrame, device: SyntheticDevice | None = None) -> pd.DataFrame:
    """Device B's table from device A's ``table`` by ``device`` (default
    :class:`SyntheticDevice`): new training and wall times and energy, components NaN, A's
    record columns dropped, every row ``estimated``."""
    d = device or SyntheticDevice()
    t = table.copy()
    feats = cell_features(batch_from_strings(t["matrix"].astype(str).tolist(), t["ops"].astype(str).tolist()))
    macs = np.exp(feats[:, 1])
    rel = macs / np.median(macs)
    time_b = t["training_time_s"].to_numpy(float) / d.speedup * rel ** (-d.time_exponent)
    power = d.idle_w + d.dynamic_w * rel ** d.power_exponent
    run_keys = ["arch_hash", "budget_epochs", "repeat"]
    run = t.groupby(run_keys, sort=False).ngroup().to_numpy()
    eps = np.exp(np.random.default_rng(d.seed).normal(0.0, d.noise, run.max() + 1))[run]
    e0 = t.groupby(run_keys, sort=False)["energy_j"].transform("min").to_numpy(float)
    energy = d.startup_share * e0 + power * time_b * eps
    with np.errstate(divide="ignore", invalid="ignore"):
        overhead = np.where(t["training_time_s"] > 0,
                            t["wall_time_s"] / t["training_time_s"].where(t["training_time_s"] > 0), 1.0)
    wall = np.where(time_b > 0, time_b * np.nan_to_num(overhead, nan=1.0),
                    t["wall_time_s"].to_numpy(float) / d.speedup)
    t["training_time_s"] = time_b
    t["wall_time_s"] = np.maximum(wall, time_b)
    t["energy_j"] = energy
    for c in ("gpu_energy_j", "cpu_energy_j", "dram_energy_j"):
        if c in t.columns:
            t[c] = np.nan

    # the source run's measurement (totals, EC-NAS's record) does not describe this device
    drop = {"predicted_energy_j", "run_energy_j", *record_columns_in(t.columns)}
    t = t.drop(columns=[c for c in t.columns if c in drop])
    t["device"] = d.device_id
    t["estimated"] = True
    t.attrs = {}
    return t
