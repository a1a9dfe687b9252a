"""The house plan holds: no import cycle, and dependencies point one way (jobs -> infrastructure).

The imports are read with `ast`, every one of them: module level, inside functions (lazy imports)
and under `if TYPE_CHECKING:`, since a cycle of type-only imports still ties the modules together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.common import ROOT

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


# -- the test scaffold: helpers live in tests/support, fixtures are registered once ----------------

TESTS = ROOT / "tests"


def _names_a_test_module(name: str) -> bool:
    """tests.conftest, tests.test_x (and the bare `conftest` / `test_x` that rootdir imports allow)."""
    parts = name.split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return len(parts) >= 1 and (parts[0] == "conftest" or parts[0].startswith("test_"))


def imports_of_test_modules(source: str) -> list[str]:
    """What `source` imports of tests.conftest or of a test module, in any form and anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            # relative imports in tests/ name its modules: `from .conftest import ROOT`, `from . import test_x`
            base = ".".join(filter(None, ["tests", node.module])) if node.level else node.module
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found += [n for n in names if _names_a_test_module(n)]
    return sorted(set(found))


def test_no_module_under_tests_imports_conftest_or_a_test_module():
    bad = {
        str(path.relative_to(ROOT)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := imports_of_test_modules(path.read_text()))
    }
    assert bad == {}, "import shared helpers from tests.support instead"


def test_the_import_check_finds_each_form():
    assert imports_of_test_modules("from tests.conftest import ROOT") == [
        "tests.conftest",
        "tests.conftest.ROOT",
    ]
    assert imports_of_test_modules("import tests.test_daemon") == ["tests.test_daemon"]
    assert imports_of_test_modules("from tests import test_metrics") == ["tests.test_metrics"]
    assert imports_of_test_modules("def f():\n    from tests.test_daemon import _stop") == [
        "tests.test_daemon",
        "tests.test_daemon._stop",
    ]
    assert imports_of_test_modules("from .conftest import json_out") == [
        "tests.conftest",
        "tests.conftest.json_out",
    ]
    assert imports_of_test_modules("from conftest import ROOT") == ["conftest", "conftest.ROOT"]
    assert imports_of_test_modules("from tests.support.common import ROOT\nimport json") == []


def test_helpers_live_in_support_and_fixtures_are_registered_once():
    stray = [
        p.name
        for p in TESTS.glob("*.py")
        if p.name not in ("__init__.py", "conftest.py") and not p.name.startswith("test_")
    ]
    assert stray == [], "put helper modules under tests/support/"
    per_module = [
        str(p.relative_to(ROOT))
        for p in TESTS.rglob("*.py")
        if p != TESTS / "conftest.py"
        and any(
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "pytest_plugins" for t in node.targets)
            for node in ast.parse(p.read_text()).body
        )
    ]
    assert per_module == [], "register fixture modules in tests/conftest.py's pytest_plugins"
