"""OpenAI-compatible backend: `POST {base_url}/chat/completions` (and the legacy `/completions`
for code completion when the backend is configured for it), streamed as SSE.

Works with OpenAI and every server that copies its API (OpenRouter, Groq, Together, vLLM,
LM Studio, Ollama's /v1, `mlx_lm.server`). A stream is `data: {chunk}` events ending with
`data: [DONE]`; with `stream_options.include_usage` the last chunk before it carries `usage`
and no choices.

Continuing another backend's partial answer (`request.assistant_prefix`): the chat API has no
portable prefill, so the partial answer is sent as an assistant message followed by a user
message asking to continue exactly where it stopped (`CONTINUE_PROMPT`). With `/completions`
the partial answer is simply appended to the prompt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from mlxd.backends.cloud import CloudBackend
from mlxd.backends.http import error_from_json, excerpt, status_error
from mlxd.backends.messages import chat_messages, sized
from mlxd.errors import NotConfigured, ProtocolError, StreamCut
from mlxd.secrets import key_sources
from mlxd.types import Delta, Done, Event, Request

log = logging.getLogger(__name__)

CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped: do not repeat "
    "anything, do not add a preamble."
)


class OpenAIBackend(CloudBackend):
    def fences_prompt(self, request: Request) -> bool:
        """A completion through chat gets the code fenced (completion_messages)."""
        return request.kind != "chat" and not self.cfg.completions

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        key = await asyncio.to_thread(self._keys.get, self.name, self.cfg)
        if key is None and (self.cfg.api_key_env or self.cfg.api_key):
            raise NotConfigured(
                f"backend {self.name!r} has no API key: {key_sources(self.name, self.cfg, self._keys.from_editor)}"
            )
        legacy = request.kind != "chat" and self.cfg.completions
        if legacy:  # /completions is sent no header (path, snippets): none to fit in the budget
            request = replace(request, header="")
        request = self.scrubbed(sized(request))  # an inline request's one trim; keys out
        url = f"{self._base}/completions" if legacy else f"{self._base}/chat/completions"
        body = self._completions_body(request) if legacy else self.chat_body(request)
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **self.cfg.headers,
        }
        if key:
            headers["Authorization"] = f"Bearer {key}"
        log.debug("%s: POST %s model=%s", self.name, url, body["model"])

        finish: str | None = None
        usage: dict[str, Any] = {}
        model = self.cfg.model
        async with self._http.post_stream(url, body, headers) as resp:
            async for ev in self._http.events(resp):
                if ev.data.strip() == "[DONE]":
                    break
                chunk = self._parse(ev.data)
                model = self.reported_model(chunk.get("model"), model)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                choices = chunk.get("choices") or []
                for choice in choices:
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    if finish is not None:  # text after the finish is a server bug, not answer
                        continue
                    if thought := _reasoning_text(choice):
                        yield Delta(thought, reasoning=True)
                    text = _choice_text(choice, legacy)
                    if text:
                        yield Delta(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            else:
                # No [DONE] (text-generation-inference, some llama.cpp builds): a stream that
                # carried a finish reason ended properly; only one without it was cut.
                if finish is None:
                    raise StreamCut(f"{self.name}: stream ended without [DONE] or a finish reason")
        if finish not in ("stop", "length", None):  # content_filter, tool_calls, …: "stop"
            log.info("%s: finish_reason %r, reported as stop", self.name, finish)
        yield Done(
            finish_reason="length" if finish == "length" else "stop",
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            model=model,
        )

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ProtocolError(
                f"{self.name}: invalid JSON in stream: {excerpt(data, self._keys.redact, 200)!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise ProtocolError(f"{self.name}: stream chunk is not an object")
        if chunk.get("error"):
            # Some servers report a failure mid-stream as a chunk holding an error object.
            msg = error_from_json(chunk, self._keys.redact) or "error in stream"
            err = chunk["error"]
            status = err.get("code") if isinstance(err, dict) else None
            if isinstance(status, int) and status >= 400:
                raise status_error(status, msg)
            raise ProtocolError(f"{self.name}: {msg}")
        return chunk

    def chat_body(self, request: Request) -> dict[str, Any]:
        msgs = [{"role": m.role, "content": m.content} for m in chat_messages(request)]
        if request.assistant_prefix:
            msgs.append({"role": "assistant", "content": request.assistant_prefix})
            msgs.append({"role": "user", "content": CONTINUE_PROMPT})
        body: dict[str, Any] = {"model": self.cfg.model, "messages": msgs}
        return self._common(body, request)

    def _completions_body(self, request: Request) -> dict[str, Any]:
        prompt = request.prefix + request.assistant_prefix
        body: dict[str, Any] = {"model": self.cfg.model, "prompt": prompt}
        if request.suffix:
            body["suffix"] = request.suffix
        return self._common(body, request)

    @staticmethod
    def _common(body: dict[str, Any], request: Request) -> dict[str, Any]:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        body["temperature"] = request.temperature  # 0 stays 0: greedy is a choice, not a default
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        return body


def _choice_text(choice: dict[str, Any], legacy: bool) -> str:
    if legacy:
        text = choice.get("text")
    else:
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""


def _reasoning_text(choice: dict[str, Any]) -> str:
    """Reasoning streamed apart from the answer: `reasoning_content` (DeepSeek, vLLM,
    llama.cpp) or `reasoning` (OpenRouter, Ollama)."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return ""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(text := delta.get(key), str) and text:
            return text
    return ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
