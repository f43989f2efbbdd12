"""The state of one routed request across its attempts, and how streamed text is handed on:
redacted as it streams once a cloud backend generated it (stream_redact: a hostile provider may
echo a key as model output, split across chunks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import AnswerFilter, Piece, StopPolicy
from ..stream_redact import Secrets, StreamRedactor, redacted
from ..types import Delta, DeltaFn, Done, Request


@dataclass(slots=True)
class Run:
    """Mutable state of one routed request."""

    on_delta: DeltaFn | None
    answer: AnswerFilter
    on_reasoning: DeltaFn | None = None
    documents: list[str] = field(default_factory=list)  # what the privacy rules look at
    start: float = field(default_factory=time.monotonic)
    text: str = ""
    reasoning: str = ""
    deltas: int = 0  # answer deltas (not reasoning), of every attempt
    texts: int = 0  # the current attempt's answer deltas (not reasoning)
    thoughts: int = 0  # ... and its reasoning deltas
    first_token: float | None = None
    # Deltas streamed by attempts that then failed: about one token each (a provider's SSE
    # chunk, a local decode step), the part of max_tokens and of the usage they took.
    cut_tokens: int = 0
    cut_by: str = ""  # the last of them
    # (reasoning, text) redactors; they hold text back only once a cloud backend streamed.
    guards: tuple[StreamRedactor, StreamRedactor] | None = None
    cloud: bool = False
    policy: StopPolicy = field(default_factory=StopPolicy)  # where the answer ends
    unusable: bool = False  # inline: the bound cut the attempt's answer before a line ended
    tried: int = 0  # attempts handed to a backend (not skipped)
    gated: bool = True  # the plan applies open circuits (Breakers.gate): not forced, not all open
    # Answer text the redactor held at a cut, the backend that streamed it, and the text shown
    # for it when the continuation's text releases it (a secret's head redacted as the next
    # cloud saw it; as generated before a local one), under that backend's name.
    carried: tuple[str, str, str] = ("", "", "")


def emit(run: Run, piece: Piece, name: str) -> None:
    """Hand the filtered text on, redacted once a cloud backend streamed: answer text to
    `on_delta`, reasoning to `on_reasoning`."""
    reasoning, text = piece.reasoning, piece.text
    if run.guards and run.cloud:
        reasoning = run.guards[0].feed(reasoning) if reasoning else ""
        text = run.guards[1].feed(text) if text else ""
    _hand_on(run, reasoning, _carried_out(run, text), name)


def flush(run: Run, name: str) -> None:
    """Hand on what the redactors hold back: the answer ended (a backend that continues a cut
    answer leaves it held, so that a secret across the cut is still caught: `continued`)."""
    if run.guards and run.cloud:
        by = name
        if run.carried[0] and run.guards[1].held == run.carried[0]:  # held since the cut
            by, run.carried = run.carried[1], ("", "", "")  # the one that streamed it
        _hand_on(run, run.guards[0].flush(), "", name)
        _hand_on(run, "", _carried_out(run, run.guards[1].flush()), by)


def _carried_out(run: Run, text: str) -> str:
    """`text` less the carried text it starts with, handed on first as shown under its own
    backend's name (a secret joined across the cut is redacted as one: then it is all the
    next backend's)."""
    carried, by, shown = run.carried
    if text and carried:
        run.carried = ("", "", "")
        if text.startswith(carried):
            _hand_on(run, "", shown, by)
            return text[len(carried) :]
    return text


def held(run: Run) -> str:
    """Answer text the redactor holds back (not handed on yet)."""
    return run.guards[1].held if run.guards else ""


