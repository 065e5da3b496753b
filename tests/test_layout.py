"""The package's layers, read from the source: no import cycles, and each layer imports only what
ARCHITECTURE.md says it may (imports under `if TYPE_CHECKING:` are for types only and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sio_push"

# layer -> the layers it may import at run time (itself always)
ALLOWED = {
    "transport": {"codec", "errors", "limits"},
    "shims": {"transport", "logs", "codec", "errors", "limits"},
    "engines": {"presence", "codec", "errors", "tasks", "config", "limits"},
    "sio": {"engines", "shims", "transport", "auth", "rooms", "presence", "metrics", "codec", "errors", "limits"}
    | {"logs", "config", "tasks", "keys"},
    "http": {"engines", "keys", "rooms", "codec", "errors", "metrics", "config", "presence", "limits", "tasks"}
    | {"__init__"},
    "phoenix": {"transport", "sio", "engines", "auth", "rooms", "presence", "limits", "logs", "codec", "errors"}
    | {"config", "metrics", "tasks"},
    "presence": set(),
    "codec": set(),
    "errors": set(),
    "limits": set(),
    "tasks": {"errors"},
    "keys": set(),
    "config": {"errors"},
    "rooms": set(),
    "auth": {"config", "errors", "rooms"},
    "logs": set(),
    "metrics": set(),
    "webhooks": {"engines", "config", "errors", "metrics", "tasks"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path) -> set[str]:
    """The sio_push modules `path` imports when it runs."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("sio_push"):
                    found.add(target)
                    for alias in node.names:
                        found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("sio_push"))
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in _runtime_imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_imports_itself_back_through_others():
    graph = _graph()
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            walk(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


def test_each_layer_imports_only_what_the_architecture_allows():
    problems = []
    for module, targets in _graph().items():
        layer = _layer(module)
        if layer not in ALLOWED:
            continue  # the wiring (app, cli, demo) may import anything
        for target in targets:
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                problems.append(f"{module} imports {target}")
    assert not problems, "\n".join(problems)
