"""Every pygls private attribute mlxd uses is in the transport's two pygls adapters (issue #13):
pygls_adapter.py (the protocol: AdaptedProtocol) and documents.py (LSP's line model for synced
documents). A pygls upgrade that renames one breaks there, not in the server, the dispatcher or
the CLI."""

from __future__ import annotations

import ast

from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import TextDocument, Workspace

from tests.unit.import_rules import daemon_modules

ADAPTERS = {"mlxd.transport.pygls_adapter", "mlxd.transport.documents"}


def pygls_private_names() -> set[str]:
    """Private (single-underscore) names of pygls' server, protocol, workspace and documents:
    class attributes and methods, and the instance attributes their constructors set."""
    server = LanguageServer("probe", "0")
    document = TextDocument("file:///probe.py", "x = 1\n")
    names: set[str] = set()
    objects = (server, server.protocol, LanguageServer, LanguageServerProtocol, Workspace, document)
    for obj in objects:
        names.update(dir(obj))
        names.update(getattr(obj, "__dict__", {}))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_uses(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every `x._name` attribute access and `def _name` method (an override) in
    `source`; module-level functions are mlxd's own."""
    found = []
    for node in ast.walk(ast.parse(source)):
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
    outside = {
        module: uses
        for module, path in daemon_modules().items()
        if module not in ADAPTERS and (uses := private_uses(path.read_text(), names))
    }
    assert outside == {}


def test_the_check_sees_a_planted_private_access_and_override() -> None:
    names = pygls_private_names()
    source = (
        "class P(Base):\n"
        "    def _send_response(self, *a):\n"
        "        return len(self.protocol._request_futures)\n"
    )
    assert sorted(private_uses(source, names)) == [(2, "_send_response"), (3, "_request_futures")]
