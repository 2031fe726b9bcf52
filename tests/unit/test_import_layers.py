"""The package's import graph: no cycle, and no arrow from a lower layer to a higher one.

Every `import` counts, including those under `if TYPE_CHECKING:` and inside functions: a
type-only circle still ties the modules together for a reader. docs/architecture.md draws
these layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import ticketgate

ROOT = Path(ticketgate.__file__).parent

# Layer of each package or module (the longest matching prefix decides). A module may
# import its own layer or a lower one, never a higher one.
LAYERS: dict[str, int] = {
    # 0: leaves every layer may use
    "digits": 0,
    "envparse": 0,
    "background": 0,
    "proto": 0,
    "webhooks": 0,
    # 1: the domain: decisions, no I/O
    "waitingroom": 1,
    "booking": 1,
    # 2: adapters: storage, RPC, instrumentation, the reference services' implementation
    "queuestore": 2,
    "redisio": 2,
    "backends": 2,
    "database": 2,
    "accounts": 2,
    "services": 2,
    # 3: the edge's primitives (Request, error envelope, observer protocols), the request
    # guards, and the instruments that observe requests, Redis and RPCs
    "edge": 3,
    "middleware": 3,
    "observability": 3,
    # 4: the HTTP edge (routes, Gateway core, pages)
    "http": 4,
    # 5: composition roots and programs
    "config": 5,
    "app": 5,
    "cli": 5,
    "cli_output": 5,
    "admin_cli": 5,
    "services.cli": 5,
    "rehearsal": 5,
    "__main__": 5,
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "proto":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                    module = f"ticketgate.{module}" if module else "ticketgate"
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
            for target in targets:
                if not target.startswith("ticketgate."):
                    continue
                candidate = target.removeprefix("ticketgate.")
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    graph[name].add(candidate)
                    break
    return graph


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"ticketgate.{module} has no layer: add its package to LAYERS")


def _cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
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


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        if module:
            layer_of(module)


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = _imports(modules)
    assert _cycles(graph, sorted(modules)) == []


def test_no_import_goes_up_a_layer() -> None:
    modules = _modules()
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in sorted(_imports(modules).items())
        if source
        for target in sorted(targets)
        if target and layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_the_walker_sees_type_checking_imports() -> None:
    """The checks above are only as good as the walk: it must see a TYPE_CHECKING import."""
    graph = _imports(_modules())
    assert "waitingroom.model" in graph["waitingroom.service"]


# What the domain may import from outside the package: the standard library's computing
# modules and msgspec (the token format). No socket, file, database, Redis, gRPC, HTTP or
# metrics library: the domain reaches the world only through the protocols it declares.
DOMAIN_MAY_IMPORT = frozenset(
    {
        "__future__",
        "abc",
        "asyncio",
        "base64",
        "binascii",
        "collections",
        "contextlib",
        "dataclasses",
        "enum",
        "hashlib",
        "hmac",
        "logging",
        "math",
        "msgspec",
        "re",
        "secrets",
        "typing",
    }
)


def test_the_domain_imports_no_io_library() -> None:
    outside: list[str] = []
    for name, path in _modules().items():
        if not name or layer_of(name) != LAYERS["waitingroom"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots = [node.module.partition(".")[0]]
            else:
                continue
            outside += [
                f"{name} imports {root}"
                for root in roots
                if root != "ticketgate" and root not in DOMAIN_MAY_IMPORT
            ]
    assert outside == []
