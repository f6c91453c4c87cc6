"""The shape of the code: which package may import which, and no import cycles.

Every module of bot/, flows/ and storage/ is parsed (not imported); every import
counts, also those under `if TYPE_CHECKING:` and inside functions, since a cycle
hidden from the interpreter is still a cycle in the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "flows", "storage")

Graph = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Rule:
    """Modules under `importer` must not import anything under one of `forbidden`."""

    importer: str
    forbidden: tuple[str, ...]
    why: str


ADAPTERS_MUST_NOT_IMPORT = (
    "storage", "flows", "bot.app", "bot.config", "bot.service", "bot.runner", "bot.demo",
    "bot.cli", "bot.admin", "bot.core.orchestrator", "bot.core.delivery", "bot.core.handoff",
    "bot.core.locks", "bot.core.settings", "bot.core.hours",
)  # fmt: skip

RULES = (
    Rule("flows", ("bot", "storage"), "flows/ is pure: no I/O, no database, no channel"),
    Rule("storage", ("bot",), "storage may use flows' types, never the bot"),
    Rule(
        "bot.core",
        ("bot.config", "bot.cli", "bot.admin", "bot.channels"),
        "the core is handed its settings and speaks to channels only through bot.core.types",
    ),
    Rule(
        "bot.channels",
        ADAPTERS_MUST_NOT_IMPORT,
        "an adapter speaks to the core only through bot.core.types; the rest is passed in",
    ),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported(importer: str, path: Path, tree: ast.AST) -> Iterable[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, path.name == "__init__.py", node)
            yield module
            # `from storage import queue` imports the module storage.queue
            yield from (f"{module}.{alias.name}" for alias in node.names)


def module_graph(root: Path, packages: Iterable[str]) -> dict[str, frozenset[str]]:
    """Each module of `packages` under `root` and the modules of those packages it imports."""
    files = {
        _module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for name in _imported(module, path, tree):
            # `from bot.core.types import Reply` names bot.core.types.Reply: the module is the
            # longest known prefix. Package __init__ files are empty and not counted.
            known = name
            while known and known not in files:
                known = known.rpartition(".")[0]
            if known and known != module and files[known].name != "__init__.py":
                targets.add(known)
        graph[module] = frozenset(targets)
    return graph


def find_cycle(graph: Graph) -> list[str]:
    """One import cycle as a path that ends where it starts, or [] when there is none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str]:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return []

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return []


def broken_rules(graph: Graph, rules: Iterable[Rule]) -> list[str]:
    return [
        f"{module} imports {target}: {rule.why}"
        for rule in rules
        for module, targets in sorted(graph.items())
        if _within(module, rule.importer)
        for target in sorted(targets)
        if any(_within(target, forbidden) for forbidden in rule.forbidden)
    ]


@pytest.fixture(scope="module")
def graph() -> dict[str, frozenset[str]]:
    return module_graph(ROOT, PACKAGES)


def test_every_package_is_read(graph: Graph) -> None:
    assert {"bot.core.orchestrator", "flows.engine", "storage.keyring"} <= set(graph)
    assert {"flows.state", "storage.keyring"} <= graph["storage.repository"]


def test_there_is_no_import_cycle(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert cycle == [], "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.importer)
def test_imports_follow_the_rule(graph: Graph, rule: Rule) -> None:
    assert broken_rules(graph, [rule]) == []


def test_the_check_sees_hidden_cycles_and_forbidden_imports(tmp_path: Path) -> None:
    """The checks themselves can fail: a cycle behind TYPE_CHECKING, a relative import."""
    files = {
        "app/__init__.py": "",
        "app/core/__init__.py": "",
        "app/core/a.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from app.core.b import B\n",
        "app/core/b.py": "from . import c\n",
        "app/core/c.py": "def late():\n    import app.core.a\n    from app import config\n",
        "app/config.py": "import json\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = module_graph(tmp_path, ["app"])
    assert graph["app.core.c"] == {"app.core.a", "app.config"}
    assert find_cycle(graph) == ["app.core.a", "app.core.b", "app.core.c", "app.core.a"]
    assert broken_rules(graph, [Rule("app.core", ("app.config",), "no config")]) == [
        "app.core.c imports app.config: no config"
    ]
    assert find_cycle({"x": frozenset({"y"}), "y": frozenset()}) == []
