"""One table from the errors the services raise to the JSON-RPC errors clients get: the most
specific class of an exception decides."""

from __future__ import annotations

from collections.abc import Callable

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from .. import protocol as P
from ..app import AllFailed, UnknownBackend, UnknownModel
from .lsp import MlxdServer


def _invalid(field: str = "") -> Callable[[MlxdServer, Exception], JsonRpcException]:
    return lambda ls, exc: JsonRpcInvalidParams(message=f"Invalid params: {field}{exc}")


def _all_failed(ls: MlxdServer, exc: Exception) -> JsonRpcException:
    assert isinstance(exc, AllFailed)
    tried = [a.error for a in exc.attempts if not a.error.startswith("skipped:")]
    if tried and all(e.startswith("context_length:") for e in tried):
        # No backend of the chain can take a prompt this long: the request is at fault.
        message = f"Invalid params: {tried[-1].removeprefix('context_length: ')}"
        return JsonRpcInvalidParams(message=ls.app.keys.redact(message))
    attempts = [{"backend": a.backend, "error": ls.app.keys.redact(a.error)} for a in exc.attempts]
    return JsonRpcException(
        code=P.REQUEST_FAILED, message=ls.app.keys.redact(str(exc)), data={"attempts": attempts}
    )


# One table for every handler; the most specific class of an exception decides. Anything not
# here is a bug: pygls answers -32603 (one line, see MlxdProtocol.shape_error).
ERRORS: dict[type[Exception], Callable[[MlxdServer, Exception], JsonRpcException]] = {
    P.InvalidParams: _invalid(),
    UnknownBackend: _invalid("backend: "),
    UnknownModel: _invalid("model: "),
    AllFailed: _all_failed,
}


def wire_error(ls: MlxdServer, exc: Exception) -> JsonRpcException | None:
    """The JSON-RPC error ERRORS maps `exc` to, or None when it is not a client-facing one."""
    for kind in type(exc).__mro__:
        if (make := ERRORS.get(kind)) is not None:
            return make(ls, exc)
    return None
