"""The import graph of docs/architecture.md: bottom up, no import running back up, lazy
imports (inside functions) and lazy exports included, no cycle between the rooms of one layer,
no cycle between the modules of one room, and no ``import_module`` this test cannot follow.
Also read from the AST: every public function, method and class has a docstring."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ecnas"

#: bottom up; a module may import its own layer or lower ones, never a higher one
LAYERS: tuple[frozenset[str], ...] = (
    # foundations: no ecnas imports of their own (the lazy-export helper included)
    frozenset({"errors", "_version", "outputs", "_lazy"}),
    frozenset({"meters"}),  # device readers
    frozenset({"profiles"}),  # profile data and matching
    frozenset({"monitor"}),  # windows over readers, calibrated by profiles; measure()
    frozenset({"space", "tables", "calibration"}),  # cells; the data contract; ecnas calibrate
    frozenset({"interop", "tracker"}),  # EC-NAS's format both ways; EnergyTracker (no torch)
    frozenset({"trainer", "surrogate", "benchmark"}),
    frozenset({"campaign", "integrations", "demo", "gpucheck", "contributions"}),
    frozenset({"cli", "__main__"}),
)
LAYER_OF = {room: i for i, layer in enumerate(LAYERS) for room in layer}

#: ``import_module`` calls whose target is chosen by the user at run time, so no test can
#: follow them: (file, why). Every other call must name its module literally, through a
#: module-level constant, or through ``lazy_exports`` with a literal mapping.
PLUGIN_SITES = {
    "meters/registry.py": "meters from entry points: a lab's own meter, named by its package",
    "cli/campaign.py": "--run-fn MODULE:FUNCTION, the user's training function",
    "_lazy.py": "the lazy-export helper: each facade's literal mapping is followed instead",
}


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the package (packages by their __init__)."""
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = ["ecnas", *p.relative_to(PACKAGE).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _module_of(name: str) -> str | None:
    """The package module that ``name`` (a module, or a name inside one) lives in."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


def _literals(node: ast.AST | None, consts: dict[str, ast.AST]) -> list[str] | None:
    """The strings ``node`` stands for (a literal, a tuple/list of them, a dict's values, or a
    module-level name bound to one of those); None if it is anything else."""
    if isinstance(node, ast.Name) and node.id in consts:
        node = consts[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    items = node.values if isinstance(node, ast.Dict) else \
        node.elts if isinstance(node, (ast.Tuple, ast.List)) else None
    if items is None:
        return None
    found = [_literals(i, consts) for i in items]
    return None if any(f is None for f in found) else [s for f in found for s in f]  # type: ignore[union-attr]


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


@cache
def imports(path: Path) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...]]:
    """((line, module), …) of every ecnas module ``path`` imports (statements at any depth,
    ``import_module`` strings, ``lazy_exports`` mappings, ``"ecnas.x:attr"`` targets), and
    the ``import_module`` calls it cannot follow."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(PACKAGE)
    me = ["ecnas", *rel.with_suffix("").parts]
    consts = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    loops = {node.target.id: node.iter for node in ast.walk(tree)
             if isinstance(node, ast.For) and isinstance(node.target, ast.Name)}
    out: list[tuple[int, str]] = []
    lost: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                mod = ".".join(me[:-node.level] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules()]
            rest = len(subs) < len(node.names)
            out += [(node.lineno, s) for s in subs] + ([(node.lineno, mod)] if rest else [])
        elif isinstance(node, ast.Call) and _call_name(node) in ("import_module", "lazy_exports"):
            arg = node.args[0 if _call_name(node) == "import_module" else 1] \
                if len(node.args) > (0 if _call_name(node) == "import_module" else 1) else None
            if isinstance(arg, ast.Name) and arg.id in loops:
                arg = loops[arg.id]
            names = _literals(arg, consts)
            if names is None:
                if str(rel) not in PLUGIN_SITES:
                    lost.append(f"ecnas/{rel}:{node.lineno}: {ast.unparse(node)}")
            else:
                out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("ecnas.") and ":" in node.value \
                and " " not in node.value:  # an entry-point target, "ecnas.meters.nvml:NvmlMeter"
            out.append((node.lineno, node.value.partition(":")[0]))
    found = tuple((line, m) for line, m in out if m == "ecnas" or m.startswith("ecnas."))
    return found, tuple(lost)


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ecnas" else None


def graph() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> where, for every import that crosses rooms."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in sorted(modules().items()):
        src = _room(name)
        if src is None:
            continue  # ecnas/__init__.py: the facade re-exports the public API lazily
        for line, module in imports(path)[0]:
            dst = _room(module)
            if dst is not None and dst != src:
                edges[(src, dst)].append(f"ecnas/{path.relative_to(PACKAGE)}:{line} imports {module}")
    return edges


def module_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_every_room_has_a_layer() -> None:
    rooms = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or
             (p.suffix == ".py" and p.stem != "__init__")}
    assert rooms - LAYER_OF.keys() == set(), "add the new room to LAYERS and docs/architecture.md"


