"""JSON-RPC params that are an empty array mean "no parameters" (JSON-RPC 2.0, by-position).

Lua has one empty table and Neovim encodes it as `[]`, so `mlxd/stats` with `{}` from Lua was
answered "Invalid params: expected object, got array" (new-user pass, finding 17)."""

import msgspec
import pytest

from mlxd import protocol as P


@pytest.mark.parametrize("cls", [P.EmptyParams])
def test_an_empty_array_is_no_parameters(cls):
    assert P.parse([], cls) == P.parse({}, cls) == P.parse(None, cls)


@pytest.mark.parametrize("params", [[1], ["x"], [{}]])
def test_a_non_empty_array_is_still_refused_with_the_reason(params):
    with pytest.raises(P.InvalidParams, match="expected .object., got .array."):
        P.parse(params, P.EmptyParams)


def test_required_fields_are_still_required_after_an_empty_array():
    with pytest.raises(P.InvalidParams, match="messages"):
        P.parse([], P.ChatParams)
    assert isinstance(msgspec.to_builtins(P.parse([], P.EmptyParams)), dict)
