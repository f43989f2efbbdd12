"""The SSE parser follows the event-stream rules, whatever the chunk boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlxd.backends.sse import SSEEvent, SSEParser
from mlxd.errors import ProtocolError


def parse(*chunks: bytes, max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    p = SSEParser(max_event_bytes)
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def test_data_lines_dispatch_on_blank_line():
    assert parse(b"data: one\n\ndata: two\n\n") == [
        SSEEvent("message", "one"),
        SSEEvent("message", "two"),
    ]


def test_multi_line_data_is_joined_with_newline():
    assert parse(b"data: a\ndata: b\ndata:\ndata: c\n\n") == [SSEEvent("message", "a\nb\n\nc")]


def test_event_name_and_id():
    evs = parse(b"event: message_stop\nid: 7\ndata: {}\n\ndata: x\n\n")
    assert evs == [SSEEvent("message_stop", "{}", "7"), SSEEvent("message", "x", "7")]


def test_comments_and_keepalives_are_skipped():
    assert parse(b": keep-alive\n\n: OPENROUTER PROCESSING\ndata: x\n\n") == [
        SSEEvent("message", "x")
    ]


def test_only_one_leading_space_is_removed_and_no_colon_means_empty_value():
    assert parse(b"data:  two spaces\n\ndata\n\n") == [
        SSEEvent("message", " two spaces"),
        SSEEvent("message", ""),
    ]


def test_event_without_data_is_not_dispatched():
    assert parse(b"event: ping\n\ndata: after\n\n") == [SSEEvent("message", "after")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes):
    stream = eol.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(stream) == [SSEEvent("e", "a\nb"), SSEEvent("message", "c")]


def test_crlf_split_across_chunks_is_one_line_ending():
    # "\r" ends one chunk, "\n" starts the next: one line break, not a blank line.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent("message", "a\nb")]


def test_utf8_character_split_across_chunks():
    raw = "data: héllo ✓ 😀\n\n".encode()
    cut = raw.index("😀".encode()) + 2
    assert parse(raw[:cut], raw[cut:]) == [SSEEvent("message", "héllo ✓ 😀")]


def test_byte_order_mark_at_start_is_ignored():
    assert parse(b"\xef\xbb\xbfdata: x\n\n") == [SSEEvent("message", "x")]


def test_unterminated_event_at_end_is_not_dispatched():
    assert parse(b"data: complete\n\ndata: partial") == [SSEEvent("message", "complete")]


def test_oversized_event_raises_protocol_error():
    with pytest.raises(ProtocolError, match="exceeds 1000 bytes"):
        parse(b"data: " + b"x" * 600 + b"\n", b"data: " + b"y" * 600 + b"\n", max_event_bytes=1000)


def test_oversized_line_without_newline_raises_protocol_error():
    p = SSEParser(1000)
    p.feed(b"data: " + b"x" * 900)
    with pytest.raises(ProtocolError):
        p.feed(b"x" * 200)


def test_many_events_below_the_limit_are_fine():
    # The bound is per event, not per stream.
    evs = parse(
        b"".join(b"data: " + b"x" * 500 + b"\n\n" for _ in range(100)), max_event_bytes=1000
    )
    assert len(evs) == 100


_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
)


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["", "delta", "stop"]), st.lists(_text, min_size=1, max_size=3)),
        max_size=6,
    ),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_chunking_gives_the_same_events(events, eol, cuts):
    lines: list[str] = []
    for name, datas in events:
        if name:
            lines.append(f"event: {name}")
        lines.extend(f"data: {d}" for d in datas)
        lines.append("")
    raw = (eol.join(lines) + (eol if lines else "")).encode()
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    expected = [SSEEvent(name or "message", "\n".join(datas)) for name, datas in events]
    assert parse(*chunks) == expected