def test_no_import_runs_back_up() -> None:
    upward = [where for (src, dst), sites in graph().items()
              if LAYER_OF.get(dst, -1) > LAYER_OF.get(src, -1) for where in sites]
    assert upward == [], "imports running back up:\n" + "\n".join(upward)


def test_no_cycle_within_a_layer() -> None:
    edges = graph()
    cycles = [f"{a} <-> {b}: {edges[(a, b)][0]} / {edges[(b, a)][0]}"
              for (a, b) in edges
              if (b, a) in edges and a < b and LAYER_OF.get(a) == LAYER_OF.get(b)]
    assert cycles == []


def test_no_cycle_within_a_room() -> None:
    """Modules of one room import each other one way only, lazy imports included: a cycle
    means two modules that are really one, or a third one missing."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        for _, target in imports(path)[0]:
            dst = _module_of(target)
            if dst is not None and dst != name and _room(dst) == _room(name):
                edges[name].add(dst)
    assert module_cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert module_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert module_cycles({"a": {"b"}, "b": set()}) == []


def test_every_import_module_can_be_followed() -> None:
    lost = [site for path in modules().values() for site in imports(path)[1]]
    assert lost == [], "import_module calls this test cannot follow (name the module " \
        "literally or add the site to PLUGIN_SITES with why):\n" + "\n".join(lost)


def test_lazy_exports_are_followed() -> None:
    """The facades' mappings count as imports: the tracker facade reaches the tracker."""
    found = {m for _, m in imports(PACKAGE / "tracker" / "__init__.py")[0]}
    assert {"ecnas.tracker.tracker", "ecnas.tracker.rows"} <= found
    found = {m for _, m in imports(PACKAGE / "cli" / "__init__.py")[0]}
    assert "ecnas.cli.campaign" in found  # through COMMAND_MODULES and the loop over it


def test_foundations_import_only_the_errors() -> None:
    found = [where for (src, dst), sites in graph().items()
             if LAYER_OF.get(src) == 0 and (dst != "errors" or src == "errors")
             for where in sites]
    assert found == []


