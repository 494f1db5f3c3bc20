"""Data flows one way: registry -> load -> evaluate -> record -> board/card/submit; nothing imports the CLI.

Every module of ``src/ikl_zoo`` belongs to a layer below; a module may import its own layer's package and any
lower layer, never a layer at its rank or above (so peers such as ``zoo`` and ``data`` stay independent).
Imports inside functions count too: a lazy import is still a dependency. A new module must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. Keys are module prefixes: the longest one naming a module decides its layer.
LAYERS: dict[str, int] = {
    # Shared by all: the version, errors, atomic writes, the paper, RobustBench's shipped tables.
    "ikl_zoo": 0,
    "ikl_zoo.errors": 0,
    "ikl_zoo.atomic": 0,
    "ikl_zoo.paper": 0,
    "ikl_zoo.reference": 0,
    "ikl_zoo._robustbench": 0,
    "ikl_zoo.threat": 0,
    # Registry and loading; the data loaders; the losses. Peers: none imports another.
    "ikl_zoo.zoo": 1,
    "ikl_zoo.data": 1,
    "ikl_zoo.losses": 1,
    "ikl_zoo.evaluate": 2,
    # Records, the board and its plot, read from evaluation results.
    "ikl_zoo.leaderboard": 3,
    # Model cards and submissions, built from records and the board.
    "ikl_zoo.cards": 4,
    # Workflows that end in a card: training, and convert/push.
    "ikl_zoo.train": 5,
    "ikl_zoo.publish": 5,
    "ikl_zoo.cli": 6,
}


def _layer_key(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in LAYERS:
            return key
    raise KeyError(module)


def _lazy_exports(package_init: Path) -> dict[str, str]:
    """The ``_LAZY`` name -> module map of a package whose ``__getattr__`` imports on first use."""
    for node in ast.parse(package_init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _module_name(path: Path) -> tuple[str, str]:
    """The dotted module name of ``path`` under ``SRC`` and the package its relative imports start from."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imported_modules(source: str, *, package: str, src: Path = SRC) -> set[str]:
    """The ikl_zoo modules ``source`` imports; a lazy package's names resolve to the module behind them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "ikl_zoo")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ikl_zoo":
                continue
            init = src.joinpath(*target.split("."), "__init__.py")
            lazy = _lazy_exports(init) if init.is_file() else {}
            for alias in node.names:
                if alias.name in lazy:
                    found.add(lazy[alias.name])
                elif _is_module(src, f"{target}.{alias.name}"):
                    found.add(f"{target}.{alias.name}")
                else:
                    found.add(target)
    return found


def _is_module(src: Path, module: str) -> bool:
    path = src.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def backward_imports(module: str, imports: set[str]) -> list[str]:
    """``module -> target`` for each import of a layer at ``module``'s rank or above (own package aside)."""
    own = _layer_key(module)
    problems = []
    for target in sorted(imports):
        key = _layer_key(target)
        if key != own and LAYERS[key] >= LAYERS[own]:
            problems.append(f"{module} -> {target}")
    return problems


MODULES = sorted(SRC.joinpath("ikl_zoo").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(SRC)))
def test_no_backward_import(path: Path) -> None:
    module, package = _module_name(path)
    problems = backward_imports(module, imported_modules(path.read_text(), package=package))
    assert not problems, "imports against the data flow (move the code down a layer): " + "; ".join(problems)


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for path in MODULES:
        try:
            _layer_key(_module_name(path)[0])
        except KeyError:
            unplaced.append(str(path.relative_to(SRC)))
    assert not unplaced, f"add to LAYERS: {unplaced}"


@pytest.mark.parametrize(
    ("module", "package", "source", "expected"),
    [
        ("ikl_zoo.zoo.hub", "ikl_zoo.zoo", "import ikl_zoo.cli", ["ikl_zoo.zoo.hub -> ikl_zoo.cli"]),
        (
            "ikl_zoo.zoo.publish_like",
            "ikl_zoo.zoo",
            "def f():\n    from ikl_zoo.cards import write_model_card\n",
            ["ikl_zoo.zoo.publish_like -> ikl_zoo.cards.model_card"],
        ),
        ("ikl_zoo.leaderboard.table", "ikl_zoo.leaderboard", "from ..cards import submission",
         ["ikl_zoo.leaderboard.table -> ikl_zoo.cards.submission"]),
        ("ikl_zoo.zoo.hub", "ikl_zoo.zoo", "from ikl_zoo import data", ["ikl_zoo.zoo.hub -> ikl_zoo.data"]),
        ("ikl_zoo.evaluate.run", "ikl_zoo.evaluate", "from ikl_zoo import load_model\nfrom . import run", []),
        ("ikl_zoo.cards.model_card", "ikl_zoo.cards", "from ikl_zoo import __version__\nimport torch", []),
    ],
)
def test_the_check_catches_backward_imports(
    module: str, package: str, source: str, expected: list[str]
) -> None:
    assert backward_imports(module, imported_modules(source, package=package)) == expected


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the ikl_zoo modules it imports, function-level imports included."""
    graph = {}
    for path in sorted(src.joinpath("ikl_zoo").rglob("*.py")):
        module, package = _module_name(path)
        graph[module] = imported_modules(path.read_text(), package=package, src=src) - {module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle, found by a depth-first walk: each as the list of modules that lead back to its start."""
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
