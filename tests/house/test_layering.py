"""The house's one-way layering: realtime/ (the instrument) imports nothing from models/ (the lab), and no two
project modules import each other, directly or around a circle. Read from the sources' syntax trees, every
import counted (also those inside functions), so a lazy import cannot hide a back edge."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("realtime", "models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    mods = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    mods["run_live"] = ROOT / "run_live.py"
    return mods


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules that ``path`` (module ``name``) imports: ``from pkg import mod`` counts as ``pkg.mod``
    when that is a module, else as ``pkg``."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # a name inside a module: the module itself
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    return {m: imported(p, m, known) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_instrument_never_imports_the_lab():
    """realtime/ and the CLI (run_live.py): playing needs no lab code."""
    back = sorted(f"{m} -> {t}" for m, ts in graph().items() if m.startswith(("realtime", "run_live")) for t in ts
                  if t.startswith("models"))
    assert back == []


def test_no_import_cycle():
    assert cycles(graph()) == []


@pytest.mark.parametrize("edges, expect", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_circles(edges, expect):
    assert cycles(edges) == expect


def test_a_back_edge_would_be_seen(tmp_path):
    """The walker reads a lazy import inside a function as an edge (so the real test can fail)."""
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from models.wavenet import WaveNet\n    from . import y\n")
    assert imported(p, "realtime.x", {"models.wavenet", "realtime.y", "realtime.x"}) == {"models.wavenet",
                                                                                     "realtime.y"}
