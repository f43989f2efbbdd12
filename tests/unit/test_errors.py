"""The error tree carries the router's policy as class data (mlxd/errors.py)."""

from __future__ import annotations

import pytest

from mlxd.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConnectError,
    HTTPStatusError,
    ModelNotFound,
    NotConfigured,
    ProtocolError,
    RateLimited,
    ServerError,
    StreamCut,
    Timeout,
)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimited("busy", 429), True),
        (RateLimited("busy", 429, retry_after=2.0), True),
        (ServerError("unavailable", 503), True),
        (ServerError("bad gateway", 502, retry_after=1.0), True),
        (ServerError("internal", 500), False),
        (AuthError("no", 401, retry_after=1.0), False),
        (ModelNotFound("gone", 404), False),
        (BadRequest("bad", 400), False),
        (HTTPStatusError("teapot", 418), False),
        (ConnectError("refused"), False),
        (Timeout("slow", "first_token"), False),
        (ProtocolError("bad sse"), False),
        (StreamCut("cut"), False),
    ],
)
def test_only_busy_answers_are_retried_on_the_same_backend(
    error: BackendError, retryable: bool
) -> None:
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (BadRequest("bad", 422), False),  # the request is wrong, not the backend
        (NotConfigured("no key"), False),
        (ServerError("internal", 500), True),
        (RateLimited("busy", 429), True),
        (ConnectError("refused"), True),
        (Timeout("slow", "idle"), True),
    ],
)
def test_the_breaker_counts_only_failures_of_the_backend(error: BackendError, counts: bool) -> None:
    assert error.counts_against_breaker is counts
