"""The wire contract (v1) of mlxd's own methods: typed params and results, camelCase on the wire.

Params are validated with msgspec, so a bad request gets -32602 with a message that names the
field (`maxTokens: expected int, got str`). Unknown fields are refused too: a client sending
`max_tokens` instead of `maxTokens` should hear about it, not be silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from .errors import field_message, with_choices
from .runtime import SETTINGS_IN_FORCE

__all__ = ["SETTINGS_IN_FORCE"]  # the forwarder's own message (runtime.py), sent by the server

VERSION = "1"

CHAT = "mlxd/chat"
COMPLETE = "mlxd/complete"
MODELS = "mlxd/models"
SET_API_KEY = "mlxd/setApiKey"
STATS = "mlxd/stats"  # diagnostics: counters for benchmarks and tests
STATUS = "mlxd/status"  # notification, server -> client
METHODS = [CHAT, COMPLETE, MODELS, SET_API_KEY, STATS]  # requests
# Client -> server notifications (a client sends one only when the server lists it).
DID_MOVE_CURSOR = "mlxd/didMoveCursor"  # where the cursor rests: inline warms its prompt
DID_COPY = "mlxd/didCopy"  # text the user copied: a neighbour snippet for inline prompts
NOTIFICATIONS = [DID_MOVE_CURSOR, DID_COPY]

# JSON-RPC / LSP error codes used by mlxd.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002
INTERNAL_ERROR = -32603
REQUEST_FAILED = -32803
REQUEST_CANCELLED = -32800

ProgressToken = int | str
MaxTokens = Annotated[int, Meta(ge=1, le=1_000_000)]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]


class Params(Struct, rename="camel", forbid_unknown_fields=True):
    pass


class ChatMessage(Params):
    role: Literal["system", "user", "assistant"]
    content: str


class TextDocumentRef(Params):
    uri: str


class Position(Params):
    line: Annotated[int, Meta(ge=0)]
    character: Annotated[int, Meta(ge=0)]


class CursorParams(Params):
    text_document: TextDocumentRef
    position: Position


class CopyParams(Params):
    text_document: TextDocumentRef
    text: str


class ChatParams(Params):
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    model: str | None = None
    backend: str | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    stop: list[str] = []
    text_document: TextDocumentRef | None = None
    partial_result_token: ProgressToken | None = None
    work_done_token: ProgressToken | None = None


class CompleteParams(Params):
    prefix: str
    suffix: str = ""
    language: str = ""
    model: str | None = None
    backend: str | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    stop: list[str] = []
    text_document: TextDocumentRef | None = None
    partial_result_token: ProgressToken | None = None
    work_done_token: ProgressToken | None = None


class SetApiKeyParams(Params):
    backend: Annotated[str, Meta(min_length=1)]
    api_key: Annotated[str, Meta(min_length=1)]
    persist: bool = False


class EmptyParams(Params):
    work_done_token: ProgressToken | None = None


# --- results ------------------------------------------------------------------------------
class Result(Struct, rename="camel"):
    pass


class Usage(Result):
    prompt_tokens: int
    completion_tokens: int


class Attempt(Result):
    backend: str
    error: str


class Timings(Result):
    first_token_ms: float | None
    total_ms: float


class GenerationResult(Result):
    text: str
    backend: str
    model: str
    finish_reason: Literal["stop", "length"]
    usage: Usage
    attempts: list[Attempt]
    timings: Timings
    reasoning: str = ""  # chat: the model's reasoning, apart from `text`; "" otherwise


class ModelInfo(Result):
    name: str
    backend: str
    loaded: bool


class ModelsResult(Result):
    models: list[ModelInfo]
    defaults: dict[str, str]


class Status(Result, omit_defaults=True):
    state: Literal["starting", "loading", "ready", "degraded", "error"]
    backends: dict[str, Literal["ok", "cooldown", "unconfigured", "error", "no_key"]]
    message: str | None = None


class InvalidParams(ValueError):
    """Raised by `parse`; the server turns it into JSON-RPC -32602."""


P = TypeVar("P", bound=Params)


def parse(params: Any, cls: type[P]) -> P:
    """Validate raw JSON params into `cls`, with an error message that names the field."""
    # JSON-RPC 2.0: absent params, or by-position params with no entries, mean "no parameters".
    # Lua has one empty table, which Neovim encodes as `[]`: `{}` from a Lua client arrives so.
    if params is None or params == []:
        params = {}
    try:
        return msgspec.convert(params, cls)
    except msgspec.ValidationError as exc:
        raise InvalidParams(with_choices(field_message(str(exc)), cls)) from None


def to_wire(result: Struct) -> Any:
    """pygls cannot encode msgspec Structs: hand it plain builtins."""
    return msgspec.to_builtins(result)
