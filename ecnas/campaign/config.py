"""The campaign file (TOML): which architectures, budgets, repeats, recipe and devices to measure.

Every key is checked here, before anything runs; a bad value raises :class:`InputError` naming
the file, the key and the reason on one line. The schema is documented in docs/campaigns.md
and, with every key, in examples/demo-campaign.toml.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ecnas.campaign.cluster_config import ClusterSpec, parse_cluster
from ecnas.errors import InputError
from ecnas.profiles.toml_io import check_toml_depth
from ecnas.space import ModelSpec, enumerate_cells, sample_cells
from ecnas.tables import read_table
from ecnas.tracker.carbon import check_carbon_intensity
from ecnas.trainer.config import TrainConfig
from ecnas.trainer.recipe import (
    DATASET_DEFAULTS,
    MAX_BUDGET_EPOCHS,
    MAX_REPEATS,
    MAX_WARMUP_STEPS,
    parse_checkpoints,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: TrainConfig fields a campaign may set in [recipe]
RECIPE_KEYS = ("stem_channels", "num_stacks", "cells_per_stack", "batch_size", "learning_rate",
               "bn_decay", "checkpoints", "deterministic", "max_train_images", "max_eval_images",
               "carbon_intensity_g_per_kwh", "warmup_steps")
#: unmetered training steps before each run's metered epochs, unless [recipe] says otherwise
WARMUP_STEPS = 10
CAMPAIGN_KEYS = ("name", "dataset", "data_dir", "seed", "budgets", "repeats", "devices",
                 "retries")
ARCH_KEYS = ("enumerate", "sample", "list", "table")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the campaign: an architecture at one budget, one repeat."""

    arch_hash: str
    matrix: str
    ops: str
    budget_epochs: int
    repeat: int

    @property
    def key(self) -> str:
        """The run's identity in the store: ``hash/budget/repeat``."""
        return f"{self.arch_hash}/{self.budget_epochs}/{self.repeat}"


