"""Every `from mlxd.X import name` in the daemon names something that exists — function-level
imports included, which only run when their code path does (the shared daemon's session setup
imported `install_redaction` from `secrets` after it had moved to `log_redact`, and every
window's connection died; no unit test noticed)."""

import ast
import importlib
from pathlib import Path

import mlxd
from tests.python_ast import parse

ROOT = Path(mlxd.__file__).parent


def _imports():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        package = list(rel.parts[:-1])  # a module's package; an __init__'s is its own folder
        for node in ast.walk(parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "mlxd":
                module = node.module
            else:
                continue
            for alias in node.names:
                yield f"{rel}:{node.lineno}", module, alias.name


def test_every_name_imported_from_mlxd_exists():
    missing = []
    for where, module, name in _imports():
        mod = importlib.import_module(module)
        if name != "*" and not hasattr(mod, name):
            try:  # a submodule imported by name: `from . import taint`
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{where}: {module}.{name}")
    assert missing == []