def test_integrations_do_not_import_the_trainer() -> None:
    """The framework callbacks build on the tracker room (no torch of ours), never on the
    trainer room (networks, recipe, training loop)."""
    found = [where for (src, dst), sites in graph().items()
             if src == "integrations" and dst == "trainer" for where in sites]
    assert found == []
    code = ("import sys, ecnas.integrations.lightning, ecnas.integrations.huggingface, "
            "ecnas.integrations.prometheus; "
            "print(sorted(m for m in sys.modules if m.startswith('ecnas.trainer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


#: Imports inside functions, allowed per module, each with its reason: "light" (the module's
#: room must import without the heavy dependency, a tested rule: ``ecnas --help``, ``import
#: ecnas``, a campaign file checked without torch), "optional" (an extra that may be absent),
#: "process" (a child or worker process imports it, not the parent), or "cycle" (the two
#: modules need each other only at call time). A module not listed may have none; the counts
#: may fall (a stale entry is harmless) and must not rise without a reason written here.
FUNCTION_IMPORTS: dict[str, tuple[int, str]] = {
    "benchmark/moo/plot.py": (2, "optional: matplotlib, for --plot only"),
    "calibration/fit.py": (1, "light: scipy.optimize only when a fit runs"),
    "calibration/loads.py": (1, "light: torch only for the GPU load"),
    "calibration/timeshift.py": (1, "light: scipy.optimize only when a shift is searched"),
    "campaign/cluster.py": (1, "optional: dask-jobqueue (jobqueue extra)"),
    "campaign/executors.py": (3, "optional: distributed (dask extra)"),
    "campaign/worker_slots.py": (1, "light: torch only where threads are set for a run"),
    "campaign/socket_split.py": (1, "light: psutil only when shares are measured"),
    "campaign/store.py": (1, "light: fcntl (POSIX only) when a lock is taken"),
    "campaign/worker.py": (3, "process: the worker process imports the trainer and meters"),
    "cli/_metrics.py": (1, "light: ecnas --help imports no integrations"),
    "cli/benchmark.py": (8, "light: ecnas --help imports no pandas (handlers load the room)"),
    "cli/campaign.py": (3, "light: ecnas --help imports no dask or pandas"),
    "cli/contributions.py": (3, "light: ecnas --help imports no pandas (handlers load the room)"),
    "cli/demo.py": (3, "light: ecnas --help imports no torch"),
    "cli/profiles.py": (4, "light: ecnas --help imports no scipy or pandas"),
    "cli/space.py": (2, "light: ecnas --help imports no numpy"),
    "cli/surrogate.py": (10, "light: ecnas --help imports no numpy or pandas"),
    "cli/tables.py": (7, "light: ecnas --help imports no pandas"),
    "cli/trainer.py": (4, "light: ecnas --help imports no torch"),
    "cli/validate.py": (1, "light: ecnas --help imports no torch"),
    "integrations/_run.py": (3, "light: the framework hooks import pandas only when a run ends"),
    "integrations/synetune.py": (3, "optional: syne-tune (synetune extra)"),
    "meters/amd.py": (1, "optional: amdsmi (amd extra)"),
    "meters/cpuinfo.py": (1, "light: platform only on the fallback path"),
    "meters/estimate.py": (2, "light: psutil only when the estimate meter starts"),
    "meters/nvml.py": (2, "optional: pynvml, ctypes only where NVML is present"),
    "meters/pyrapl.py": (2, "optional: pyRAPL (pyrapl extra)"),
    "meters/registry.py": (8, "light: import ecnas loads a meter's module only when used"),
    "monitor/monitor.py": (3, "light: meter discovery and the profile cache when a Monitor starts"),
    "monitor/profile_cache.py": (2, "light: profiles and outputs only when a cache is written"),
    "monitor/report.py": (1, "light: outputs only when a report is written"),
    "space/spec.py": (1, "light: the iso-hash code only when a hash is asked for"),
    "surrogate/learners.py": (1, "light: torch only for the MLP learner"),
    "surrogate/metrics.py": (1, "light: scipy.stats only for rank correlations"),
    "tracker/rows.py": (2, "light: pandas only when rows become a table"),
    "tracker/tracker.py": (6, "light: import ecnas.tracker starts no meter or monitor"),
    "gpucheck/loads.py": (1, "light: torch only when a load runs on the GPU"),
    "gpucheck/phases.py": (4, "light: torch and pynvml only when a phase runs"),
    "gpucheck/runner.py": (1, "light: torch only when the run starts"),
    "gpucheck/select_probe.py": (1, "light: torch only when a probe runs"),
}


def _function_imports() -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in modules().values():
        inside = set()
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside |= {n.lineno for n in ast.walk(fn)
                           if isinstance(n, (ast.Import, ast.ImportFrom))}
        if inside:
            counts[path.relative_to(PACKAGE).as_posix()] = len(inside)
    return counts


def test_imports_inside_functions_only_where_allowed() -> None:
    """Imports belong at the top of a module; inside functions only where a module is listed
    in FUNCTION_IMPORTS with its reason (docs/architecture.md), and no more than listed."""
    found = _function_imports()
    over = {f: (n, FUNCTION_IMPORTS.get(f, (0, ""))[0]) for f, n in found.items()
            if n > FUNCTION_IMPORTS.get(f, (0, ""))[0]}
    assert over == {}, ("imports inside functions beyond FUNCTION_IMPORTS (module: (found, "
                        f"allowed)); move them to the top or list them with a reason: {over}")
    # and no stale allowance: a module that lost an import gives up its place in the list
    stale = {f: (found.get(f, 0), n) for f, (n, _why) in FUNCTION_IMPORTS.items()
             if found.get(f, 0) != n}
    assert stale == {}, f"FUNCTION_IMPORTS allows more than the code has (found, allowed): {stale}"
    assert all(reason.split(":")[0] in ("light", "optional", "process", "cycle")
               for _n, reason in FUNCTION_IMPORTS.values())
    # the old ceiling still holds for the whole package
    assert sum(_function_imports().values()) < 120


def test_every_folder_of_modules_is_a_package() -> None:
    """A wheel ships packages only: a folder of modules without ``__init__.py`` works in an
    editable checkout (as a namespace package) and is missing once installed."""
    loose = sorted(str(d.relative_to(PACKAGE.parent)) for d in PACKAGE.rglob("*")
                   if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
                   and not (d / "__init__.py").is_file())
    assert loose == [], f"folders of modules without __init__.py: {loose}"


#: folders of the repository beside the package: a path into one of them means something only in
#: a checkout, run from its root, which an installed ecnas never is
REPOSITORY_FOLDERS = frozenset({"tests", "campaigns", "experiments", "scripts", "benchmarks",
                                "examples", "docs", "hardware_profiles"})
#: (file, string): a repository folder the package may name, and why
REPOSITORY_PATH_SITES = {
    ("profiles/loading.py", "hardware_profiles"):
        "the packaged profiles in a source checkout run without installing, found beside the "
        "package's own file (Path(__file__).parents[2]), never from the working folder",
}


def _docstring_nodes(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _repository_strings(tree: ast.Module) -> list[ast.Constant]:
    """String literals (docstrings aside) that name a repository folder, alone or as the head
    of a relative path (``"tests/data/x.tar.gz"``, ``Path("campaigns")``)."""
    docs = _docstring_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            text = node.value.strip().removeprefix("./")
            head = text.split("/")[0]
            if head in REPOSITORY_FOLDERS and (text == head or "/" in text):
                out.append(node)
    return out


def test_no_module_reads_a_repository_relative_path() -> None:
    """The library works installed, from any folder: a path into the checkout (its tests' data,
    a campaign folder) belongs to an experiment (``experiments/``) or a script (``scripts/``)."""
    found = []
    for path in modules().values():
        rel = str(path.relative_to(PACKAGE))
        found += [f"{rel}:{n.lineno}: {n.value!r}"
                  for n in _repository_strings(ast.parse(path.read_text(encoding="utf-8")))
                  if (rel, n.value.strip()) not in REPOSITORY_PATH_SITES]
    assert found == []


def test_the_repository_path_rule_sees_paths() -> None:
    """The rule finds what it is meant to find, in code as ecnas would write it."""
    tree = ast.parse('"""tests/data in a docstring is prose"""\n'
                     'ARCHIVE = Path("tests/data/ec-nas-5v.tar.gz")\nDIR = Path("campaigns")\n'
                     'X = "testsuite/a"\nY = "tests are run"\n')
    assert [n.value for n in _repository_strings(tree)] == ["tests/data/ec-nas-5v.tar.gz",
                                                            "campaigns"]


# -- docstrings ------------------------------------------------------------------------------
# Every public function, method and class of the package says what it does (issue 27, point
# 7), read from the AST so that modules of optional extras need not import. Exempt: names
# starting with "_" (and everything inside a private class), @overload stubs, a property's
# @x.setter/@x.deleter (the property's docstring covers it), and a method that overrides a
# documented method of an ecnas base class: inspect.getdoc (help(), Sphinx) shows that
# docstring for it. A method overriding a base class outside ecnas (a framework's hook) needs
# its own: a one-liner saying what ecnas does there.


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[str]:
    names = []
    for d in node.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        names.append(d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute)
                     else "")
    return names


@cache
def _bindings(module: str) -> dict[str, str]:
    """Name -> dotted target of what ``module`` binds at its top level: its classes, and what it
    imports from ecnas (``from ecnas.x import Y as Z``, ``import ecnas.x as z``)."""
    tree = _tree(modules()[module])
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = f"{module}.{node.name}"
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out[a.asname or a.name] = f"{base}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                head = a.asname or a.name.partition(".")[0]
                out[head] = a.name if a.asname else head
    return out


@cache
def _class_defs() -> dict[str, tuple[str, ast.ClassDef]]:
    """Dotted name -> (module, node) of every class of the package (top level or in a class)."""
    out: dict[str, tuple[str, ast.ClassDef]] = {}

    def visit(body: list[ast.stmt], module: str, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                out[f"{prefix}.{node.name}"] = (module, node)
                visit(node.body, module, f"{prefix}.{node.name}")

    for name, path in modules().items():
        visit(_tree(path).body, name, name)
    return out


def _resolve_class(dotted: str, depth: int = 0) -> str | None:
    """The dotted name where the class ``dotted`` is defined, following re-exports; None for a
    class outside the package (or one this cannot follow)."""
    if dotted in _class_defs():
        return dotted
    module, _, name = dotted.rpartition(".")
    if depth > 5 or module not in modules() or name not in _bindings(module):
        return None
    return _resolve_class(_bindings(module)[name], depth + 1)


def _bases(cls: str) -> list[str]:
    """The ecnas classes ``cls`` derives from directly (bases outside ecnas left out)."""
    module, node = _class_defs()[cls]
    out = []
    for base in node.bases:
        parts: list[str] = []
        while isinstance(base, ast.Attribute):  # base.Meter, ecnas.meters.base.Meter
            parts.insert(0, base.attr)
            base = base.value
        head = _bindings(module).get(base.id) if isinstance(base, ast.Name) else None
        found = _resolve_class(".".join([head, *parts])) if head else None
        if found:
            out.append(found)
    return out


def _inherits_doc(cls: str, method: str) -> bool:
    """Whether an ecnas base class of ``cls`` (at any depth) documents ``method``."""
    seen: set[str] = set()
    todo = _bases(cls)
    while todo:
        base = todo.pop()
        if base in seen:
            continue
        seen.add(base)
        for node in _class_defs()[base][1].body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and node.name == method and ast.get_docstring(node):
                return True
        todo += _bases(base)
    return False


def public_callables() -> tuple[list[str], list[str]]:
    """(every public function, method and class of the package, those without a docstring),
    each as ``ecnas/file.py:line qualified.name``."""
    found: list[str] = []
    missing: list[str] = []

    def visit(body: list[ast.stmt], path: Path, module: str, cls: str | None) -> None:
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    or node.name.startswith("_"):
                continue
            decorators = _decorator_names(node)
            if "overload" in decorators or "setter" in decorators or "deleter" in decorators:
                continue
            qual = f"{cls}.{node.name}" if cls else f"{module}.{node.name}"
            where = f"ecnas/{path.relative_to(PACKAGE)}:{node.lineno} {qual[len(module) + 1:]}"
            found.append(where)
            if not ast.get_docstring(node) and not (
                    cls is not None and not isinstance(node, ast.ClassDef)
                    and _inherits_doc(cls, node.name)):
                missing.append(where)
            if isinstance(node, ast.ClassDef):
                visit(node.body, path, module, qual)

    for module, path in sorted(modules().items()):
        visit(_tree(path).body, path, module, None)
    return found, missing


def test_public_callables_have_docstrings() -> None:
    found, missing = public_callables()
    assert len(found) > 900, "the walk over the package found too little: is it broken?"
    assert missing == [], (f"{len(missing)} of {len(found)} public functions, methods and "
                           "classes have no docstring (say what each returns or does, with "
                           "units):\n" + "\n".join(missing))


def test_the_docstring_walk_follows_ecnas_bases() -> None:
    """An override of a documented ecnas method inherits its doc; a framework hook does not."""
    # CampaignMetrics(CampaignObserver): the base, imported from another module, documents
    # on_start; JobQueueExecutor(DaskExecutor) in the same module
    assert _inherits_doc("ecnas.integrations.prometheus.CampaignMetrics", "on_start")
    assert _bases("ecnas.campaign.executors.JobQueueExecutor") == [
        "ecnas.campaign.executors.DaskExecutor"]
    assert not _inherits_doc("ecnas.integrations.prometheus.CampaignMetrics", "collect")
    assert _bases("ecnas.integrations.lightning.EnergyCallback") == [
        "ecnas.integrations._run.RunResults"]
