"""What the inline engine hands back and counts: items and the engine's counters."""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[int, int, int, int]  # start_line, start_char, end_line, end_char (client encoding)


@dataclass(frozen=True, slots=True)
class InlineItem:
    """One suggestion: replace `range` with `insert_text`."""

    insert_text: str
    range: Range


@dataclass(slots=True)
class EngineStats:
    requests: int = 0
    cache_hits: int = 0
    generations: int = 0  # calls to `generate`
    cancelled: int = 0  # generations stopped: superseded or cancelled by the client
    errors: int = 0  # generations that failed (not for lack of time: out_of_time)
    # Generations that had no token by inline.max_ms (a prompt too long to prefill in time, a
    # busy machine): answered empty, by design; not an error.
    out_of_time: int = 0
    empty: int = 0  # answers with no item (nothing survived post-processing, or no answer)
    # Items shown whose last line a token/time cap cut (a piece of a word, a lone operator).
    fragments: int = 0
    # From a request's arrival to its answer, in ms (issue #17 item 3, inline.max_ms): the
    # longest so far, and the answers that took longer than inline.max_ms.
    slowest_ms: int = 0
    late: int = 0
    # Resting block answers chosen among sampled candidates (inline/rerank.py), and of them
    # the ones where a sampled candidate beat the greedy one.
    reranked: int = 0
    rerank_changed: int = 0
