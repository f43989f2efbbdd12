"""The VS Code extension's editors/vscode/src/protocol.ts says what daemon/mlxd/protocol.py says.

protocol.ts is read with a small regex reader (flat `export interface` blocks, `export type`
aliases, the `Methods` table); protocol.py through msgspec's own type inspection. Compared:
method names; per Struct, the wire field names; `?` exactly on the fields that may be absent
(params with a default; results the daemon omits); `| null` exactly on the fields the daemon may
send as null; and the field types (string, number, boolean, literals, lists, records, structs).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest

from mlxd import protocol as P

TS_FILE = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "src" / "protocol.ts"

# Python Struct -> its TypeScript interface.
MIRRORS: dict[type[msgspec.Struct], str] = {
    P.ChatMessage: "ChatMessage",
    P.TextDocumentRef: "TextDocumentRef",
    P.Position: "Position",
    P.CursorParams: "CursorParams",
    P.CopyParams: "CopyParams",
    P.ChatParams: "ChatParams",
    P.CompleteParams: "CompleteParams",
    P.SetApiKeyParams: "SetApiKeyParams",
    P.Attempt: "Attempt",
    P.Usage: "Usage",
    P.Timings: "Timings",
    P.GenerationResult: "ChatResult",
    P.ModelInfo: "ModelInfo",
    P.ModelsResult: "ModelsResult",
    P.Status: "StatusParams",
}
# Structs the extension has no use for, and why.
NOT_MIRRORED = {
    P.EmptyParams: "params of mlxd/models and mlxd/stats: the extension sends none",
}


# --- reading protocol.ts ------------------------------------------------------------------


class TsContract:
    def __init__(self, text: str) -> None:
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        self.aliases = dict(re.findall(r"export type (\w+)\s*=\s*([^;]+);", text))
        self.interfaces: dict[str, dict[str, tuple[bool, str]]] = {}
        for name, body in re.findall(r"export interface (\w+)\s*\{(.*?)\n\}", text, flags=re.S):
            fields = {}
            for line in filter(str.strip, body.splitlines()):
                m = re.fullmatch(r"\s*(\w+)(\?)?:\s*(.+?);\s*", line)
                assert m, f"protocol.ts, interface {name}: cannot read {line!r} (keep it flat)"
                fields[m[1]] = (bool(m[2]), m[3])
            self.interfaces[name] = fields
        methods = re.search(r"export const Methods = \{(.*?)\}", text, flags=re.S)
        assert methods, "protocol.ts has no `export const Methods = {...}`"
        self.methods = set(re.findall(r"'([^']+)'", methods[1]))

    def types(self, ts: str) -> frozenset:
        """A TS type as a set of normalized members, aliases resolved."""
        members: set = set()
        for part in split_union(ts):
            if part in self.aliases:
                members |= self.types(self.aliases[part])
            elif part.endswith("[]"):
                members.add(("list", self.types(part[:-2])))
            elif m := re.fullmatch(r"Record<string,\s*(.+)>", part):
                members.add(("record", self.types(m[1])))
            elif part in self.interfaces:
                members.add(("struct", part))
            else:
                members.add(part)
        return frozenset(members)


def split_union(ts: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in ts:
        depth += (ch in "<({[") - (ch in ">)}]")
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*parts, cur.strip()]


# --- reading protocol.py ------------------------------------------------------------------


def py_types(t: mi.Type) -> frozenset:
    """A msgspec type as the set of members protocol.ts should write for it."""
    if isinstance(t, mi.UnionType):
        return frozenset().union(*(py_types(x) for x in t.types))
    simple = {mi.StrType: "string", mi.IntType: "number", mi.FloatType: "number"}
    simple |= {mi.BoolType: "boolean", mi.NoneType: "null"}
    if type(t) in simple:
        return frozenset({simple[type(t)]})
    if isinstance(t, mi.LiteralType):
        return frozenset(f"'{v}'" for v in t.values)
    if isinstance(t, mi.ListType):
        return frozenset({("list", py_types(t.item_type))})
    if isinstance(t, mi.DictType):
        return frozenset({("record", py_types(t.value_type))})
    if isinstance(t, mi.StructType):
        return frozenset({("struct", MIRRORS[t.cls])})
    raise AssertionError(f"test_protocol_drift does not know how to write {t} in TypeScript")


def expected_fields(cls: type[msgspec.Struct]) -> dict[str, tuple[bool, frozenset]]:
    """encode name -> (optional in TS, TS type members) for one Struct."""
    is_params = issubclass(cls, P.Params)
    omits = cls.__struct_config__.omit_defaults
    out = {}
    for f in mi.type_info(cls).fields:
        types = py_types(f.type)
        absent_when_none = f.default is None and (is_params or omits)
        if absent_when_none:  # sent as absence, never as null
            types -= {"null"}
        optional = not f.required if is_params else (omits and not f.required)
        out[f.encode_name] = (optional, types)
    return out


@pytest.fixture(scope="module")
def ts() -> TsContract:
    return TsContract(TS_FILE.read_text())


def test_protocol_ts_lists_every_method_of_protocol_py(ts: TsContract) -> None:
    assert ts.methods == {*P.METHODS, *P.NOTIFICATIONS, P.STATUS}


def test_every_wire_struct_is_mirrored_or_says_why_not() -> None:
    structs = {
        c
        for c in vars(P).values()
        if isinstance(c, type)
        and issubclass(c, (P.Params, P.Result))
        and c not in (P.Params, P.Result)
    }
    assert structs == set(MIRRORS) | set(NOT_MIRRORED)


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda c: c.__name__)
def test_protocol_ts_interface_matches_the_struct(ts: TsContract, cls: type) -> None:
    name = MIRRORS[cls]
    assert name in ts.interfaces, f"protocol.ts has no interface {name}"
    written = {k: (opt, ts.types(t)) for k, (opt, t) in ts.interfaces[name].items()}
    assert written == expected_fields(cls)


# --- the reader and the comparison catch drift (synthetic protocol.ts text) ---------------

TIMINGS_OK = "export interface Timings {\n  firstTokenMs: number | null;\n  totalMs: number;\n}\n"


@pytest.mark.parametrize(
    "drifted",
    [
        TIMINGS_OK.replace("number | null", "number"),  # the null the daemon sends
        TIMINGS_OK.replace("totalMs:", "totalMs?:"),  # optional, but always sent
        TIMINGS_OK.replace("totalMs", "total"),  # renamed
        TIMINGS_OK.replace("  totalMs: number;\n", ""),  # missing
        TIMINGS_OK.replace("totalMs: number", "totalMs: string"),  # wrong type
    ],
)
def test_a_drifted_interface_is_reported(drifted: str) -> None:
    contract = TsContract(drifted + "export const Methods = {}")
    written = {k: (o, contract.types(t)) for k, (o, t) in contract.interfaces["Timings"].items()}
    assert written != expected_fields(P.Timings)
    ok = TsContract(TIMINGS_OK + "export const Methods = {}")
    written = {k: (o, ok.types(t)) for k, (o, t) in ok.interfaces["Timings"].items()}
    assert written == expected_fields(P.Timings)


def test_a_missing_method_is_reported() -> None:
    contract = TsContract("export const Methods = {\n  chat: 'mlxd/chat',\n} as const;")
    assert contract.methods != {*P.METHODS, P.STATUS}
