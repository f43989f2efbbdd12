"""Keys kept out of every log record: a filter on each handler of the root logger, and a record
factory for handlers added later. What to redact comes from the key store (secrets.KeyStore)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol


class Redactor(Protocol):
    """What the log redaction reads from the key store (secrets.KeyStore)."""

    def redact(self, text: str) -> str: ...


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, args, exception and stack text with keys redacted."""

    def __init__(self, store: Redactor) -> None:
        super().__init__()
        self.store = store

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.store)
        return True


def redact_record(record: logging.LogRecord, store: Redactor) -> None:
    try:
        msg = record.getMessage()
    except Exception:  # a bad format string: keep what logging would show, redacted
        msg = f"{record.msg!r} {record.args!r}"
    record.msg = store.redact(msg)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = store.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = store.redact(record.stack_info)


_stores: list[Redactor] = []
_previous_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    record = _previous_factory(*args, **kwargs)
    for store in _stores:
        redact_record(record, store)
    return record


def install_redaction(store: Redactor) -> None:
    """Redact keys from every log record: a filter on each handler of the root logger, and a
    record factory, which also covers handlers added later (an LSP log handler, pytest's)."""
    global _previous_factory
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) and f.store is store for f in handler.filters):
            handler.addFilter(RedactingFilter(store))
    if store not in _stores:
        _stores.append(store)
    if logging.getLogRecordFactory() is not _redacting_factory:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)


def uninstall_redaction(store: Redactor) -> None:
    """Undo install_redaction (for tests; the daemon keeps it for its lifetime)."""
    global _previous_factory
    for handler in logging.getLogger().handlers:
        for f in list(handler.filters):
            if isinstance(f, RedactingFilter) and f.store is store:
                handler.removeFilter(f)
    if store in _stores:
        _stores.remove(store)
    if not _stores and logging.getLogRecordFactory() is _redacting_factory:
        assert _previous_factory is not None
        logging.setLogRecordFactory(_previous_factory)
        _previous_factory = None
