"""The layers, read from the code's own imports (every import, function-level ones included, as ast sees
them): lrexp has no import cycle, and the report side (report, verdict, compare, sequential, prediction...)
never reaches the runner (training, batching, jobs, the entry point) nor what builds torch objects."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = {"lrexp.train", "lrexp.batched", "lrexp.jobs", "lrexp.app", "lrexp.build", "lrexp.checkpoint", "lrexp.drivers", "lrexp.schedule"}


def import_graph() -> dict[str, set[str]]:
    """module -> the lrexp modules it imports anywhere in its source."""
    files = {}
    for path in (ROOT / "lrexp").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([node.module] if node.module else []))
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_lrexp_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_finder_sees_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    graph = import_graph()
    assert "lrexp.sequential" in graph["lrexp.report"] and "lrexp.verdict" in graph["lrexp.sequential"]  # a function-level import


def test_the_report_side_never_reaches_the_runner():
    graph = import_graph()
    readers = ("report", "verdict", "runs", "compare", "tables", "bands", "sequential", "prediction", "wandb_report", "cooldowns", "budget")
    for reader in (f"lrexp.{name}" for name in readers):
        assert not reaches(graph, reader) & RUNNER, (reader, sorted(reaches(graph, reader) & RUNNER))


def test_the_schemas_and_the_task_package_load_without_torch():
    """Every start-up (``--help``, a launcher's worker) imports lrexp.config, which loads every room's
    schemas; they and the ``lrexp.tasks`` package import no torch (its names come from tasks/base.py on first use)."""
    import subprocess
    import sys

    code = (
        "import sys, lrexp.config, lrexp.tasks, lrexp.tasks.schemas, lrexp.loggers.schemas; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "from lrexp.tasks import Task; assert Task.__module__ == 'lrexp.tasks.base'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
