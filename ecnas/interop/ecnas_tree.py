"""EC-NAS results trees in their own layout → energy tables.

Layout (any space such as 4V9E, 5V9E, 7V9E; any budgets; any number of repeats)::

    graphs/generated_graphs_<space>.json            hash → [matrix, integer labels]
    train_model_results/energy/<space>/<N>_epochs/<hash[:2]>/<hash>/repeat_<r>/results.json

Folders whose name starts with ``_`` (``_recovery`` markers) are ignored. ``SRC`` may be the
tree's root or any folder inside ``train_model_results`` (the graphs are then looked up in the
nearest ``graphs/`` folder above).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ecnas.errors import InputError
from ecnas.interop.convert import RunInput, runs_to_table
from ecnas.interop.proto import metrics_from_results
from ecnas.interop.results_types import check_results_types

_EPOCHS = re.compile(r"^(\d+)_epochs$")
_REPEAT = re.compile(r"^repeat_(\d+)$")


def is_results_tree(path: Path) -> bool:
    """Whether ``path`` is a folder of an EC-NAS results tree: its root
    (``train_model_results/`` or ``graphs/`` inside), a budget or repeat folder, or one with a
    repeat or budget folder inside."""
    return path.is_dir() and (
        (path / "train_model_results").is_dir() or (path / "graphs").is_dir()
        or any(_REPEAT.match(p.name) or _EPOCHS.match(p.name) for p in path.iterdir() if p.is_dir())
        or path.name in ("train_model_results", "energy"))


def _graph_files(root: Path) -> list[Path]:
    for base in (root, *root.parents):
        g = base / "graphs"
        if g.is_dir():
            files = sorted(g.glob("*.json"))
            if files:
                return files
    return []


def load_graphs(root: Path) -> dict[str, Any]:
    """hash → [matrix, labels] from every graphs JSON of the tree."""
    files = _graph_files(root)
    if not files:
        raise InputError(f"{root}: no graphs/*.json (EC-NAS's hash → [matrix, labels] file) "
                         "in it or above it")
    graphs: dict[str, Any] = {}
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{f}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{f}: expected an object hash → [matrix, labels]")
        graphs.update(data)
    return graphs


def _walk_results(root: Path) -> list[tuple[Path, str, int, str, int]]:
    """(results.json, space, budget, hash, repeat) for every run below ``root``."""
    found = []
    seen: dict[tuple[str, int, str, int], Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        d = Path(dirpath)
        if "results.json" not in filenames:
            if _REPEAT.match(d.name):  # a repeat never finished, or its file was lost
                raise InputError(f"{d}: repeat folder without results.json (one run fewer "
                                 "would be imported silently); restore it or remove the folder")
            continue
        rep = _REPEAT.match(d.name)
        if rep is None:
            raise InputError(f"{d / 'results.json'}: expected it in a repeat_<r> folder")
        arch = d.parent.name
        budget = next((int(m.group(1)) for m in (_EPOCHS.match(p.name) for p in d.parents) if m), None)
        if budget is None:
            raise InputError(f"{d / 'results.json'}: no <N>_epochs folder above it (the budget)")
        epochs_dir = next(p for p in d.parents if _EPOCHS.match(p.name))
        key = (epochs_dir.parent.name, budget, arch, int(rep.group(1)))
        if key in seen:  # repeat_1 and repeat_01: one repeat, two folders
            raise InputError(f"{d}: the same repeat as {seen[key]} (repeat {key[3]} of {arch} "
                             f"at {budget} epochs); keep one of the two folders")
        seen[key] = d
        found.append((d / "results.json", epochs_dir.parent.name, budget, arch, int(rep.group(1))))
    return found


def import_results_tree(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """The energy table of an EC-NAS results tree (keyword options: see ``runs_to_table``)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    found = _walk_results(root)
    if not found:
        raise InputError(f"{root}: no train_model_results/…/repeat_<r>/results.json below it")
    graphs = load_graphs(root)
    runs = []
    spaces = []
    for file, space, budget, arch, repeat in found:
        try:
            results = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: not JSON ({exc})") from None
        if not isinstance(results, dict) or "evaluation_results" not in results:
            raise InputError(f"{file}: no 'evaluation_results' (not an EC-NAS results.json)")
        check_results_types(results, str(file))
        graph = graphs.get(arch)
        if graph is None:
            raise InputError(f"{file}: hash {arch} is not in the graphs JSON")
        try:
            matrix, labels = graph
        except (TypeError, ValueError):
            raise InputError(f"graphs JSON: entry {arch} is not [matrix, labels]") from None
        if results.get("model_hash") not in (None, arch):
            raise InputError(f"{file}: model_hash {results['model_hash']} ≠ folder {arch}")
        try:
            metrics = metrics_from_results(results)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{file}: malformed results ({exc})") from None
        extras = [{k: ev[k] for k in ("predict_time", "training_steps") if k in ev}
                  for ev in results["evaluation_results"]]
        runs.append(RunInput(arch, matrix, labels, budget, repeat, metrics,
                             where=str(file), eval_extras=extras))
        spaces.append(space)
    kwargs.setdefault("source", str(root))
    df = runs_to_table(runs, source_kind="results-tree", **kwargs)
    counts = [len(r.metrics.evaluation_data_energy) for r in runs]
    df["space"] = pd.Series([s for s, n in zip(spaces, counts, strict=True) for _ in range(n)],
                            dtype="str")
    return df
