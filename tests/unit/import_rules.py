"""The daemon's import rules as data, and a checker that reads every import with `ast`.

Bottom to top (docs/architecture.md, /work/shared/design/ARCHITECTURE.md): a module may import a
module of a strictly lower layer, or any module of its own package. Three more rules:

- **face**: a module outside a package reaches the package through its `__init__` only
  (`from mlxd.models import ModelPool`, never `from mlxd.models.pool import ModelPool`);
- **server**: `server` sees only `app`, `protocol`, `transport` (its pygls adapter) and the
  package root (`__version__`);
- **wire**: `protocol` (the wire contract) is read only by the wire side: server, transport,
  cli, client — the server owns wire <-> domain conversion both ways;
- **external**: pygls/lsprotocol only in the LSP layer, aiohttp only in backends, mlx/mlx_lm only
  in models, blas and cli (`doctor`).

Every import counts: module level, inside functions, under `if TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.python_ast import parse

ROOT = "mlxd"
DAEMON = Path(__file__).resolve().parents[2] / "daemon"

# Layer of each module or package (a package entry covers all its modules). Names of the target
# that do not exist yet (prompts) are placed already, so phase 2 only moves code.
LAYERS: dict[str, int] = {
    # 0: stands alone, imports nothing of mlxd but the package root
    "mlxd": 0,  # the package root: __version__ only
    "mlxd.types": 0,  # Request, Message, Delta, Done, Event, Backend, Attempt, Outcome
    "mlxd.host": 0,  # PATH's absolute entries and the user's cache dir (safe in any cwd)
    "mlxd.uris": 0,  # one normal form of a document URI; the paths an exclude glob sees
    "mlxd.frames": 0,  # LSP framing rules and an incremental splitter (stdlib only)
    "mlxd.credentials": 0,  # which config values are secrets (headers, URL user-info, query)
    "mlxd.wording": 0,  # the words each editor uses for a setting and a command
    "mlxd.stream_redact": 0,  # secrets kept out of generated text, split across chunks too
    "mlxd.log_redact": 0,  # secrets kept out of every log record (filter + record factory)
    "mlxd.scrub": 0,  # keys out of what a provider is sent (every KeyStore of the process)
    # 1-2: the error tree (names Attempt), then the wire contract (words errors as it does)
    "mlxd.errors": 1,  # the error tree the router acts on; msgspec error wording
    "mlxd.gemv_forward": 1,  # builds the few-row product interposer preloaded before OpenBLAS
    "mlxd.blas": 2,  # which BLAS mlx loaded; re-exec with OpenBLAS (and gemv_forward)
    "mlxd.runtime": 1,  # the shared daemon's per-user dir, socket, lock (names the version)
    "mlxd.protocol": 2,  # the wire contract
    "mlxd.taint_file": 2,  # rule 1's memory of taint.py, kept per user in the runtime dir
    # 3-4: settings and the secrets they name
    "mlxd.config": 3,
    "mlxd.secrets": 4,  # key sources and redaction; reads BackendConfig
    "mlxd.trust": 4,  # the workspace layer may only tighten the user's config
    # 5-10: the engine room
    "mlxd.models": 5,
    "mlxd.prompts": 6,  # pure text: cursor context, trimming, snippets, FIM templates
    "mlxd.backends": 7,
    "mlxd.router": 8,
    "mlxd.taint": 8,  # conversations that carried an excluded document stay local
    "mlxd.inline": 9,
    "mlxd.app": 10,
    # 11-14: the wire side
    "mlxd.transport": 11,  # framing, dispatch rules, the pygls adapters (protocol, documents)
    "mlxd.server": 12,
    "mlxd.client": 12,  # a daemon client over stdio (demo, chat, bench); imports no mlxd code
    "mlxd.cli": 13,
    "mlxd.__main__": 14,
}

PACKAGES = {
    "mlxd.models",
    "mlxd.prompts",
    "mlxd.backends",
    "mlxd.inline",
    "mlxd.transport",
    "mlxd.server",
    "mlxd.router",
    "mlxd.app",
    "mlxd.cli",
}
SERVER_SEES = {"mlxd", "mlxd.app", "mlxd.protocol", "mlxd.transport"}
WIRE_SIDE = {"mlxd.protocol", "mlxd.transport", "mlxd.server", "mlxd.cli", "mlxd.client"}
EXTERNAL = {
    "pygls": {"mlxd.transport", "mlxd.server", "mlxd.cli"},
    "lsprotocol": {"mlxd.transport", "mlxd.server", "mlxd.cli"},
    "aiohttp": {"mlxd.backends"},
    "mlx": {"mlxd.models", "mlxd.blas", "mlxd.cli"},
    "mlx_lm": {"mlxd.models", "mlxd.blas", "mlxd.cli"},
}


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    rules: tuple[str, ...]  # sorted names of the broken rules: face, layer, server, wire, ...
    line: int

    @property
    def pair(self) -> tuple[str, str]:
        return (self.importer, self.imported)


def placement(module: str) -> str | None:
    """The LAYERS key covering `module` (longest prefix), or None if it is placed nowhere."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS and (n > 1 or module == ROOT):
            return key
    return None


