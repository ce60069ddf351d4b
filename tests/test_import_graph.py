"""The package's import graph: no cycle, no upward arrow (run as a script it prints the graph).

Only module-level imports count (``if TYPE_CHECKING`` blocks and imports inside functions are
lazy and are left out): those are the ones that decide import order and what a module drags in.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "lmmrec_cli"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Layers, lowest first: a module may import its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "console", "config", "workspace", "metrics", "redact", "catalog"),
    ("data", "llm", "embeddings", "motivations", "models", "extractive", "tfidf_vectors"),
    ("plugins",),
    ("assembly", "evaluation", "plugin_setup", "runs"),
    ("train",),
    ("ablate", "explain", "report", "report_render", "report_plots", "tune"),
    ("cli", "__main__"),
]
# Readers of finished runs: they go through runs/evaluation, never the trainer or the drivers.
READERS = {"explain", "report", "report_render", "report_plots"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(path: Path) -> set[str]:
    """The lmmrec_cli modules ``path`` imports at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If) and not _is_type_checking(node):
            statements += node.body + node.orelse
        elif isinstance(node, ast.Try):
            statements += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE + ".")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:  # `from lmmrec_cli.cli import x_cmds` imports a submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (ROOT.parent / (sub.replace(".", "/") + ".py")).is_file() else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): module_imports(p) - {module_name(p)} for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return -1  # the package itself (__init__): below everything


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    arrows = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer(target) > layer(source):
                arrows.append(f"{source} -> {target}")
            top = source.split(".")[1] if "." in source else ""
            if top in READERS and target.split(".")[1] in ("train", "ablate"):
                arrows.append(f"{source} -> {target} (a reader of runs imports a driver)")
    return arrows


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if m != PACKAGE and layer(m) < 0] == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_no_upward_import():
    assert upward_arrows(import_graph()) == []


if __name__ == "__main__":
    graph = import_graph()
    for source, targets in sorted(graph.items()):
        short = sorted(t.removeprefix(PACKAGE + ".") for t in targets)
        print(f"{source.removeprefix(PACKAGE + '.') or PACKAGE} -> {', '.join(short) or '-'}")
    print("cycle:", " -> ".join(find_cycle(graph) or []) or "none")
    arrows = upward_arrows(graph)
    print("upward arrows:", len(arrows))
    for arrow in arrows:
        print("  ", arrow)
    unplaced = [m for m in graph if m != PACKAGE and layer(m) < 0]
    print("modules without a layer:", unplaced or "none")
    sys.exit(1 if arrows or unplaced or find_cycle(graph) else 0)