def continued(req: Request, run: Run, local: bool, secrets: Secrets | None) -> str:
    """The assistant prefix the next backend continues: the request's, then what earlier
    attempts streamed, the text held back (by the redactor, then by the answer filter)
    included: as generated for a local model, redacted for a cloud one. The redactor keeps
    what it holds either way, so a secret split across the cut is still caught as the next
    backend's text joins it (one released at the cut left its tail in the open; attack,
    session 27)."""
    run.answer.new_attempt()
    keys = None if local else secrets  # what a cloud gets is redacted

    def sent(text: str) -> str:
        return redacted(keys, text) if keys is not None and text else text

    if held(run) and run.cut_by:
        run.carried = (held(run), run.cut_by, sent(held(run)))
    # Apart: a secret's head the redactor holds is cut off at *its* end (joined with the
    # filter's held text after it, it was mid-text, where only whole secrets are redacted).
    return req.assistant_prefix + run.text + sent(held(run)) + sent(run.answer.held)


def so_far(run: Run) -> str:
    """The answer so far: handed on, held back by the redactor, then by the answer filter
    (a line's newline until the next line shows it closes no fence)."""
    return run.text + held(run) + run.answer.held


def streamed(run: Run) -> int:
    """Characters of answer streamed so far, handed on or held back (to redact)."""
    back = sum(len(g.held) for g in run.guards) if run.guards else 0
    return len(run.text) + back + run.answer.unreleased


def _hand_on(run: Run, reasoning: str, text: str, name: str) -> None:
    if reasoning:
        run.reasoning += reasoning
        if run.on_reasoning:
            run.on_reasoning(reasoning, name)
    if text:
        run.text += text
        if run.on_delta:
            run.on_delta(text, name)


def inline_bound(run: Run, req: Request) -> float | None:
    """When an inline request must be answered, whichever backend serves it (issue #17 item 3):
    its deadline (inline.max_ms from its arrival), else max_time_s after the router got it;
    None: only the request's total budget."""
    if req.deadline is not None:
        return req.deadline
    return run.start + req.max_time_s if req.max_time_s else None


# Reasoning deltas a cloud attempt may stream: some providers leave reasoning out of
# max_tokens (DeepSeek's reasoner: up to 32K tokens of it), so it has a cap of its own; a
# provider flooding reasoning sent an editor ~100 MB within total_s (attack, session 26).
MAX_REASONING_DELTAS = 32_768


def past_max_tokens(run: Run, req: Request, reasoning: bool, local: bool) -> bool:
    """Whether a provider's delta goes past the request's max_tokens (answer deltas), or past
    MAX_REASONING_DELTAS (reasoning): it ignores them, or floods. Each of its deltas holds a
    token or more (a local model's need not: held stop text, its own limit holds)."""
    if local:
        return False
    if reasoning:
        run.thoughts += 1
        return run.thoughts > MAX_REASONING_DELTAS
    run.texts += 1
    return req.max_tokens is not None and run.texts > req.max_tokens


def answered(run: Run, whole: bool) -> bool:
    """Whether an inline request has answer text (`whole`: a whole line of it), after the
    answer filter: reasoning, whitespace or a thinking model's inline tags are none (each
    blanked ghost text with no fallback; attack, session 26)."""
    return whole_line(run) if whole else bool(so_far(run).strip())


def whole_line(run: Run) -> bool:
    """Whether the answer so far holds a line of text that ended (not a piece of one)."""
    return "\n" in so_far(run).lstrip()


def take(event: Delta, req: Request, run: Run, name: str, deltas: int, local: bool) -> Done | None:
    """One streamed token of `name` (`deltas`: this attempt's so far), filtered and handed on;
    a Done when the answer ends here."""
    if past_max_tokens(run, req, event.reasoning, local):
        return Done("length", 0, deltas - 1, name)
    run.deltas += not event.reasoning  # reasoning is no part of max_tokens (cut_tokens)
    if run.first_token is None:
        run.first_token = time.monotonic()
    piece = run.answer.feed(event.text, event.reasoning)
    emit(run, piece, name)
    if run.answer.stopped:  # a stop sequence or a closing fence: close it
        return Done("stop", 0, deltas, name)
    # Only a newline can finish a line: count them only when one arrives.
    if "\n" in piece.text and run.policy.enough_lines(run.text + held(run)):
        return Done("stop", 0, 0, name)  # enough lines: the rest is unwanted
    return None
