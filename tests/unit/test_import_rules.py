"""The daemon's imports run one way (tests/unit/import_rules.py holds the table and the rules).

The daemon does not meet the target yet: KNOWN_VIOLATIONS lists every import that breaks a rule
today, with why it will go. The list is exact — a new violation fails, and so does an entry that
no longer occurs (delete it) — so it can only shrink, to empty at the end of issue #13.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.import_rules import (
    DAEMON,
    LAYERS,
    check_daemon,
    check_source,
    daemon_modules,
    placement,
)

# One line each: importer -> imported: why it will go (phase 2 of issue #13, docs/architecture.md).
KNOWN_TEXT = """
"""


def parse_known(text: str) -> dict[tuple[str, str], str]:
    known = {}
    for line in text.strip().splitlines():
        pair, _, why = line.partition(": ")
        importer, _, imported = pair.partition(" -> ")
        assert importer and imported and why.strip(), f"malformed KNOWN_TEXT line: {line!r}"
        known[(importer, imported)] = why
    return known


KNOWN_VIOLATIONS = parse_known(KNOWN_TEXT)


def test_every_daemon_module_is_placed_in_a_layer() -> None:
    unplaced = [m for m in daemon_modules() if placement(m) is None]
    assert unplaced == [], f"add these modules to LAYERS in import_rules.py: {unplaced}"


def test_the_daemon_breaks_no_import_rule_beyond_the_known_list() -> None:
    found: dict[tuple[str, str], set[str]] = {}
    for v in check_daemon():
        found.setdefault(v.pair, set()).add(f"line {v.line}: {', '.join(v.rules)}")
    new = {pair: sorted(where) for pair, where in found.items() if pair not in KNOWN_VIOLATIONS}
    gone = sorted(pair for pair in KNOWN_VIOLATIONS if pair not in found)
    # new: imports against the flow (rules in import_rules.py); gone: fixed, delete from the list
    assert {"new": new, "gone": gone} == {"new": {}, "gone": []}


# --- the checker catches what it must (synthetic sources; nothing is planted in the daemon) ---

KNOWN = set(daemon_modules())


def rules_for(module: str, source: str, *, is_package: bool = False) -> dict[str, tuple]:
    return {
        v.imported: v.rules
        for v in check_source(module, source, is_package=is_package, known=KNOWN)
    }


def test_a_planted_upward_import_inside_a_function_is_reported() -> None:
    source = "import json\n\ndef load():\n    from mlxd.router import Router\n    return Router\n"
    violations = check_source("mlxd.config", source, known=KNOWN)
    assert [(v.imported, v.rules, v.line) for v in violations] == [("mlxd.router", ("layer",), 4)]


@pytest.mark.parametrize(
    ("module", "source", "imported", "rules"),
    [
        # relative import, resolved against the importer's package
        ("mlxd.backends.openai", "from ..inline import clean\n", "mlxd.inline", ("layer",)),
        # `from package import submodule` is the submodule
        ("mlxd.config", "from mlxd import router\n", "mlxd.router", ("layer",)),
        # plain `import`, under TYPE_CHECKING
        (
            "mlxd.models.pool",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mlxd.app\n",
            "mlxd.app",
            ("layer",),
        ),
        # reaching into a package past its __init__
        ("mlxd.router", "from mlxd.models.pool import ModelPool\n", "mlxd.models.pool", ("face",)),
        # the server sees only app, protocol, transport
        ("mlxd.server", "from mlxd.config import Config\n", "mlxd.config", ("server",)),
        # the wire contract is for the wire side only
        ("mlxd.router", "from mlxd.protocol import ChatParams\n", "mlxd.protocol", ("wire",)),
        # a private name of another module
        ("mlxd.app", "from mlxd.router import _chain\n", "mlxd.router:_chain", ("private",)),
        # third-party libraries stay in their rooms
        ("mlxd.server", "import aiohttp\n", "aiohttp", ("external",)),
        ("mlxd.router", "import mlx.core as mx\n", "mlx", ("external",)),
        (
            "mlxd.backends.http",
            "from pygls.protocol import JsonRPCProtocol\n",
            "pygls",
            ("external",),
        ),
        # a module no one placed in LAYERS
        ("mlxd.config", "from mlxd.shared import Hub\n", "mlxd.shared", ("unplaced",)),
    ],
)
def test_each_rule_reports_its_kind_of_violation(
    module: str, source: str, imported: str, rules: tuple
) -> None:
    assert rules_for(module, source) == {imported: rules}


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("mlxd.router", "from mlxd.config import Config\n"),  # downward
        ("mlxd.router", "from mlxd.models import ModelPool\n"),  # through the face
        ("mlxd.models.pool", "from .loader import load_model\nfrom . import gguf\n"),  # own package
        ("mlxd.server", "from mlxd import __version__, protocol\nfrom mlxd.app import App\n"),
        ("mlxd.backends.http", "import aiohttp\n"),
        ("mlxd.inline", "from .engine import InlineEngine\n"),  # a package __init__
    ],
)
def test_imports_along_the_flow_are_not_reported(module: str, source: str) -> None:
    assert rules_for(module, source, is_package=module == "mlxd.inline") == {}


def test_layers_are_ordered_bottom_to_top_as_the_architecture_says() -> None:
    order = [
        "mlxd.protocol",
        "mlxd.config",
        "mlxd.models",
        "mlxd.prompts",
        "mlxd.backends",
        "mlxd.router",
        "mlxd.inline",
        "mlxd.app",
        "mlxd.server",
        "mlxd.cli",
    ]
    assert [LAYERS[m] for m in order] == sorted(LAYERS[m] for m in order)
    assert len({LAYERS[m] for m in order[1:]}) == len(order) - 1


def documented_layers() -> dict[str, int]:
    """The layer table of docs/architecture.md ("After: the layers"): module -> layer."""
    doc = (DAEMON.parent / "docs" / "architecture.md").read_text()
    table = doc.split("### After: the layers", 1)[1].split("\n\n", 2)[1]
    placed: dict[str, int] = {}
    for row in table.splitlines()[2:]:
        layer, modules = row.strip("|").split("|", 1)
        # each placed module is the first backticked name of a comma-separated entry
        for name in re.findall(r"(?:^|,)\s*`([\w./]+)`", modules):
            placed["mlxd" if name == "mlxd" else f"mlxd.{name.rstrip('/')}"] = int(layer)
    return placed


def test_the_documented_layer_table_places_every_module_as_the_rules_do() -> None:
    # The picture a reader learns the layers from; it had fallen behind LAYERS (audit, s6).
    assert documented_layers() == LAYERS
