"""The house plan holds: no import cycle, and dependencies point one way (jobs -> infrastructure).

The imports are read with `ast`, every one of them: module level, inside functions (lazy imports)
and under `if TYPE_CHECKING:`, since a cycle of type-only imports still ties the modules together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("redis_maint", "jobs", "config")
# The composition roots: they wire jobs, settings and infrastructure together.
COMPOSERS = ("redis_maint.cli", "redis_maint.run")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that `path` imports, resolved to the module (not the imported attribute)."""

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {resolve(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out |= {resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names}
    return out - {None}


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        # A package's __init__ is imported with its modules: that edge is not a dependency.
        edges[name] = {m for m in imports(path, known) if m != name and not name.startswith(m + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_infrastructure_never_imports_jobs_or_the_settings_schema():
    bad = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.startswith("redis_maint.") and not module.startswith(COMPOSERS)
        for target in targets
        if target == "jobs" or target.startswith("jobs.") or target == "config.schema"
    ]
    assert bad == []


def test_config_imports_no_job():
    bad = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.startswith("config")
        for target in targets
        if target.startswith("jobs")
    ]
    assert bad == []


def defines_a_job(path: Path) -> bool:
    """A job module binds `JOB` at its top level; shared helpers in jobs/ do not."""
    return any(
        isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "JOB" for t in node.targets)
        for node in ast.parse(path.read_text()).body
    )


def test_no_job_imports_another_job():
    known = modules()
    jobs = {name for name, path in known.items() if name.startswith("jobs.") and defines_a_job(path)}
    assert {"jobs.backup", "jobs.session_sweep", "jobs.session_delete"} <= jobs
    bad = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module in jobs
        for target in targets
        if target in jobs
    ]
    assert bad == []