@dataclass(frozen=True)
class Campaign:
    """A validated campaign. Build it with :func:`load_campaign` or :meth:`from_dict`."""

    name: str
    source: str  # the file it came from, or "<python>"
    dataset: str
    data_dir: str | None
    seed: int
    repeats: int
    retries: int
    devices: tuple[str, ...]
    recipe: tuple[tuple[str, Any], ...]  # sorted (key, value) overrides of TrainConfig
    run_specs: tuple[RunSpec, ...]
    #: the [cluster] table: what each worker job asks a batch scheduler for (not in the hash)
    cluster: ClusterSpec | None = None

    def runs(self) -> list[RunSpec]:
        """Every run, architectures × budgets × repeats, in a stable order."""
        return list(self.run_specs)

    @cached_property  # a campaign of 10,000 runs hashes 10,000 keys: once is enough
    def hash(self) -> str:
        """Identity of what the campaign measures (retries, devices, name and where the dataset
        lies excluded: the same campaign on another machine keeps its store)."""
        # data_dir stays in the body as null so that stores made before it left keep their hash
        body = {"dataset": self.dataset, "data_dir": None, "seed": self.seed,
                "recipe": [list(kv) for kv in self.recipe],
                "runs": [r.key for r in self.run_specs]}
        text = json.dumps(body, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def train_config(self, run: RunSpec, device: str = "cpu") -> dict[str, Any]:
        """The run's :class:`ecnas.trainer.config.TrainConfig` as a plain dict (JSON-able)."""
        cfg: dict[str, Any] = {"matrix": run.matrix, "ops": run.ops,
                               "budget_epochs": run.budget_epochs, "repeat": run.repeat,
                               "seed": self.seed, "dataset": self.dataset,
                               "data_dir": self.data_dir, "device": device}
        cfg["warmup_steps"] = WARMUP_STEPS
        for key, value in self.recipe:
            cfg[key] = list(value) if isinstance(value, tuple) else value
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The campaign as plain data, as the store records it when bound: settings, recipe, run
        count and cluster."""
        return {"name": self.name, "source": self.source, "hash": self.hash,
                "dataset": self.dataset, "data_dir": self.data_dir, "seed": self.seed,
                "repeats": self.repeats, "retries": self.retries, "devices": list(self.devices),
                "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.recipe},
                "runs": len(self.run_specs),
                "cluster": self.cluster.to_dict() if self.cluster else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<python>",
                  base_dir: Path | None = None) -> Campaign:
        """A campaign from the parsed contents of a campaign file (the same checks as
        :func:`load_campaign`); ``source`` names it in errors and relative paths resolve against
        ``base_dir`` (default: the working folder)."""
        return _parse(data, source, base_dir or Path.cwd())


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: campaign file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text: {exc.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:  # e.g. hundreds of nested '[': a hostile or broken file
        raise InputError(f"{p}: TOML nested too deeply to read") from None
    return _parse(check_toml_depth(data, str(p)), str(p), p.resolve().parent)


# -- validation --------------------------------------------------------------------------------

class _Where:
    """Formats errors as ``file: key: reason``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, reason: str) -> InputError:
        return InputError(f"{self.source}: {key}: {reason}")

    def int(self, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"must be an integer ≥ {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value!r}")
        return value

    def table(self, key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {type(value).__name__}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.error(f"{key}.{unknown[0]}" if key else unknown[0],
                             f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def budgets(self, key: str, value: Any) -> tuple[builtins.int, ...]:  # int: the method above
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"must be a non-empty list of epochs, got {value!r}")

        out = tuple(self.int(f"{key}[{i}]", v, 1, MAX_BUDGET_EPOCHS) for i, v in enumerate(value))
        if len(set(out)) != len(out):
            raise self.error(key, f"lists a budget twice: {list(out)}")
        return out


def _recipe(where: _Where, data: Any) -> tuple[tuple[str, Any], ...]:
    recipe = where.table("recipe", data, RECIPE_KEYS)
    out: dict[str, Any] = {}
    for key, value in recipe.items():
        if key == "checkpoints":
            try:
                value = parse_checkpoints(value)
            except (InputError, TypeError, ValueError) as exc:
                raise where.error("recipe.checkpoints", str(exc)) from None
        elif key == "deterministic":
            if not isinstance(value, bool):
                raise where.error("recipe.deterministic", f"must be true or false, got {value!r}")
        elif key == "carbon_intensity_g_per_kwh":
            try:  # a float, as documented (250.0), not an integer
                value = check_carbon_intensity(value)
            except InputError as exc:
                raise where.error(f"recipe.{key}", str(exc)) from None
        elif key == "warmup_steps":
            value = where.int(f"recipe.{key}", value, 0, MAX_WARMUP_STEPS)
        elif key in ("learning_rate", "bn_decay"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise where.error(f"recipe.{key}", f"must be a number, got {value!r}")
            value = float(value)
        else:
            value = where.int(f"recipe.{key}", value, 1)
        out[key] = value
    return tuple(sorted(out.items()))


def _cells(where: _Where, arch: dict[str, Any], base_dir: Path,
           budgets: tuple[int, ...]) -> list[tuple[Any, tuple[int, ...]]]:
    """(ModelSpec, budgets) for every architecture source given, in file order."""
    cells: list[tuple[Any, tuple[int, ...]]] = []
    if "enumerate" in arch:
        e = where.table("architectures.enumerate", arch["enumerate"], ("max_vertices", "max_edges"))
        if "max_vertices" not in e:
            raise where.error("architectures.enumerate.max_vertices", "is required")
        mv = where.int("architectures.enumerate.max_vertices", e["max_vertices"], 2)
        me = where.int("architectures.enumerate.max_edges", e.get("max_edges", 9), 0)
        if mv > 5:  # 7 vertices is 423k cells: a campaign of that size is a deliberate choice
            raise where.error("architectures.enumerate.max_vertices",
                              f"{mv} enumerates too many cells to train; use sample instead")
        cells += [(c, budgets) for c in enumerate_cells(mv, me)]
    if "sample" in arch:
        s = where.table("architectures.sample", arch["sample"],
                        ("count", "seed", "max_vertices", "max_edges"))
        if "count" not in s:
            raise where.error("architectures.sample.count", "is required")
        n = where.int("architectures.sample.count", s["count"], 1)
        seed = where.int("architectures.sample.seed", s.get("seed", 0), 0)
        mv = where.int("architectures.sample.max_vertices", s.get("max_vertices", 7), 2)
        me = where.int("architectures.sample.max_edges", s.get("max_edges", 9), 0)
        try:
            cells += [(c, budgets) for c in sample_cells(n, seed, max_vertices=mv, max_edges=me)]
        except InputError as exc:
            raise where.error("architectures.sample", str(exc)) from None
    if "list" in arch:
        entries = arch["list"]
        if not isinstance(entries, list) or not entries:
            raise where.error("architectures.list", "must be a non-empty array of tables "
                              "([[architectures.list]] with matrix and ops)")
        for i, entry in enumerate(entries):
            key = f"architectures.list[{i}]"
            entry = where.table(key, entry, ("matrix", "ops", "budgets"))
            for field in ("matrix", "ops"):
                if not isinstance(entry.get(field), str):
                    raise where.error(f"{key}.{field}", "is required (a string)")
            try:
                spec = ModelSpec(entry["matrix"], entry["ops"])
            except InputError as exc:
                raise where.error(key, str(exc)) from None
            if not spec.valid:
                raise where.error(key, f"invalid cell: {spec.invalid_reason}")
            own = where.budgets(f"{key}.budgets", entry["budgets"]) if "budgets" in entry \
                else budgets
            cells.append((spec, own))
    if "table" in arch:
        cells += [(c, budgets) for c in _table_cells(where, arch["table"], base_dir)]
    return cells


def _table_cells(where: _Where, value: Any, base_dir: Path) -> list[Any]:
    if not isinstance(value, str):
        raise where.error("architectures.table", f"must be a path string, got {value!r}")
    path = (base_dir / value) if not Path(value).is_absolute() else Path(value)
    if not path.exists():
        raise where.error("architectures.table", f"{path} does not exist")
    try:
        df = read_table(path)
    except InputError as exc:  # the table's own one-line reason, under this file and key
        raise where.error("architectures.table", str(exc)) from None
    pairs = df[["matrix", "ops"]].drop_duplicates()
    return [ModelSpec(m, o) for m, o in zip(pairs["matrix"], pairs["ops"], strict=True)]


def _parse(data: Mapping[str, Any], source: str, base_dir: Path) -> Campaign:
    where = _Where(source)
    top = where.table("", dict(data), ("campaign", "architectures", "recipe", "cluster"))
    if "campaign" not in top:
        raise where.error("campaign", "the [campaign] table is required")
    if "architectures" not in top:
        raise where.error("architectures", "the [architectures] table is required")
    c = where.table("campaign", top["campaign"], CAMPAIGN_KEYS)
    name = c.get("name", Path(source).stem if source != "<python>" else "campaign")
    if not isinstance(name, str) or not name:
        raise where.error("campaign.name", f"must be a non-empty string, got {name!r}")
    dataset = c.get("dataset", "embedded")
    if dataset not in DATASET_DEFAULTS:
        raise where.error("campaign.dataset",
                          f"must be one of {', '.join(DATASET_DEFAULTS)}, got {dataset!r}")
    data_dir = c.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str):
            raise where.error("campaign.data_dir", f"must be a path string, got {data_dir!r}")
        data_dir = str(base_dir / data_dir) if not Path(data_dir).is_absolute() else data_dir
        if not Path(data_dir).is_dir():  # else every run would fail on it, one by one
            raise where.error("campaign.data_dir", f"{data_dir} is not a folder")
    if dataset == "cifar10" and data_dir is None:
        raise where.error("campaign.data_dir", "is required for dataset cifar10")
    seed = where.int("campaign.seed", c.get("seed", 0), 0)

    repeats = where.int("campaign.repeats", c.get("repeats", 1), 1, MAX_REPEATS)
    retries = where.int("campaign.retries", c.get("retries", 2), 0, 100)
    if "budgets" not in c:
        raise where.error("campaign.budgets", "is required (e.g. budgets = [4])")
    budgets = where.budgets("campaign.budgets", c["budgets"])
    devices = c.get("devices", ["cpu"])
    if isinstance(devices, str):
        devices = [devices]
    if not isinstance(devices, list) or not devices:
        raise where.error("campaign.devices", f"must be a non-empty list, got {devices!r}")
    for i, d in enumerate(devices):
        if not isinstance(d, str) or not _DEVICE.match(d):
            raise where.error(f"campaign.devices[{i}]", f"must be cpu or cuda:N, got {d!r}")
    recipe = _recipe(where, top.get("recipe", {}))
    arch = where.table("architectures", top["architectures"], ARCH_KEYS)
    if not arch:
        raise where.error("architectures", f"give at least one of {', '.join(ARCH_KEYS)}")
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for spec, own_budgets in _cells(where, arch, base_dir, budgets):
        h = spec.hash()
        for b in own_budgets:
            for r in range(1, repeats + 1):
                run = RunSpec(h, spec.matrix_str, spec.ops_str, b, r)
                if run.key not in seen:  # the same cell from two sources is measured once
                    seen.add(run.key)
                    runs.append(run)
    campaign = Campaign(name=name, source=source, dataset=dataset, data_dir=data_dir, seed=seed,
                        repeats=repeats, retries=retries, devices=tuple(devices), recipe=recipe,
                        run_specs=tuple(runs),
                        cluster=parse_cluster(top["cluster"], where.error, base_dir)
                        if "cluster" in top else None)
    _check_recipe(where, campaign)
    return campaign


def _check_recipe(where: _Where, campaign: Campaign) -> None:
    """Build one TrainConfig so that recipe values TrainConfig refuses fail here, not in a run
    (:mod:`ecnas.trainer.config` imports no torch: checking a campaign file stays light)."""
    if not campaign.run_specs:
        raise where.error("architectures", "selects no architecture")
    try:
        TrainConfig.from_dict(campaign.train_config(campaign.run_specs[0]))
    except InputError as exc:
        raise where.error("recipe", str(exc)) from None
