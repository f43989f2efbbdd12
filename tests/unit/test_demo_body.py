"""Issue #18, new-user finding 15: `make demo` printed an inline body ending in a bare `else:`
(max_tokens cut it there). The demo shows the body up to its last complete statement."""

from __future__ import annotations

import pytest

from mlxd.cli.human import complete_statements


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (
            "\n    if n < 2:\n        return n\n    else:",
            "\n    if n < 2:\n        return n",
        ),
        (
            "\n    a, b = 0, 1\n    for _ in range(n):\n        if a:\n",
            "\n    a, b = 0, 1",
        ),
        ("\n    return n\n\n", "\n    return n"),
        ("\n    return fibonacci(n - 1) + fibonacci(n - 2)", None),  # complete: unchanged
        ("  # no colon at all", None),
        ("\n    else:", ""),  # nothing complete: the demo says "no suggestion"
    ],
)
def test_a_body_is_cut_back_to_its_last_complete_statement(body: str, shown: str | None) -> None:
    assert complete_statements(body) == (body if shown is None else shown)
