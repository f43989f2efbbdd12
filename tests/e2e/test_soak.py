"""Soak: many inline completion requests on the tiny model, about 90 % of them cancelled
mid-way by the client, with chats interleaved. Every request is answered exactly once (a result,
or -32800 when the cancel won), memory stays flat, no work is left running, and latency at the
end is what it was at the start.

`make test` runs a short form (MLXD_SOAK_N, default 1000 requests); the full soak of the issue
is `MLXD_SOAK_N=10000 make test` (or `MLXD_SOAK_N=10000 .venv/bin/python -m pytest -q
tests/e2e/test_soak.py`). The measured numbers are printed (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.conftest import Session, _plain, chat_params, daemon, write_config

N = int(os.environ.get("MLXD_SOAK_N", "1000"))
CANCEL_SHARE = 0.9
CHAT_EVERY = 10  # one request in ten is a chat
WORKERS = 4  # requests in flight at once
DOCS = 8
# mlx-lm's LRUPromptCache (models/batching.py: max_size=32) keeps the 32 sequences last run, in
# a trie of one dict per token not shared with another (~3 Python blocks each). Which 32 they
# are (long chat prompts or short inline ones, answers cut early or not) moved its size by
# +-1,500 nodes, +-4,500 blocks, from one tenth to the next: bounded, but more than a leak of a
# few blocks a request. Python blocks are counted after this many fixed chats (more than 32).
CANONICAL_CHATS = 40

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(max(300, N // 5))]


def rss_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))]


@dataclass
class Sample:
    index: int
    kind: str  # "inline" | "chat"
    outcome: Any  # "result" or the error code
    latency: float  # s: from the request to its answer
    cancel_latency: float | None  # s: from the cancel to the answer; None: not cancelled


class Soak:
    def __init__(self, s: Session, seed: int = 1) -> None:
        self.s = s
        self.rng = random.Random(seed)
        self.versions = dict.fromkeys(range(DOCS), 1)
        self.samples: list[Sample] = []
        self.cancelled_sent = 0

    def uri(self, doc: int) -> str:
        return f"file:///soak/mod{doc}.py"

    def open_all(self) -> None:
        for d in range(DOCS):
            self.s.client.text_document_did_open(
                T.DidOpenTextDocumentParams(T.TextDocumentItem(self.uri(d), "python", 1, "x = "))
            )

    def edit(self, doc: int, i: int) -> tuple[int, int]:
        """A new text for the document (so no answer comes from the cache); the cursor at its
        end."""
        text = f"def f{i}(x):\n    return x * {i}\n\n\nvalue_{i} = f{i}("
        self.versions[doc] += 1
        self.s.client.text_document_did_change(
            T.DidChangeTextDocumentParams(
                T.VersionedTextDocumentIdentifier(version=self.versions[doc], uri=self.uri(doc)),
                [T.TextDocumentContentChangeWholeDocument(text)],
            )
        )
        return 4, len(f"value_{i} = f{i}(")

    async def one(self, i: int) -> None:
        doc = i % DOCS
        if i % CHAT_EVERY == CHAT_EVERY - 1:
            kind, method = "chat", "mlxd/chat"
            params: Any = chat_params(f"question {i}", maxTokens=8)
        else:
            kind, method = "inline", "textDocument/inlineCompletion"
            line, character = self.edit(doc, i)
            params = T.InlineCompletionParams(
                text_document=T.TextDocumentIdentifier(self.uri(doc)),
                position=T.Position(line, character),
                context=T.InlineCompletionContext(T.InlineCompletionTriggerKind.Automatic),
            )
        t0 = time.perf_counter()
        t_cancel = None
        msg_id, fut = self.s.start(method, params)
        if self.rng.random() < CANCEL_SHARE:
            await asyncio.sleep(self.rng.uniform(0, 0.03))
            if not fut.done():
                self.s.cancel(msg_id)
                self.cancelled_sent += 1
                t_cancel = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(fut), 60)
            outcome: Any = "result"
        except JsonRpcException as exc:
            outcome = exc.code
        t1 = time.perf_counter()
        self.samples.append(
            Sample(i, kind, outcome, t1 - t0, t1 - t_cancel if t_cancel is not None else None)
        )

    async def fill_prompt_cache(self) -> None:
        """Greedy chats, one at a time, whose sequences fill the model's prompt cache: it holds
        the same sequences after each call, whatever the soak's last requests were."""
        for k in range(CANONICAL_CHATS):
            await self.s.request(
                "mlxd/chat", chat_params(f"canonical question {k:02d}", maxTokens=8)
            )

    async def run(self, start: int, stop: int) -> None:
        queue = iter(range(start, stop))

        async def worker() -> None:
            for i in queue:
                await self.one(i)

        await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def test_soak_inline_with_cancellations_and_chats(tmp_path: Path, tiny_model: Path) -> None:
    cfg = write_config(
        tmp_path / "soak.toml",
        f"""
[local]
model = "{tiny_model}"
max_tokens = 16
prompt_cache_mb = 32
[inline]
max_tokens = 24
max_ms = 20000
whole_lines = false
""",
    )
    async with daemon(cfg, env={"MLXD_LOG_LEVEL": "WARNING"}) as s:
        answers: Counter[Any] = Counter()
        handle = s.client.protocol._handle_response

        def count(msg_id: Any, *args: Any, **kwargs: Any) -> Any:
            answers[msg_id] += 1
            return handle(msg_id, *args, **kwargs)

        s.client.protocol._handle_response = count
        await s.wait_status("ready")
        pid = s.client._server.pid
        soak = Soak(s)
        soak.open_all()
        await soak.run(-300, 0)  # warm-up, not measured: caches, allocator, code paths
        soak.samples.clear()
        soak.cancelled_sent = 0
        answers.clear()
        before = _plain(await s.request("mlxd/stats", {}))["inline"]

        async def at_rest() -> dict[str, Any]:
            """The stats once every local generation stopped (cancelled ones leave the batch at
            their next step): no leaked work, and counters not blurred by work in flight."""
            deadline = time.monotonic() + 10
            while True:
                stats = _plain(await s.request("mlxd/stats", {}))
                idle = all(e["active"] == 0 for e in stats["local"].values())
                if idle and stats["inline"].get("aheadActive", 0) == 0:  # no background job
                    return stats
                assert time.monotonic() < deadline, stats
                await asyncio.sleep(0.02)

        tenth = max(1, N // 10)
        await soak.fill_prompt_cache()
        rest = [await at_rest()]  # after the warm-up, then after each tenth
        rss = [rss_kb(pid)]
        t_start, soak_time = time.perf_counter(), 0.0
        for chunk in range(0, N, tenth):
            await soak.run(chunk, min(N, chunk + tenth))
            await at_rest()
            soak_time += time.perf_counter() - t_start  # not the prompt cache's filling
            await soak.fill_prompt_cache()
            rest.append(await at_rest())
            rss.append(rss_kb(pid))
            t_start = time.perf_counter()
        elapsed = soak_time
        stats = rest[-1]

    samples = sorted(soak.samples, key=lambda x: x.index)
    outcomes = Counter(x.outcome for x in samples)
    by_tenth = [[x.latency for x in samples[k : k + tenth]] for k in range(0, N, tenth)]
    first, last = by_tenth[0], by_tenth[-1]
    cancels = [x.cancel_latency for x in samples if x.cancel_latency is not None]
    c_first = [x.cancel_latency for x in samples[:tenth] if x.cancel_latency is not None]
    c_last = [x.cancel_latency for x in samples[-tenth:] if x.cancel_latency is not None]
    done = [x.latency for x in samples if x.outcome == "result"]
    print(
        f"\nsoak: {N} requests in {elapsed:.1f}s ({N / elapsed:.0f}/s), outcomes {dict(outcomes)}, "
        f"cancels sent {soak.cancelled_sent}, inline {stats['inline']}\n"
        f"p95 latency first 10% {p95(first) * 1000:.1f} ms, last 10% {p95(last) * 1000:.1f} ms; "
        f"answered requests p95 {p95(done) * 1000:.1f} ms\n"
        f"cancel-to-answer p95: all {p95(cancels) * 1000:.1f} ms, first 10% "
        f"{p95(c_first) * 1000:.1f} ms, last 10% {p95(c_last) * 1000:.1f} ms\n"
        f"p95 by tenth (ms): {[round(p95(tenths) * 1000) for tenths in by_tenth]}\n"
        f"at rest after the warm-up and each tenth: RSS (MiB) {[round(r / 1024) for r in rss]}, "
        f"MLX active (MiB) {[round(r['mlxMemory']['activeBytes'] / 2**20) for r in rest]}, "
        f"Python blocks {[r['server']['pythonBlocks'] for r in rest]}"
    )
    # every request answered exactly once: a result, or -32800 after a cancel
    assert len(samples) == N
    assert len(answers) >= N and set(answers.values()) == {1}, Counter(answers.values())
    assert set(outcomes) <= {"result", -32800}, outcomes
    assert outcomes[-32800] >= N * 0.3  # the cancels did land mid-way, often
    assert outcomes["result"] >= N * 0.05
    assert outcomes[-32800] <= soak.cancelled_sent
    assert stats["inline"]["generations"] - before["generations"] >= N // 5  # the model ran
    # leaks, counted exactly at rest: no request left pending, no task left running, Python's
    # heap flat, MLX arrays flat (active memory moves by about +-4 MiB). Python blocks, with
    # the prompt cache holding the same sequences each time (CANONICAL_CHATS), moved by at
    # most 2,750 over 1,000 to 6,000 requests: cyclic garbage not yet collected (up to ~2,000
    # blocks, gone after a gc.collect()) and bounded caches that settle (~+700 blocks after a
    # collection, flat from the 4th tenth on; no object type grew with the requests). 6,000
    # catches a leak of six objects a request in the short soak and of one in the long one
    # (the future pygls leaked per edit was 18 blocks).
    warm, server = rest[0]["server"], [r["server"] for r in rest]
    assert all(x["pendingRequests"] == 0 for x in server), server
    assert all(x["tasks"] == warm["tasks"] for x in server), server
    assert max(x["pythonBlocks"] for x in server[1:]) - server[1]["pythonBlocks"] < 6000, server
    active = [r["mlxMemory"]["activeBytes"] for r in rest]
    assert max(active) - active[0] < 16 << 20, active
    # RSS at rest: the native heap settles ~10 MiB above the warm-up in the first fifth
    # (allocator reuse of MLX buffers of varying sizes; the counters above stay flat) and then
    # moves by a few MiB either way, so RSS bounds catch coarse native leaks only: 32 MiB over
    # the run, 12 MiB over its second half (>= 2.4 KB a request at the full soak's size)
    assert rss[-1] - rss[0] < 32 << 10, rss
    assert rss[-1] - rss[len(rss) // 2] < 12 << 10, rss
    # latency: stable from the first tenth to the last (slack for the shared CI cores); a
    # cancel is answered promptly all along
    assert p95(last) <= 3 * p95(first) + 0.5, (p95(first), p95(last))
    assert p95(c_last) <= 3 * p95(c_first) + 0.1, (p95(c_first), p95(c_last))
    assert p95(cancels) < 1.0
