"""A cursor's warm-up prefills narrow windows first (models.warm_rungs), and a time-capped
request there takes the widest one the KV cache holds (backends.reuse.widest_cached, in the
local backend's time fit) instead of a cold window cut to what the time cap allows (issue #16
item 4). A character-level tokenizer: one token a character."""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

from mlxd.backends.local import LocalBackend
from mlxd.backends.reuse import widest_cached
from mlxd.models import RecentPrompts, SpeedMeter, warm_rung, warm_rungs
from mlxd.types import Request

DOC = "".join(f"v{n:04d} = f({n})\n" for n in range(400))  # 14 characters a line


class Chars:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)


def test_the_rungs_double_from_128_below_the_budget() -> None:
    assert warm_rungs(1024) == [128, 256, 512]
    assert warm_rungs(1000) == [128, 256, 512]
    assert warm_rungs(128) == [] and warm_rungs(64) == []


def test_the_widest_window_the_cache_holds_enough_of_is_taken() -> None:
    windows = {b: ([1] * 8 + [b] * b, 8) for b in (128, 256, 512)}  # a shared 8-token header
    held = RecentPrompts().plus([windows[128][0], windows[256][0][:200]])
    got = widest_cached(lambda b: windows[b], [128, 256, 512], allowed=70, recent=held)
    assert got == windows[256]  # 64 of its tokens to prefill; 512 shares only the header
    assert widest_cached(lambda b: windows[b], [128, 256, 512], 40, held) == windows[128]
    assert widest_cached(lambda b: windows[b], [256, 512], 40, held) is None


def backend() -> tuple[LocalBackend, SimpleNamespace]:
    b = LocalBackend("local", "unused", pool=None)  # type: ignore[arg-type]
    b.speed.prefill_tps, b.speed.decode_tps = 100.0, 1000.0  # 1 s buys ~80 new prompt tokens
    return b, SimpleNamespace(tokenizer=Chars(), model=None, name="chars")


def test_a_warm_up_prefills_no_wider_than_one_bound_allows() -> None:
    # On a machine that prefills 121 tokens/s a 256-token rung took 1.7 s, and the suggestion
    # at rest came after a request 3 s after the click; one inline.max_ms buys 128 there.
    speed = SpeedMeter(prefill_tps=121.0)
    assert warm_rung(256, speed, max_ms=1500) == 128  # 1.2 s x 121 = 145 tokens
    speed.prefill_tps = 320.0
    assert warm_rung(256, speed, max_ms=1500) == 256  # 384 tokens: the widest asked for
    assert warm_rung(512, speed, max_ms=1500) == 256
    speed.prefill_tps = 20.0
    assert warm_rung(256, speed, max_ms=1500) == 128  # never narrower than RUNG_MIN


def test_a_capped_request_where_a_warm_up_ran_gets_its_widest_rung() -> None:
    b, lm = backend()
    b.inline_cfg.max_ms = 4000  # a 256-token rung prefills within it
    warm = Request(kind="inline", prefix=DOC, suffix="", max_tokens=0)
    rungs = {n: b._fit(lm, replace(warm, narrow_to=n), 0, RecentPrompts())[0] for n in (128, 256)}
    assert len(rungs[128]) <= 128 < len(rungs[256]) <= 256
    assert DOC.endswith(Chars().decode(rungs[256]))  # the text before the cursor
    capped = replace(warm, max_tokens=16, deadline=time.monotonic() + 1.0)
    cold = b._fit(lm, capped, 16, RecentPrompts())[0]
    assert len(cold) < 128  # the time cap alone: a window of what 1 s prefills
    warmed = RecentPrompts().plus([rungs[128], rungs[256]])
    assert b._fit(lm, capped, 16, warmed)[0] == rungs[256]


def test_a_rung_is_not_prefilled_where_the_cache_holds_the_full_window() -> None:
    b, lm = backend()
    warm = Request(kind="inline", prefix=DOC[:3000], suffix="", max_tokens=0)
    full = b._fit(lm, warm, 0, RecentPrompts())[0]
    assert b._fit(lm, replace(warm, narrow_to=128), 0, RecentPrompts())[0] != full
    # The user typed here a moment ago: the full window is held, and is what the rung gets.
    assert b._fit(lm, replace(warm, narrow_to=128), 0, RecentPrompts().plus([full]))[0] == full
