"""Why an inline request showed nothing, or fewer items than it could: one debug record per
request (logger `mlxd.inline.why`, on with `MLXD_LOG_LEVEL=DEBUG`).

The engine's parts say what they dropped with `note` (post-processing rules, a cap that cut
the answer, a failed generation, an empty cached answer) while `explained` (the decorator on
`InlineEngine.complete`) collects the notes of its own request through a context variable, adds
what it sees from outside (language off, superseded, cancelled, alternatives) and logs them
once. With debug off nothing is collected.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Record:
    """The notes of one request: `answers` has one entry per cleaned answer (None: kept)."""

    notes: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    done: bool = False


_current: ContextVar[_Record | None] = ContextVar("mlxd_inline_why", default=None)
# Requests started per (engine, document): a change while one ran means a newer one superseded
# it (engine: each session of a shared daemon has its own).
_started: Counter[tuple[int, str]] = Counter()


def collecting() -> bool:
    """Whether the running request is being explained (debug on)."""
    record = _current.get()
    return record is not None and not record.done


def note(reason: str) -> None:
    """Adds `reason` to the running request's record (nothing when debug is off)."""
    record = _current.get()
    if record is not None and not record.done:
        record.notes.append(reason)


def answer(dropped: str | None) -> None:
    """One generated answer was cleaned: None when something of it was kept, else why not."""
    record = _current.get()
    if record is not None and not record.done:
        record.answers.append(dropped)


Complete = Callable[..., Awaitable[list[Any]]]


def explained(complete: Complete) -> Complete:
    """Wraps `InlineEngine.complete`: with debug on, logs one record per request saying how
    many items it returned and, when none or fewer than asked for, why."""

    @functools.wraps(complete)
    async def wrapper(engine: Any, text: str, line: int, character: int, **kwargs: Any) -> Any:
        if not log.isEnabledFor(logging.DEBUG):
            return await complete(engine, text, line, character, **kwargs)
        uri, language = kwargs.get("uri", ""), kwargs.get("language", "")
        where = f"{uri} {line}:{character}"  # never the text: it may be a secret
        record = _Record()
        token = _current.set(record)
        key = (id(engine), uri)
        _started[key] += 1
        seen = _started[key]
        items: list[Any] = []
        try:
            items = await complete(engine, text, line, character, **kwargs)
        except asyncio.CancelledError:
            record.notes.append("cancelled by the client")
            raise
        except Exception as exc:
            record.notes.append(f"failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            record.done = True
            _current.reset(token)
            if _started[key] != seen:
                record.notes.append("superseded by a newer request for this document")
            else:  # the newest request of its document forgets it
                del _started[key]
            if not engine.enabled_for(language):
                record.notes.append(f"inline completion is off for language {language!r}")
            reasons = _reasons(record, items, bool(kwargs.get("invoked")))
            count = f"{len(items)} item{'' if len(items) == 1 else 's'}"
            log.debug("inline %s: %s%s", where, count, f": {reasons}" if reasons else "")
        return items

    return wrapper


def _reasons(record: _Record, items: list[Any], invoked: bool) -> str:
    """The record's notes as one line: the first answer's fate, the alternatives', the rest."""
    notes = list(record.notes)
    first, *alternatives = record.answers or [None]
    if not items and record.answers and first is not None:
        notes.insert(0, first)
    elif not items and not record.answers and not notes:
        notes.append("no answer to clean")
    if invoked and items:
        if alternatives:
            emptied = [a for a in alternatives if a is not None]
            same = len(alternatives) - len(emptied) - (len(items) - 1)
            parts = [f"{len(alternatives)} alternatives sampled, {len(items) - 1} kept"]
            parts += [f"one dropped: {a}" for a in emptied]
            parts += ["one dropped: the same as another item"] * max(0, same)
            notes.append("; ".join(parts))
        elif len(items) == 1:
            notes.append("no alternatives sampled (only a local model samples them)")
    return "; ".join(notes)
