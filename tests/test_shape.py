"""The code stays easy to read: short functions, short parameter lists, modules of one screenful of topics.

Limits: a function of at most 60 lines; at most 10 parameters except a click command (its options are its
parameters); a module of at most 400 lines; a budget for the lines of Python in ``src/`` (templates aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(SRC.joinpath("ikl_zoo").rglob("*.py"))
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 10
MAX_MODULE_LINES = 400
MAX_SRC_LINES = 7_000
"""All of src/: a feature makes room by simplifying; lower it as code goes, never raise it for growth."""


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_click_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("command" in ast.unparse(decorator) for decorator in function.decorator_list)


def _parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    return len([name for name in names if name not in ("self", "cls")])


def shape_problems(source: str, name: str) -> list[str]:
    """Each function of ``source`` too long or taking too many parameters, and the module if too long."""
    problems = []
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        problems.append(f"{name}: {lines} lines > {MAX_MODULE_LINES}")
    for function in _functions(ast.parse(source)):
        length = function.end_lineno - function.lineno + 1
        if length > MAX_FUNCTION_LINES:
            problems.append(f"{name}:{function.name}: {length} lines > {MAX_FUNCTION_LINES}")
        count = _parameter_count(function)
        if count > MAX_PARAMETERS and not _is_click_command(function):
            problems.append(f"{name}:{function.name}: {count} parameters > {MAX_PARAMETERS}")
    return problems


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(SRC)))
def test_module_shape(path: Path) -> None:
    problems = shape_problems(path.read_text(), str(path.relative_to(SRC)))
    assert not problems, "; ".join(problems)


def test_total_lines() -> None:
    total = sum(path.read_text().count("\n") for path in MODULES)
    assert total <= MAX_SRC_LINES, f"{total} lines of Python in src/ > {MAX_SRC_LINES}"


def test_the_check_catches_long_functions_and_lists() -> None:
    long_body = "def f(a, b, c, d, e, f, g, h, i, j, k):\n" + "    x = 1\n" * 60
    problems = shape_problems(long_body, "m.py")
    assert problems == ["m.py:f: 61 lines > 60", "m.py:f: 11 parameters > 10"]
    command = "@main.command()\ndef f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n"
    assert shape_problems(command, "m.py") == []
