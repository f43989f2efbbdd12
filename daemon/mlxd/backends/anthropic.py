"""Anthropic Messages backend: `POST {base_url}/v1/messages` with `stream: true`, as SSE.

The stream is named events: message_start (usage.input_tokens), content_block_start,
content_block_delta (text_delta), content_block_stop, message_delta (stop_reason,
usage.output_tokens), message_stop (the end marker), ping, and `error` mid-stream.

The Messages API differs from chat completions in ways that matter here: system prompts go in a
top-level `system` field, roles must alternate starting with a user turn, `max_tokens` is
required, and a final assistant message is a prefill the model continues — which is how a
partial answer from another backend (`request.assistant_prefix`) is continued.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from mlxd.backends.cloud import CloudBackend
from mlxd.backends.http import error_from_json, excerpt
from mlxd.backends.messages import chat_messages, sized
from mlxd.config import DEFAULT_MAX_TOKENS
from mlxd.errors import NotConfigured, ProtocolError, ServerError, StreamCut
from mlxd.secrets import key_sources
from mlxd.types import Delta, Done, Event, Request

log = logging.getLogger(__name__)

FIRST_USER = "Continue."  # a user turn to open a conversation that starts otherwise
# `error` event types that mean "the provider is struggling", not "the stream is garbage".
_SERVER_SIDE = {"overloaded_error": 529, "api_error": 500}


def build_messages(request: Request) -> tuple[str, list[dict[str, str]]]:
    """(system, messages) as the Messages API wants them."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for m in chat_messages(request):
        if m.role == "system":
            if m.content:
                system.append(m.content)
            continue
        if not m.content:
            continue  # the API rejects empty text blocks
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": FIRST_USER})
    return "\n\n".join(system), turns


class AnthropicBackend(CloudBackend):
    @property
    def _url(self) -> str:
        base = self._base
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def body(self, request: Request) -> tuple[dict[str, Any], str]:
        """The request body, and the whitespace cut from the end of a prefill (the API rejects
        a final assistant message that ends in whitespace)."""
        system, turns = build_messages(request)
        cut = ""
        if request.assistant_prefix:
            prefill = request.assistant_prefix.rstrip()
            cut = request.assistant_prefix[len(prefill) :]
            if prefill:
                if turns[-1]["role"] == "assistant":
                    turns[-1]["content"] += "\n\n" + prefill
                else:
                    turns.append({"role": "assistant", "content": prefill})
        body: dict[str, Any] = {
            "model": self.cfg.model,
            # Anthropic requires it; the router fills it (routing.max_tokens) when a request
            # leaves it open, so that every backend gets the same budget.
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": turns,
            "stream": True,
            "temperature": request.temperature,  # 0 stays 0
        }
        if system:
            body["system"] = system
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body, cut

    def fences_prompt(self, request: Request) -> bool:
        """A completion gets the code fenced (openai.completion_messages)."""
        return request.kind != "chat"

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        key = await asyncio.to_thread(self._keys.get, self.name, self.cfg)
        if not key:
            raise NotConfigured(
                f"backend {self.name!r} has no API key: {key_sources(self.name, self.cfg, self._keys.from_editor)}"
            )
        request = self.scrubbed(sized(request))  # an inline request's one trim; keys out
        body, cut = self.body(request)
        headers = self._headers(key)
        log.debug("%s: POST %s model=%s", self.name, self._url, body["model"])

        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        model = self.cfg.model
        async with self._http.post_stream(self._url, body, headers) as resp:
            async for ev in self._http.events(resp):
                data = self._parse(ev.data)
                kind = data.get("type") or ev.event
                if kind == "content_block_delta" and stop_reason is None:  # none after the end
                    deltas, cut = _content_deltas(data.get("delta") or {}, cut)
                    for delta in deltas:
                        yield delta
                elif kind == "message_start":
                    msg = data.get("message") or {}
                    model = self.reported_model(msg.get("model"), model)
                    usage = msg.get("usage") or {}
                    input_tokens = _int(usage.get("input_tokens"))
                    output_tokens = _int(usage.get("output_tokens"))
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    usage = data.get("usage") or {}
                    if "output_tokens" in usage:  # cumulative, per the API reference
                        output_tokens = _int(usage["output_tokens"])
                    if "input_tokens" in usage and usage["input_tokens"]:
                        input_tokens = _int(usage["input_tokens"])
                elif kind == "message_stop":
                    break
                elif kind == "error":
                    raise self._stream_error(data)
                # ping, content_block_start/stop and unknown events carry nothing we need.
            else:
                # Without message_stop, a message_delta with a stop_reason still ended it.
                if stop_reason is None:
                    raise StreamCut(f"{self.name}: stream ended without message_stop")
        if stop_reason not in ("end_turn", "stop_sequence", "max_tokens", None):  # refusal, …
            log.info("%s: stop_reason %r, reported as stop", self.name, stop_reason)
        yield Done(
            finish_reason="length" if stop_reason == "max_tokens" else "stop",
            prompt_tokens=input_tokens,
            completion_tokens=output_tokens,
            model=model,
        )

    def _headers(self, key: str) -> dict[str, str]:
        return {
            "x-api-key": key,
            "anthropic-version": self.cfg.anthropic_version,
            "content-type": "application/json",
            "accept": "text/event-stream",
            **self.cfg.headers,
        }

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            obj = json.loads(data)
        except ValueError:
            raise ProtocolError(
                f"{self.name}: invalid JSON in stream: {excerpt(data, self._keys.redact, 200)!r}"
            ) from None
        if not isinstance(obj, dict):
            raise ProtocolError(f"{self.name}: stream event is not an object")
        return obj

    def _stream_error(self, data: dict[str, Any]) -> Exception:
        msg = error_from_json(data, self._keys.redact) or "error event in stream"
        err = data.get("error")
        etype = err.get("type") if isinstance(err, dict) else None
        if etype in _SERVER_SIDE:
            return ServerError(msg, _SERVER_SIDE[etype])
        return ProtocolError(f"{self.name}: {msg}")


def _content_deltas(delta: dict[str, Any], cut: str) -> tuple[list[Delta], str]:
    """A content_block_delta's thinking (reasoning) and text. `cut` is the whitespace the
    prefill lost at its end: the model usually re-emits it, and the caller already has it."""
    out = []
    thought = delta.get("thinking") if delta.get("type") == "thinking_delta" else None
    if isinstance(thought, str) and thought:
        out.append(Delta(thought, reasoning=True))
    text = delta.get("text") if delta.get("type") == "text_delta" else None
    if isinstance(text, str) and text:
        if cut:
            text, cut = _drop_common_prefix(text, cut)
        if text:
            out.append(Delta(text))
    return out, cut


def _drop_common_prefix(text: str, ws: str) -> tuple[str, str]:
    n = 0
    while n < len(text) and n < len(ws) and text[n] == ws[n]:
        n += 1
    if n == len(text):
        return "", ws[n:]
    return text[n:], ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
