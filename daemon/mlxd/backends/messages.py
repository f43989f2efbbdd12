"""What a provider gets for any request kind (shared by the OpenAI-compatible and Anthropic
backends): an inline request's text cut to its budget (`sized`), and the conversation for a
chat-only provider: a chat's own messages, or, for a completion, a system prompt that asks for
the text to insert at the cursor."""

from __future__ import annotations

from dataclasses import replace

from mlxd.prompts import fit_window, loose_tokens
from mlxd.types import Message, Request

# Chat models asked to act as a completion engine (kind "complete"/"inline" without /completions).
COMPLETE_SYSTEM = (
    "You are a code completion engine. The user sends source code with the cursor marked as "
    "<CURSOR>. Reply with only the text to insert at the cursor: no explanation, no markdown "
    "fences, nothing repeated from before or after the cursor."
)


def sized(request: Request) -> Request:
    """`request` as a provider gets it: an inline request's header, prefix and suffix cut to its
    `context_tokens`, counted loosely (prompts.loose_tokens), by the same trim as a local model's
    prompt (prompts.fit_window). Other requests are sent as they are."""
    if request.context_tokens is None:
        return request
    window = fit_window(
        loose_tokens, request.prefix, request.suffix, request.header, request.context_tokens
    )
    return replace(
        request,
        prefix=window.prefix,
        suffix=window.suffix,
        header=window.header,
        context_tokens=None,
    )


def completion_messages(request: Request) -> list[Message]:
    """A chat conversation that asks for the code to insert at the cursor."""
    prefix = request.prefix
    lang = request.language or ""
    user = f"```{lang}\n{prefix}<CURSOR>{request.suffix}\n```"
    if request.header:  # the file's name and snippets of related open files
        user = f"Context:\n{request.header}\n\n{user}"
    return [Message("system", COMPLETE_SYSTEM), Message("user", user)]


def chat_messages(request: Request) -> list[Message]:
    """The conversation to send for any request kind (without assistant_prefix handling)."""
    if request.kind == "chat":
        return list(request.messages)
    return completion_messages(request)
