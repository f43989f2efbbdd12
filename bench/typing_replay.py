"""typing: replay typing a real source file into mlxd, as an editor with ghost text would.

Phase 1, the replay. A document opens with the first lines of a file no one here wrote (CPython's
asyncio/locks.py from this interpreter's standard library: pinned with the interpreter, unlike
our own sources, so runs compare like for like; its sha256 goes into the result); the next
characters are typed one by one (didChange, incremental) at a steady speed. When a word is
complete the typist pauses briefly (WORD_PAUSE_S), at a line end longer (until the ghost text
shows, at most LINE_PAUSE_S), and the editor asks for ghost text at each pause
(textDocument/inlineCompletion, triggerKind 2). While ghost text is shown and the typed
character matches it, the editor asks again at once (typing through the suggestion: mlxd should
answer from its cache without the model). A request still running when the next key is pressed
is cancelled with $/cancelRequest, as editors do.
Reported: latency median/p95 per kind of request, the share answered from the cache, how fast
cancellations are acknowledged, and at line ends (the cursor on the new line after Enter) how
close the ghost text's first line is to the line typed next (edit similarity).

Phase 1b, accept -> next. At a few line ends of the same text, on a fresh document: ghost text
is asked for and shown, the user presses accept ACCEPT_S later (the suggestion is inserted),
and the editor asks again at once. mlxd should have the next suggestion ready (it works ahead in
the background: inline/ahead.py). Reported: that request's latency and the share of them
answered from work done ahead (mlxd/stats aheadHits).

Phase 2, KV reuse. At a few positions of the same text (inline.max_tokens = 1, so the latency
is the prompt's prefill plus one step): a cold request on a fresh document (its header differs
at the start, so no KV cache applies), then one more keystroke and the request again, which
reuses the KV cache of the first. Speed-up = cold / after-keystroke latency.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from mlxd.config import InlineConfig

from .common import (
    Daemon,
    Options,
    fmt,
    fmt_stat,
    local_config,
    log,
    model_label,
    print_table,
    ratio,
    stats_delta,
    summary,
    write_result,
)
from .quality import edit_similarity

SOURCE = str(Path(asyncio.__file__).parent / "locks.py")
# Typing starts at this line (Semaphore.acquire's body, mid-file: a long prefix,
# trimmed to the inline context budget), or after FALLBACK_LINES lines if it is not there.
ANCHOR = "\n        if not self.locked():\n            self._value -= 1"
FALLBACK_LINES = 30
TYPED_CHARS = 240
KEY_S = 0.08  # between keystrokes (~120 words per minute)
WORD_PAUSE_S = 0.3  # after a completed word: a short hesitation
LINE_PAUSE_S = 2.5  # at a line end: wait for the ghost text (at most this long)
KINDS = {"line": "at a line end", "word": "after a word", "through": "typing through ghost text"}
CACHE_MS = 25.0  # answered faster than this: no model step was involved (see README)
DEFAULT_KV_SAMPLES = 5
DEFAULT_ACCEPT_SAMPLES = 6
ACCEPT_S = 0.6  # the ghost text shows; the user accepts it this much later
URI = "file:///bench/w0000/locks.py"


def _split(text: str) -> tuple[str, str]:
    """(already in the document, to be typed)."""
    at = text.find(ANCHOR)
    if at < 0:
        at = len("\n".join(text.splitlines()[:FALLBACK_LINES]))
    start = text[: at + 1]
    return start, text[len(start) : len(start) + TYPED_CHARS]


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _end(text: str) -> tuple[int, int]:
    line = text.count("\n")
    last = text.rsplit("\n", 1)[-1]
    return line, _utf16_len(last)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _pause(prev: str, ch: str) -> str | None:
    """ "line" at a line end, "word" when a word is complete (the first non-word character after
    it), else None: runs of spaces or punctuation go through without a pause."""
    if ch == "\n":
        return "line"
    return "word" if not _is_word(ch) and _is_word(prev) else None


class Editor:
    """The editor side: one open document, requests with ids it can cancel."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.client = daemon.client
        self.version = 0
        self.text = ""
        self.uri = ""

    def open(self, uri: str, text: str) -> None:
        self.uri, self.text, self.version = uri, text, 1
        self.client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        )

    def close(self) -> None:
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})

    def type(self, ch: str) -> None:
        line, col = _end(self.text)
        self.version += 1
        self.text += ch
        self.client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": line, "character": col},
                            "end": {"line": line, "character": col},
                        },
                        "text": ch,
                    }
                ],
            },
        )

    def request(self) -> tuple[int, asyncio.Future[Any]]:
        """inlineCompletion at the end of the text; (id, future) so it can be cancelled."""
        line, col = _end(self.text)
        client = self.client
        msg_id = next(client._ids)
        fut = asyncio.get_running_loop().create_future()
        client._pending[msg_id] = fut
        client._send(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "method": "textDocument/inlineCompletion",
                "params": {
                    "textDocument": {"uri": self.uri},
                    "position": {"line": line, "character": col},
                    "context": {"triggerKind": 2},
                },
            }
        )
        return msg_id, fut

    def cancel(self, msg_id: int) -> None:
        self.client.notify("$/cancelRequest", {"id": msg_id})


