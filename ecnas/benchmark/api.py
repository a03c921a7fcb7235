"""``Benchmark``: query an energy-aware NAS benchmark the way NAS-Bench-101 / EC-NAS users do.

``query`` is the charged lookup (it adds the run's training time and energy to the budget
counters, as if the architecture had been trained); ``get_metrics_from_*`` are free lookups.
A query for a spec that is already pruned (any ``ModelSpec``) goes through a dict keyed by the
pruned (matrix, ops) strings, so the MD5 iso-hash is never recomputed on the hot path.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.benchmark.bundle import load_bundle_layout
from ecnas.benchmark.layout import (
    METRIC_INDEX,
    METRICS,
    Layout,
    devices_of,
    layout_from_table,
)
from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.space import ModelSpec
from ecnas.tables import get_metadata, validate
from ecnas.tables.kwh import KWH_J, kwh_of, pue_for, pue_of, to_kwh
from ecnas.tables.schema import COLUMN_NAMES, SOURCES

__all__ = ["KWH_J", "Benchmark", "kwh_of", "pue_of", "to_kwh"]

# every metric a query reads, by name: reordering the layout cannot return the wrong one
_I_EPOCH = METRIC_INDEX["epoch"]
_I_TIME = METRIC_INDEX["training_time_s"]
_I_WALL = METRIC_INDEX["wall_time_s"]
_I_ENERGY = METRIC_INDEX["energy_j"]
_I_GPU = METRIC_INDEX["gpu_energy_j"]
_I_CPU = METRIC_INDEX["cpu_energy_j"]
_I_DRAM = METRIC_INDEX["dram_energy_j"]
_I_LOW = METRIC_INDEX["energy_j_low"]
_I_HIGH = METRIC_INDEX["energy_j_high"]
_I_TRAIN = METRIC_INDEX["train_accuracy"]
_I_VALID = METRIC_INDEX["validation_accuracy"]
_I_TEST = METRIC_INDEX["test_accuracy"]
_I_KWH = METRIC_INDEX["energy_kwh"]
#: a query's metrics in one C call (as fast as constant indices, and named)
_QUERY_METRICS = itemgetter(_I_EPOCH, _I_TIME, _I_WALL, _I_ENERGY, _I_GPU, _I_CPU, _I_DRAM,
                            _I_LOW, _I_HIGH, _I_TRAIN, _I_VALID, _I_TEST, _I_KWH)


def _spec_key(matrix: np.ndarray, ops: tuple[str, ...] | list[str]) -> str:
    # '0'/'1' bytes of the pruned matrix + "|" + ops: the same string the table's columns give
    return (matrix.astype(np.uint8) + 48).tobytes().decode("ascii") + "|" + ",".join(ops)


class Benchmark:
    """An energy-aware tabular NAS benchmark for one device (see docs/benchmark.md).

    Build with :meth:`load` (bundle folder or EC-NAS TFRecord file) or :meth:`from_table`.
    """

    def __init__(self, layout: Layout, *, seed: int = 0, pue: float = 1.0,
                 devices: tuple[str, ...] | None = None, metadata: Mapping[str, Any] | None = None,
                 path: str | None = None) -> None:
        self._lay = layout
        self._metrics = layout.metrics
        self._nb = len(layout.budgets)
        self._nr = layout.repeats
        self._budget_index = {b: i for i, b in enumerate(layout.budgets)}
        self._hash_index_built: dict[str, int] | None = None  # built on first use (see below)
        keys = [m + "|" + o for m, o in zip(layout.matrix.tolist(), layout.ops.tolist(), strict=True)]
        self._spec_index = dict(zip(keys, range(len(keys)), strict=True))
        self._full = bool(layout.present.all())
        self._rng = random.Random(seed)
        self._seed = seed
        self.pue = float(pue)
        self._devices = tuple(devices or (layout.device,))
        self.metadata = dict(metadata or {})
        self.path = path
        self._time_spent = 0.0
        self._energy_spent = 0.0
        self._loader: Any = None  # device id -> Benchmark of that device (multi-device sources)
        self._others: dict[str, Benchmark] = {}

    @property
    def _hash_index(self) -> dict[str, int]:
        # a query by spec resolves through _spec_index; the hash index serves lookups by hash
        # and isomorphic cells stored in another vertex order, so a load does not build it
        if self._hash_index_built is None:
            hashes = self._lay.arch_hash.tolist()
            self._hash_index_built = dict(zip(hashes, range(len(hashes)), strict=True))
        return self._hash_index_built

    # -- construction
    @classmethod
    def from_table(cls, df: Any, *, seed: int = 0, device: str | None = None) -> Benchmark:
        """A benchmark from an energy table (DataFrame in the contract; validated here)."""
        table = validate(df)
        keep = [c for c in (*COLUMN_NAMES, "energy_j_low", "energy_j_high") if c in table.columns]
        meta = get_metadata(df)
        lay = layout_from_table(table[keep], device=device)

        devices = tuple(sorted(devices_of(table)))
        bench = cls(lay, seed=seed, pue=pue_for(meta, lay.device), devices=devices, metadata=meta)
        if len(devices) > 1:
            bench._loader = lambda dev: cls.from_table(df, seed=seed, device=dev)
        return bench

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0, device: str | None = None,
             verify: bool = True) -> Benchmark:
        """Load a bundle folder (checksums verified) or an EC-NAS TFRecord file."""
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        if p.is_dir():
            lay, manifest = load_bundle_layout(p, device=device, verify=verify)
            meta = manifest.get("table_metadata", {})
            bench = cls(lay, seed=seed, pue=pue_for(meta, lay.device),
                        devices=tuple(d["id"] for d in manifest.get("devices", [])), metadata=meta,
                        path=str(p))
            bench._loader = lambda dev: cls.load(p, seed=seed, device=dev, verify=verify)
            return bench

        bench = cls.from_table(import_ecnas(p), seed=seed, device=device)
        bench.path = str(p)
        return bench

    # -- description
    @property
    def budgets(self) -> tuple[int, ...]:
        """Training budgets (epochs) the benchmark holds, ascending."""
        return self._lay.budgets

    @property
    def devices(self) -> tuple[str, ...]:
        """Hardware profile ids of the source table; the benchmark answers for ``device``."""
        return self._devices

    @property
    def device(self) -> str:
        """The hardware profile id this benchmark answers for (one of ``devices``)."""
        return self._lay.device

    @property
    def repeats(self) -> int:
        """Training repeats held per architecture and budget (``query``'s ``repeat`` picks one,
        draws one, or averages them)."""
        return self._nr

    @property
    def layout(self) -> Layout:
        """The dense per-device arrays behind the queries (architecture × budget × repeat)."""
        return self._lay

    def __len__(self) -> int:
        return self._lay.num_archs

    def __repr__(self) -> str:
        return (f"Benchmark({len(self)} architectures, budgets {list(self.budgets)}, "
                f"{self._nr} repeat(s), device {self.device!r})")

    def hash_iterator(self) -> Iterator[str]:
        """The architectures' iso-hashes, in storage order."""
        return iter(self._lay.arch_hash.tolist())

    def index_of(self, arch_hash: str) -> int:
        """The architecture index of ``arch_hash`` in the benchmark; InputError if absent."""
        try:
            return self._hash_index[arch_hash]
        except KeyError:
            raise InputError(f"hash {arch_hash!r} is not in the benchmark") from None

    def spec_of(self, arch_hash: str) -> Any:
        """The pruned ``ModelSpec`` of ``arch_hash``."""
        i = self.index_of(arch_hash)
        return ModelSpec(self._lay.matrix[i], self._lay.ops[i])

    # -- spec resolution
    def _arch_index(self, spec: Any) -> int:
        if not isinstance(spec, ModelSpec):
            if isinstance(spec, Mapping):
                spec = ModelSpec(spec["matrix"], spec["ops"])
            elif isinstance(spec, (tuple, list)) and len(spec) == 2:
                spec = ModelSpec(spec[0], spec[1])
            else:
                raise InputError(f"expected a ModelSpec or (matrix, ops), got {type(spec).__name__}")
        if not spec.valid:
            raise InputError(f"invalid spec: {spec.invalid_reason}")
        i = self._spec_index.get(_spec_key(spec.matrix, spec.ops))
        if i is None:
            # an isomorphic cell stored in another vertex order: the hash decides
            i = self._hash_index.get(spec.hash())
            if i is None:
                raise InputError(f"spec {spec.matrix_str}|{spec.ops_str} (hash {spec.hash()}) "
                                 f"is valid but not in the benchmark ({len(self)} architectures)")
        return i

    def is_valid(self, spec: Any) -> bool:
        """True when the spec is valid in the space AND the benchmark holds it."""
        try:
            self._arch_index(spec)
        except InputError:
            return False
        return True

    def _budget(self, epochs: Any) -> int:
        b = self._budget_index.get(epochs)
        if b is None:
            raise InputError(f"epochs {epochs!r} is not a budget of this benchmark "
                             f"(budgets: {', '.join(map(str, self.budgets))})")
        return b

    def _row(self, arch: int, budget: int, repeat: Any) -> tuple[list[float], int, Any]:
        base = (arch * self._nb + budget) * self._nr
        present = self._lay.present
        if repeat is None:
            if self._full:
                r = self._rng.randrange(self._nr)
            else:
                reps = np.flatnonzero(present[arch, budget])
                if reps.size == 0:
                    raise InputError(self._no_runs(arch, budget))
                r = int(reps[self._rng.randrange(reps.size)])
            return self._metrics[base + r].tolist(), base + r, r + 1
        if isinstance(repeat, str):
            if repeat != "mean":
                raise InputError(f"repeat {repeat!r}: use an integer, None or 'mean'")
            mask = present[arch, budget]
            if not mask.any():
                raise InputError(self._no_runs(arch, budget))
            block = self._metrics[base:base + self._nr][mask]
            with np.errstate(invalid="ignore"), _quiet():
                vals = np.nanmean(block, axis=0) if block.shape[0] > 1 else block[0]
            return vals.tolist(), base + int(np.argmax(mask)), "mean"
        if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)):
            raise InputError(f"repeat {repeat!r}: use an integer, None or 'mean'")
        r = int(repeat)
        if not 1 <= r <= self._nr or not present[arch, budget, r - 1]:
            have = (np.flatnonzero(present[arch, budget]) + 1).tolist()
            raise InputError(f"repeat {r} is not in the benchmark for {self._lay.arch_hash[arch]} at "
                             f"{self.budgets[budget]} epochs (repeats: {have or 'none'})")
        return self._metrics[base + r - 1].tolist(), base + r - 1, r

    def _no_runs(self, arch: int, budget: int) -> str:
        return (f"{self._lay.arch_hash[arch]} has no run at {self.budgets[budget]} epochs "
                f"(budgets with runs: {[self.budgets[i] for i in np.flatnonzero(self._lay.present[arch].any(axis=1))]})")

    # -- devices
    def for_device(self, device: str) -> Benchmark:
        """The benchmark of another device of the same multi-device source (loaded on first
        use, then kept)."""
        if device == self._lay.device:
            return self
        other = self._others.get(device)
        if other is None:
            if device not in self._devices or self._loader is None:
                raise InputError(f"device {device!r} is not in the benchmark "
                                 f"(devices: {', '.join(self._devices)})")
            other = self._others[device] = self._loader(device)
        return other

    # -- queries
    def query(self, spec: Any, epochs: int = 108, repeat: Any = None,
              device: str | None = None) -> dict[str, Any]:
        """One training run's final metrics; charges the budget counters.

        ``repeat``: None draws a repeat with the benchmark's seeded generator, ``"mean"``
        averages the repeats (NaN-aware), an int (1-based) picks one. ``device``: another
        device of a multi-device bundle (default: the one the benchmark was loaded for).
        """
        if device is not None and device != self._lay.device:
            result = self.for_device(device).query(spec, epochs, repeat)
            self._charge(result["training_time"], result["energy_j"])
            return result
        a = self._arch_index(spec)
        b = self._budget(epochs)
        vals, row, rep = self._row(a, b, repeat)
        t, e = vals[_I_TIME], vals[_I_ENERGY]
        if t < 0 or e < 0:
            # a bundle's checksums prove only that its files are as written; a negative
            # joule or second is never served as an answer
            raise InputError(f"the benchmark holds {e} J, {t} s for {self._lay.arch_hash[a]} at "
                             f"{epochs} epochs: corrupt data, not served ({self.path or 'table'})")
        self._charge(t, e)
        return self._result(a, row, rep, vals, spec)

    def _charge(self, t: float, e: float) -> None:
        if not math.isnan(t):  # a NaN (not recorded) is charged nothing
            self._time_spent += t
        if not math.isnan(e):
            self._energy_spent += e

    def _result(self, arch: int, row: int, repeat: Any, values: list[float], spec: Any) -> dict[str, Any]:
        lay = self._lay
        b, r = (row // self._nr) % self._nb, row % self._nr
        src = SOURCES[lay.source[arch, b, r]]
        matrix = getattr(spec, "matrix", None)
        ops = getattr(spec, "ops", None)
        epoch, time_s, wall_s, e, gpu, cpu, dram, low, high, train, valid, test, kwh = _QUERY_METRICS(values)
        return {
            "module_adjacency": matrix if matrix is not None else lay.matrix[arch],
            "module_operations": list(ops) if ops is not None else lay.ops[arch].split(","),
            "trainable_parameters": int(lay.trainable_params[arch]),
            "training_time": time_s,
            "train_accuracy": train,
            "validation_accuracy": valid,
            "test_accuracy": test,
            "energy (kWh)": kwh_of(kwh, e, self.pue),
            "arch_hash": lay.arch_hash[arch],
            "epochs": self.budgets[b],
            "repeat": repeat,
            "epoch": epoch,
            "energy_j": e,
            "gpu_energy_j": gpu,
            "cpu_energy_j": cpu,
            "dram_energy_j": dram,
            "energy_j_low": low,
            "energy_j_high": high,
            "wall_time_s": wall_s,
            "source": src,
            # None where the source does not say (an EC-NAS TFRecord without its sidecar)
            "estimated": None if self.metadata.get("estimated_unknown")
            else bool(lay.estimated[arch, b, r]),
            "device": lay.device,
        }

    def get_metrics_from_hash(self, arch_hash: str) -> tuple[dict[str, Any], dict[int, list[dict[str, Any]]]]:
        """NAS-Bench-101-style ``(fixed_stat, computed_stat)``; not charged.

        ``computed_stat[epochs]`` lists one dict per repeat with ``halfway_*`` and ``final_*``
        keys (EC-NAS's evaluations 1 and 2), energies in kWh (PUE re-applied) and in joules.
        """
        a = self.index_of(arch_hash)
        lay = self._lay

        spec = ModelSpec(lay.matrix[a], lay.ops[a])
        fixed = {"module_adjacency": spec.matrix, "module_operations": list(spec.ops),
                 "trainable_parameters": int(lay.trainable_params[a]), "module_hash": lay.arch_hash[a],
                 "flops": float(lay.flops[a])}
        grid = lay.grid()
        computed: dict[int, list[dict[str, Any]]] = {}
        for b, epochs in enumerate(self.budgets):
            runs = []
            for r in np.flatnonzero(lay.present[a, b]).tolist():
                v = dict(zip(METRICS, grid[a, b, r].tolist(), strict=True))
                runs.append({
                    "repeat": r + 1, "source": SOURCES[lay.source[a, b, r]],
                    "estimated": None if self.metadata.get("estimated_unknown")
                    else bool(lay.estimated[a, b, r]),
                    "halfway_training_time": v["half_training_time_s"],
                    "halfway_train_accuracy": v["half_train_accuracy"],
                    "halfway_validation_accuracy": v["half_validation_accuracy"],
                    "halfway_test_accuracy": v["half_test_accuracy"],
                    "halfway_energy (kWh)": kwh_of(v["half_energy_kwh"], v["half_energy_j"], self.pue),
                    "halfway_energy_j": v["half_energy_j"],
                    "final_training_time": v["training_time_s"],
                    "final_train_accuracy": v["train_accuracy"],
                    "final_validation_accuracy": v["validation_accuracy"],
                    "final_test_accuracy": v["test_accuracy"],
                    "final_energy (kWh)": kwh_of(v["energy_kwh"], v["energy_j"], self.pue),
                    "final_energy_j": v["energy_j"],
                    "final_gpu_energy_j": v["gpu_energy_j"], "final_cpu_energy_j": v["cpu_energy_j"],
                    "final_dram_energy_j": v["dram_energy_j"],
                    "final_energy_j_low": v["energy_j_low"], "final_energy_j_high": v["energy_j_high"],
                })
            if runs:
                computed[epochs] = runs
        return fixed, computed

    def get_metrics_from_spec(self, spec: Any) -> tuple[dict[str, Any], dict[int, list[dict[str, Any]]]]:
        """As :meth:`get_metrics_from_hash` for a spec (pruned first); not charged."""
        return self.get_metrics_from_hash(self._lay.arch_hash[self._arch_index(spec)])

    # -- budget counters
    def get_budget_counters(self) -> tuple[float, float]:
        """``(training_time_s, energy_j)`` charged by :meth:`query` since the last reset."""
        return self._time_spent, self._energy_spent

    def reset_budget_counters(self) -> None:
        """Set the simulated time and energy spent by queries back to zero."""
        self._time_spent = 0.0
        self._energy_spent = 0.0

    # -- vectorized read-only view for searches
    def arrays(self, budget: int, repeat: Any = "mean") -> dict[str, np.ndarray]:
        """Per-architecture arrays at one budget (storage order; NaN where missing).

        Keys: ``arch_hash``, ``matrix``, ``ops``, ``energy_j``, ``energy_kwh`` (PUE included, as
        ``query``'s ``energy (kWh)``), ``validation_accuracy``, ``test_accuracy``,
        ``training_time_s``, ``trainable_params`` (+ ``train_accuracy``, ``flops``). ``repeat``: ``"mean"`` (NaN-aware over present repeats) or an int.
        """
        b = self._budget(budget)
        lay = self._lay
        g = lay.grid()[:, b]  # [A, R, M]
        if repeat == "mean":
            with np.errstate(invalid="ignore"), _quiet():
                block = np.where(lay.present[:, b, :, None], g, np.nan)
                vals = np.nanmean(block, axis=1)
        elif isinstance(repeat, (int, np.integer)) and not isinstance(repeat, bool) \
                and 1 <= int(repeat) <= self._nr:
            vals = np.where(lay.present[:, b, int(repeat) - 1, None], g[:, int(repeat) - 1], np.nan)
        else:
            raise InputError(f"repeat {repeat!r}: use 'mean' or an integer in 1..{self._nr}")
        out = {name: vals[:, METRIC_INDEX[name]] for name in
               ("energy_j", "validation_accuracy", "test_accuracy", "train_accuracy",
                "training_time_s")}
        # kWh as query's "energy (kWh)": the published kWh where it still agrees with the
        # joules, else joules with the PUE re-applied (EC-NAS convention)
        pub, joules = vals[:, METRIC_INDEX["energy_kwh"]], out["energy_j"]
        with np.errstate(invalid="ignore"):
            agree = np.isfinite(pub) & (np.abs(pub * KWH_J / self.pue - joules)
                                        <= 1e-9 * np.abs(joules))
        out["energy_kwh"] = np.where(agree, pub, joules * self.pue / KWH_J)
        for arr in out.values():
            arr.flags.writeable = False
        return {"arch_hash": lay.arch_hash, "matrix": lay.matrix, "ops": lay.ops,
                "trainable_params": lay.trainable_params, "flops": lay.flops, **out}


class _quiet:
    """Silence numpy's 'Mean of empty slice' for all-NaN columns (NaN is the answer)."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