def package_of(module: str) -> str | None:
    """The subpackage (`mlxd.models`, ...) holding `module`, or None for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and ".".join(parts[:2]) in PACKAGES else None


def daemon_modules(daemon: Path = DAEMON) -> dict[str, Path]:
    """Every module of the daemon: dotted name -> file."""
    found = {}
    for path in sorted((daemon / ROOT).rglob("*.py")):
        parts = path.relative_to(daemon).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(
    module: str, source: str, is_package: bool, known: set[str]
) -> list[tuple[str, int]]:
    """(imported module, line) for every import in `source`, anywhere in the tree.

    `from P import name` counts as importing `P.name` when that is a module in `known`, else `P`.
    Non-mlxd imports are returned under their top-level name (`aiohttp`, `mlx`).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                found.append(
                    (name if name.split(".")[0] == ROOT else name.split(".")[0], node.lineno)
                )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                found.append((target.split(".")[0], node.lineno))
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((f"{target}:{alias.name}", node.lineno))
    return found


def rules_broken(importer: str, imported: str) -> tuple[str, ...]:
    """The rules the import `importer -> imported` breaks (empty when it is allowed)."""
    broken: set[str] = set()
    if ":" in imported:  # a private name taken from another module
        target = imported.split(":")[0]
        same_home = package_of(target) is not None and package_of(target) == package_of(importer)
        return () if same_home or target == importer else ("private",)
    if imported.split(".")[0] != ROOT:
        allowed = EXTERNAL.get(imported)
        home = placement(importer)
        return ("external",) if allowed is not None and home not in allowed else ()
    own_pkg, their_pkg = package_of(importer), package_of(imported)
    if own_pkg is not None and own_pkg == their_pkg:
        return ()  # inside one package anything goes
    low, high = placement(imported), placement(importer)
    if low is None or high is None:
        return ("unplaced",)
    if LAYERS[low] >= LAYERS[high]:
        broken.add("layer")
    if their_pkg is not None and imported != their_pkg:
        broken.add("face")
    if high == "mlxd.server" and imported not in SERVER_SEES:
        broken.add("server")
    if imported == "mlxd.protocol" and high not in WIRE_SIDE:
        broken.add("wire")
    return tuple(sorted(broken))


def check_source(
    module: str, source: str, *, is_package: bool = False, known: set[str] | None = None
) -> list[Violation]:
    """Every import of one module's source that breaks a rule."""
    known = set(daemon_modules()) if known is None else known
    out = []
    for imported, line in imports_of(module, source, is_package, known):
        rules = rules_broken(module, imported)
        if rules:
            out.append(Violation(module, imported, rules, line))
    return out


def check_daemon(daemon: Path = DAEMON) -> list[Violation]:
    """Every rule-breaking import in the daemon, in file order."""
    modules = daemon_modules(daemon)
    known = set(modules)
    out = []
    for name, path in modules.items():
        out += check_source(
            name, path.read_text(), is_package=path.name == "__init__.py", known=known
        )
    return out