def _first_item(result: Any) -> str | None:
    items = result.get("items", []) if isinstance(result, dict) else (result or [])
    return items[0]["insertText"] if items else None


async def _replay(editor: Editor, text: str, verbose: bool) -> dict[str, Any]:
    start, typed = _split(text)
    editor.open(URI, start)
    records: list[dict[str, Any]] = []
    cancels: list[asyncio.Task[float | None]] = []
    shown: str | None = None
    pending: tuple[int, asyncio.Future[Any], dict[str, Any]] | None = None

    async def ack(fut: asyncio.Future[Any], t0: float) -> float | None:
        try:
            await asyncio.wait_for(fut, 30)
        except TimeoutError:
            return None
        except Exception:  # -32800 RequestCancelled: the expected answer
            pass
        return (time.perf_counter() - t0) * 1000

    prev = start[-1:]
    for ch in typed:
        if pending is not None:
            msg_id, fut, rec = pending
            pending = None
            if not fut.done():
                editor.cancel(msg_id)
                rec["cancelled"] = True
                cancels.append(asyncio.ensure_future(ack(fut, time.perf_counter())))
        editor.type(ch)
        if shown:
            shown = shown[1:] if shown.startswith(ch) else None
        kind = "through" if shown else _pause(prev, ch)
        prev = ch
        if kind is None:
            await asyncio.sleep(KEY_S)
            continue
        wait = {"line": LINE_PAUSE_S, "word": WORD_PAUSE_S}.get(kind, KEY_S)
        expected = shown
        t0 = time.perf_counter()
        msg_id, fut = editor.request()
        rec = {"kind": kind, "offset": len(editor.text), "cancelled": False}
        records.append(rec)
        done, _ = await asyncio.wait({fut}, timeout=wait)
        if not done:
            pending = (msg_id, fut, rec)
            shown = None
            continue
        rec["latency_ms"] = (time.perf_counter() - t0) * 1000
        try:
            item = _first_item(fut.result())
        except Exception as exc:
            rec["error"] = str(exc)
            item = None
        rec["item"] = item
        rec["matches_expected"] = expected is not None and item == expected
        if kind == "line":  # the line the user types next, as the first line of ghost text
            end = text.find("\n", rec["offset"])
            typed_next = text[rec["offset"] : end if end >= 0 else len(text)]
            rec["line_sim"] = edit_similarity((item or "").split("\n")[0], typed_next)
        shown = item or None
        if verbose:
            print(f"  {kind:<7} {rec['latency_ms']:7.1f} ms  {item!r:.60}")
        if kind == "through":
            await asyncio.sleep(max(0.0, KEY_S - (time.perf_counter() - t0)))
    if pending is not None:
        msg_id, fut, rec = pending
        if not fut.done():
            editor.cancel(msg_id)
            rec["cancelled"] = True
            cancels.append(asyncio.ensure_future(ack(fut, time.perf_counter())))
    acks = [a for a in await asyncio.gather(*cancels) if a is not None]
    editor.close()
    return {"typed": typed, "requests": records, "cancel_ack_ms": acks}


async def _kv_reuse(editor: Editor, text: str, samples: int, verbose: bool) -> list[dict[str, Any]]:
    start, _ = _split(text)
    out = []
    for i in range(samples):
        cut = len(start) + (TYPED_CHARS * (i + 1)) // (samples + 1)
        editor.open(f"file:///bench/c{i + 1:04d}/locks.py", text[:cut])
        s0 = await editor.daemon.stats()
        t0 = time.perf_counter()
        _, fut = editor.request()
        cold_item = _first_item(await fut)
        cold = (time.perf_counter() - t0) * 1000
        s1 = await editor.daemon.stats()
        # One more key: must not match the suggestion, or the cache (not the KV) would answer.
        ch = text[cut]
        if cold_item and cold_item.startswith(ch):
            ch = "#" if not cold_item.startswith("#") else "@"
        editor.type(ch)
        t0 = time.perf_counter()
        _, fut = editor.request()
        await fut
        warm = (time.perf_counter() - t0) * 1000
        s2 = await editor.daemon.stats()
        editor.close()
        out.append(
            {
                "offset": cut,
                "cold_ms": cold,
                "after_key_ms": warm,
                "cold_reused_tokens": stats_delta(s0, s1).get("local.cachedPromptTokens"),
                "after_key_reused_tokens": stats_delta(s1, s2).get("local.cachedPromptTokens"),
            }
        )
        if verbose:
            print(f"  kv sample {i + 1}: cold {cold:.0f} ms, after one key {warm:.0f} ms")
    return out


