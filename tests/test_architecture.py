"""The import graph of docs/architecture.md: bottom up, no import running back up, lazy
imports (inside functions) included, and no cycle between the rooms of one layer."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecnas"

#: bottom up; a module may import its own layer or lower ones, never a higher one
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "_version", "outputs"}),  # foundations: no ecnas imports of their own
    frozenset({"meters"}),  # device readers
    frozenset({"profiles"}),  # match and calibrate
    frozenset({"monitor"}),  # windows over readers, calibrated by profiles; measure()
    frozenset({"space", "tables"}),
    frozenset({"trainer", "surrogate", "benchmark"}),
    frozenset({"integrations", "demo", "validate"}),
    frozenset({"cli", "__main__"}),
)
LAYER_OF = {room: i for i, layer in enumerate(LAYERS) for room in layer}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ecnas" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute or relative ecnas import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = ["ecnas", *path.relative_to(PACKAGE).with_suffix("").parts]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = me[:-node.level]  # pkg/__init__ or pkg/mod, level 1: pkg
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
    return [(line, m) for line, m in out if m == "ecnas" or m.startswith("ecnas.")]


def graph() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> where, for every import that crosses rooms."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        src = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" \
            else None
        if src is None:
            continue  # ecnas/__init__.py: the facade re-exports the public API lazily
        for line, module in _imports(path):
            dst = _room(module)
            if dst is not None and dst != src:
                edges[(src, dst)].append(f"ecnas/{rel}:{line} imports {module}")
    return edges


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


def test_foundations_import_only_the_errors() -> None:
    found = [where for (src, dst), sites in graph().items()
             if LAYER_OF.get(src) == 0 and (dst != "errors" or src == "errors")
             for where in sites]
    assert found == []
