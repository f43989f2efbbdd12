"""Every pygls private attribute mlxd uses is in ONE small adapter class (issue #13):
`AdaptedProtocol` in transport/pygls_adapter.py. A pygls upgrade that renames one breaks there,
not in the server, the dispatcher, the CLI or the synced documents (documents.py uses pygls'
public API only)."""

from __future__ import annotations

import ast

from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import TextDocument, Workspace

from tests.python_ast import parse
from tests.unit.import_rules import daemon_modules

ADAPTER = ("mlxd.transport.pygls_adapter", "AdaptedProtocol")


def pygls_private_names() -> set[str]:
    """Private (single-underscore) names of pygls' server, protocol, workspace and documents:
    class attributes and methods, and the instance attributes their constructors set."""
    server = LanguageServer("probe", "0")
    document = TextDocument("file:///probe.py", "x = 1\n")
    names: set[str] = set()
    workspace = Workspace(None)
    objects = (server, server.protocol, LanguageServer, LanguageServerProtocol, workspace, document)
    for obj in objects:
        names.update(dir(obj))
        names.update(getattr(obj, "__dict__", {}))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_uses(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every `x._name` attribute access and `def _name` method (an override) in
    `source`; module-level functions are mlxd's own."""
    return _private_uses(parse(source), names)


def _private_uses(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ClassDef):
            found += [
                (f.lineno, f.name)
                for f in node.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.name in names
            ]
    return found


def test_pygls_private_attributes_are_used_only_in_the_adapter() -> None:
    names = pygls_private_names()
    assert {"_send_data", "_request_futures", "_shutdown", "_server", "_send_response"} <= names
    assert {"_workspace", "_source", "_apply_incremental_change", "_create_text_document"} <= names
    assert {"_text_documents", "_cell_in_notebook", "_sync_kind"} <= names
    outside = {
        module: uses
        for module, path in daemon_modules().items()
        if (uses := uses_outside_the_adapter(module, path.read_text(), names))
    }
    assert outside == {}
    adapter = daemon_modules()[ADAPTER[0]].read_text()
    assert len(private_uses(adapter, names)) >= 5  # the adapter is where they are


def uses_outside_the_adapter(module: str, source: str, names: set[str]) -> list[tuple[int, str]]:
    """Private uses in `source` outside the adapter class (all of them, in any other module)."""
    tree = parse(source)
    if module == ADAPTER[0]:
        inside = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == ADAPTER[1]]
        tree = ast.Module([n for n in tree.body if n not in inside], [])
    return _private_uses(tree, names)


def test_the_check_sees_a_private_use_beside_the_adapter_class() -> None:
    names = pygls_private_names()
    source = (
        "class AdaptedProtocol(Base):\n"
        "    def pending(self):\n"
        "        return self._request_futures\n"
        "class Document(TextDocument):\n"
        "    def _apply_incremental_change(self, change):\n"
        "        self._source = change.text\n"
    )
    assert sorted(uses_outside_the_adapter(ADAPTER[0], source, names)) == [
        (5, "_apply_incremental_change"),
        (6, "_source"),
    ]
    assert len(uses_outside_the_adapter("mlxd.server.lsp", source, names)) == 3


def test_the_check_sees_a_planted_private_access_and_override() -> None:
    names = pygls_private_names()
    source = (
        "class P(Base):\n"
        "    def _send_response(self, *a):\n"
        "        return len(self.protocol._request_futures)\n"
    )
    assert sorted(private_uses(source, names)) == [(2, "_send_response"), (3, "_request_futures")]