ACCEPT_SPAN = 6000  # characters after the typing start where accept samples are taken


def _line_ends(text: str, start: int) -> list[int]:
    """Offsets at the ends of non-blank lines in the ACCEPT_SPAN after `start`."""
    span = text[start : start + ACCEPT_SPAN]
    return [
        start + i for i, ch in enumerate(span) if ch == "\n" and span[:i].rstrip(" ")[-1:] != "\n"
    ]


async def _accept_next(
    editor: Editor, text: str, samples: int, verbose: bool
) -> list[dict[str, Any]]:
    """Phase 1b (see the module docstring): one record per position asked, until `samples`
    of them showed ghost text (at most 3 * samples positions)."""
    start, _ = _split(text)
    ends = _line_ends(text, len(start))
    out: list[dict[str, Any]] = []
    for i, cut in enumerate(ends[:: max(1, len(ends) // (3 * samples))][: 3 * samples]):
        if sum(1 for r in out if r["shown"]) >= samples:
            break
        editor.open(f"file:///bench/a{i + 1:04d}/locks.py", text[:cut])
        start_stats = await editor.daemon.stats()
        t0 = time.perf_counter()
        shown = _first_item(await editor.request()[1])
        rec: dict[str, Any] = {"offset": cut, "shown_ms": (time.perf_counter() - t0) * 1000}
        if shown:
            await asyncio.sleep(ACCEPT_S)
            before = await editor.daemon.stats()
            editor.type(shown)  # accept: the whole suggestion goes in
            t0 = time.perf_counter()
            nxt = _first_item(await editor.request()[1])
            rec["next_ms"] = (time.perf_counter() - t0) * 1000
            counters = stats_delta(before, await editor.daemon.stats())
            rec["ahead_hit"] = bool(counters.get("inline.aheadHits"))
            # Where the time goes: the job still running when the user accepted (the request
            # waits for it), or cut by its cap and gone on from (aheadResumed).
            rec["job_running"] = bool((before or {}).get("inline.aheadActive"))
            rec["resumed"] = bool(counters.get("inline.aheadResumed"))
            # Written by the shown line's own generation going on (types.GoOn), no job of its own.
            whole = stats_delta(start_stats, await editor.daemon.stats())
            rec["continued"] = bool(whole.get("inline.aheadContinued"))
            rec["next_item"] = nxt
        rec["shown"] = shown
        editor.close()
        out.append(rec)
        if verbose and shown:
            print(
                f"  accept {i + 1}: next in {rec['next_ms']:.0f} ms, ahead {rec['ahead_hit']}, "
                f"job running {rec['job_running']}, resumed {rec['resumed']}"
            )
    return out


def _prefilled(counters: dict[str, Any]) -> str:
    """Prompt tokens and those prefilled per request that reached the model (mlxd/stats:
    local.promptTokens, cachedPromptTokens): what the model had to read, load-free."""
    n, prompt = counters.get("local.generations"), counters.get("local.promptTokens")
    if not n or prompt is None:
        return "-"
    new = prompt - counters.get("local.cachedPromptTokens", 0)
    return f"{prompt / n:.0f} / {new / n:.0f}"


def _accept_rows(accepts: list[dict[str, Any]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """Table rows and the summary of phase 1b."""
    done = [a for a in accepts if "next_ms" in a]
    lat = summary([a["next_ms"] for a in done])
    hits = sum(1 for a in done if a["ahead_hit"])
    running = sum(1 for a in done if a.get("job_running"))
    resumed = sum(1 for a in done if a.get("resumed"))
    continued = sum(1 for a in done if a.get("continued"))
    share = hits / len(done) if done else None
    rows = [
        [
            f"accept -> next ghost text, ms (accept {ACCEPT_S * 1000:.0f} ms after it shows)",
            fmt_stat(lat, digits=0),
        ],
        [
            "accept -> next answered from work ahead (mlxd/stats aheadHits)",
            f"{hits}/{len(done)} = {fmt(share and share * 100, '%', 0)}"
            + (f" ({len(accepts) - len(done)} samples showed no ghost text)" if accepts else ""),
        ],
        [
            "accept -> next: job still running at the accept / went on from its cut text",
            f"{running}/{len(done)} / {resumed}/{len(done)}",
        ],
        [
            "accept -> next: written by the shown line's generation going on (aheadContinued)",
            f"{continued}/{len(done)}",
        ],
    ]
    return rows, {"accept_next_ms": lat, "accept_next_ahead_share": share}


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    samples = opts.n(DEFAULT_KV_SAMPLES)
    text = Path(SOURCE).read_text()
    cfg = local_config(opts.model)
    async with Daemon(cfg) as daemon:
        await daemon.wait_ready()
        blas = daemon.blas()
        log(f"mlxd BLAS: {blas}")
        editor = Editor(daemon)
        for i in range(opts.warmup):  # one request on a throwaway document
            editor.open(f"file:///bench/warm{i}/x.py", "import os\n\ndef main():\n    ")
            await editor.request()[1]
            editor.close()
        start, _ = _split(text)
        log(f"replaying {TYPED_CHARS} characters of {SOURCE} from line {start.count(chr(10)) + 1}")
        t0 = time.perf_counter()
        before = await daemon.stats()
        replay = await _replay(editor, text, opts.verbose)
        await asyncio.sleep(0.5)  # let cancelled generations wind down before counting
        after = await daemon.stats() or {}
        counters = stats_delta(before, after)
        replay_s = time.perf_counter() - t0
        log(f"accept -> next: accept {ACCEPT_S * 1000:.0f} ms after the ghost text shows")
        accepts = await _accept_next(editor, text, opts.n(DEFAULT_ACCEPT_SAMPLES), opts.verbose)
        log("KV reuse: cold prompt vs one keystroke later (inline.max_tokens = 1)")
        # No work ahead here: a warm-up after didOpen would make the cold prompt warm.
        await daemon.reconfigure({**cfg, "inline": {"max_tokens": 1, "background": False}})
        kv = await _kv_reuse(editor, text, samples, opts.verbose)

    reqs = replay["requests"]
    answered = [r for r in reqs if "latency_ms" in r and "error" not in r]
    cancelled = [r for r in reqs if r["cancelled"]]
    fast = [r for r in answered if r["latency_ms"] < CACHE_MS]
    by_kind = {k: summary([r["latency_ms"] for r in answered if r["kind"] == k]) for k in KINDS}
    sent = {k: sum(1 for r in reqs if r["kind"] == k) for k in KINDS}
    dropped = {k: sum(1 for r in cancelled if r["kind"] == k) for k in KINDS}
    lat = summary([r["latency_ms"] for r in answered])
    model_lat = summary([r["latency_ms"] for r in answered if r["latency_ms"] >= CACHE_MS])
    cold = summary([k["cold_ms"] for k in kv])
    warm = summary([k["after_key_ms"] for k in kv])
    speedup = ratio(cold["median"], warm["median"])
    acks = summary(replay["cancel_ack_ms"])
    line_sims = [r["line_sim"] for r in answered if "line_sim" in r]
    line_sim = sum(line_sims) / len(line_sims) if line_sims else None
    accept_rows, accept_summary = _accept_rows(accepts)
    share = len(fast) / len(answered) if answered else None
    hits, seen = counters.get("inline.cacheHits"), counters.get("inline.requests")
    stats_share = hits / seen if hits is not None and seen else None
    # The hard bound (issue #17 item 3), as the daemon measures it, and the empty answers next
    # to it: meeting the bound by answering nothing would show here.
    bound = {
        "max_ms": InlineConfig().max_ms,
        "slowest_ms": after.get("inline.slowestMs"),
        "late": counters.get("inline.late"),
        # of the answers the editor got (a cancelled request gets none)
        "empty_share": sum(not r.get("item") for r in answered) / len(answered)
        if answered
        else None,
    }

    def row(label: str, sent_n: int, cancel_n: int | str, st: dict[str, Any]) -> list[Any]:
        span = "" if st["n"] == 0 else f"{fmt(st['min'], digits=0)}-{fmt(st['max'], digits=0)}"
        return [
            label,
            sent_n,
            cancel_n,
            st["n"],
            fmt(st["median"], digits=0),
            fmt(st.get("p95"), digits=0),
            span,
        ]

    print_table(
        f"typing: {model_label(opts.model)}, {len(replay['typed'])} characters of {SOURCE} typed "
        f"at {KEY_S * 1000:.0f} ms/key; pauses {WORD_PAUSE_S:.1f} s after a word, up to "
        f"{LINE_PAUSE_S:.1f} s at a line end; {replay_s:.0f} s",
        ["requests", "sent", "cancelled", "answered", "median ms", "p95 ms", "min-max ms"],
        [
            row("all", len(reqs), len(cancelled), lat),
            *(row(f"  {label}", sent[k], dropped[k], by_kind[k]) for k, label in KINDS.items()),
            row(f"  model answers (>= {CACHE_MS:.0f} ms)", model_lat["n"], "", model_lat),
            row("cancel acknowledged (-32800) after", acks["n"], "", acks),
        ],
    )
    print_table(
        "typing: cache and KV reuse",
        ["metric", "measured"],
        [
            [
                "answered from the cache (mlxd/stats: cacheHits / requests)",
                "-"
                if hits is None
                else f"{hits}/{seen} = {fmt(stats_share and stats_share * 100, '%', 0)}",
            ],
            [
                "model generations / cancelled (mlxd/stats)",
                "-"
                if not counters
                else f"{counters.get('inline.generations')} / {counters.get('inline.cancelled')}",
            ],
            [
                "replay: prompt tokens / prefilled (not from the KV cache), per model request",
                _prefilled(counters),
            ],
            [
                f"answered in < {CACHE_MS:.0f} ms (client timing)",
                f"{len(fast)}/{len(answered)} = {fmt(share and share * 100, '%', 0)}",
            ],
            [
                "at a line end: first line shown vs the line typed next, edit similarity "
                "(mean, none shown = 0)",
                f"{fmt(line_sim, digits=2)} (n = {len(line_sims)})",
            ],
            [
                "typed-through answers equal to the rest of the shown item",
                f"{sum(1 for r in answered if r.get('matches_expected'))}/{by_kind['through']['n']}",
            ],
            ["KV reuse: cold prompt, ms", fmt_stat(cold, digits=0)],
            ["KV reuse: one keystroke later, ms", fmt_stat(warm, digits=0)],
            [
                "prompt tokens from the KV cache: cold / after key (median)",
                f"{fmt(summary([k['cold_reused_tokens'] for k in kv])['median'], digits=0)} / "
                f"{fmt(summary([k['after_key_reused_tokens'] for k in kv])['median'], digits=0)}",
            ],
            ["KV reuse speed-up (cold / after key)", fmt(speedup, "x")],
            [
                f"inline.max_ms {bound['max_ms']}: slowest answer ms (mlxd/stats) / late / empty answers",
                f"{fmt(bound['slowest_ms'], digits=0)} / {fmt(bound['late'], digits=0)} / "
                f"{fmt(bound['empty_share'] and bound['empty_share'] * 100, '%', 0)}",
            ],
            *accept_rows,
        ],
    )
    result = {
        "name": "typing",
        "machine": info,
        "params": {
            "model": opts.model,
            "source": SOURCE,
            "source_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "start_line": _split(text)[0].count("\n") + 1,
            "typed_chars": len(replay["typed"]),
            "key_s": KEY_S,
            "word_pause_s": WORD_PAUSE_S,
            "line_pause_s": LINE_PAUSE_S,
            "cache_threshold_ms": CACHE_MS,
            "kv_samples": samples,
        },
        "blas": {"mlxd": blas},
        "summary": {
            "latency_ms": lat,
            "latency_by_kind_ms": by_kind,
            "model_latency_ms": model_lat,
            "line_end_similarity": line_sim,
            "requests": len(reqs),
            "answered": len(answered),
            "cancelled": len(cancelled),
            "cache_share": share,
            "cancel_ack_ms": acks,
            "kv_cold_ms": cold,
            "kv_after_key_ms": warm,
            "inline_bound": bound,
            **accept_summary,
        },
        "mlxd_stats_replay": counters,
        "ratios": {
            "kv_reuse_speedup": speedup,
            "cache_share": stats_share if stats_share is not None else share,
            "cache_share_by_timing": share,
        },
        "requests": reqs,
        "kv_samples": kv,
        "accept_samples": accepts,
    }
    path = write_result("typing", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.histogram(
            "typing",
            f"inline latency while typing ({model_label(opts.model)})",
            {
                label: [r["latency_ms"] for r in answered if r["kind"] == k]
                for k, label in KINDS.items()
            },
            "latency (ms)",
        )
        plots.distributions(
            "typing-kv",
            "KV reuse across a keystroke (inline.max_tokens = 1)",
            {"latency (ms)": {"cold prompt": cold["values"], "after one key": warm["values"]}},
        )
    return result
