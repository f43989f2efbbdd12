"""No daemon module over 350 lines, no daemon function over 60 lines (issue #13; STYLE.md).

Small modules and short functions are what keep the layers readable. KNOWN_LONG lists what is
over a limit today, each with its size when listed; the list is exact — a new offender fails,
and so does an entry that is back under its limit (delete it) or has grown — so it can only
shrink.
"""

from __future__ import annotations

import ast

from tests.python_ast import parse
from tests.unit.import_rules import daemon_modules

MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60

# "module" or "module:qualified.function" -> its size in lines when it was listed.
KNOWN_LONG: dict[str, int] = {}


def function_lengths(source: str) -> dict[str, int]:
    """Lines of every function and method in `source` (decorators and docstring included),
    by qualified name (`Class.method`, `outer.inner`)."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    assert child.end_lineno is not None
                    lengths[name] = child.end_lineno - first + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(parse(source), "")
    return lengths


def sizes_over_limits() -> dict[str, int]:
    """Every daemon module and function over its limit, with its size."""
    over: dict[str, int] = {}
    for module, path in daemon_modules().items():
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            over[module] = lines
        for name, length in function_lengths(source).items():
            if length > MAX_FUNCTION_LINES:
                over[f"{module}:{name}"] = length
    return over


def test_no_daemon_module_or_function_is_over_its_limit_beyond_the_known_list() -> None:
    over = sizes_over_limits()
    new = {name: n for name, n in over.items() if name not in KNOWN_LONG}
    grown = {name: n for name, n in over.items() if n > KNOWN_LONG.get(name, n)}
    gone = sorted(name for name in KNOWN_LONG if name not in over)
    # new: split it; grown: a listed offender got longer; gone: under its limit, delete the entry
    assert {"new": new, "grown": grown, "gone": gone} == {"new": {}, "grown": {}, "gone": []}


def test_the_daemon_modules_are_found() -> None:
    modules = daemon_modules()
    assert "mlxd.router.core" in modules and len(modules) > 50


def test_function_lengths_see_methods_nested_functions_and_decorators() -> None:
    source = (
        "class Router:\n"
        "    @property\n"
        "    async def run(self):\n"
        + "".join(f"        x{i} = {i}\n" for i in range(60))
        + "        def inner():\n"
        "            return 1\n"
        "        return inner\n"
        "\n"
        "def short():\n"
        "    return 2\n"
    )
    lengths = function_lengths(source)
    assert lengths == {"Router.run": 65, "Router.run.inner": 2, "short": 2}
    assert {k for k, n in lengths.items() if n > MAX_FUNCTION_LINES} == {"Router.run"}
