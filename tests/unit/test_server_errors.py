"""The server's one table from service errors to JSON-RPC errors (server/handlers.py ERRORS)."""

from __future__ import annotations

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from mlxd import protocol as P
from mlxd.app import AllFailed, ConfigSources, UnknownBackend, UnknownModel
from mlxd.server import MlxdServer, wire_error
from mlxd.types import Attempt


@pytest.fixture
def ls() -> MlxdServer:
    return MlxdServer(ConfigSources(path=None))


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (P.InvalidParams("maxTokens: expected `int`"), "Invalid params: maxTokens: expected `int`"),
        (UnknownBackend("unknown backend 'x'"), "Invalid params: backend: unknown backend 'x'"),
        (UnknownModel("unknown model 'm'"), "Invalid params: model: unknown model 'm'"),
    ],
)
def test_client_mistakes_are_invalid_params(ls: MlxdServer, exc: Exception, message: str) -> None:
    error = wire_error(ls, exc)
    assert isinstance(error, JsonRpcInvalidParams) and error.message == message


def test_all_failed_is_request_failed_with_every_attempt(ls: MlxdServer) -> None:
    error = wire_error(ls, AllFailed([Attempt("cloud", "connect: refused"), Attempt("local", "x")]))
    assert error is not None and error.code == P.REQUEST_FAILED
    assert error.data == {
        "attempts": [
            {"backend": "cloud", "error": "connect: refused"},
            {"backend": "local", "error": "x"},
        ]
    }


def test_anything_else_is_left_to_pygls_as_an_internal_error(ls: MlxdServer) -> None:
    assert wire_error(ls, RuntimeError("a bug")) is None
    assert wire_error(ls, ValueError("not a client mistake")) is None
