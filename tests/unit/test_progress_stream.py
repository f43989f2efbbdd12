"""server/progress_stream.py: the pieces of one event-loop turn go out together, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from mlxd.server.progress_stream import ProgressStream


class Sent:
    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []

    def progress(self, params: Any) -> None:
        assert params.token == "tok"
        self.values.append(params.value)


async def test_one_turn_is_one_value_per_run_of_a_field_and_backend_in_order() -> None:
    ls = Sent()
    stream = ProgressStream(ls, "tok")
    think, say = stream.on("reasoning"), stream.on("delta")
    think("a", "cloud")
    think("b", "cloud")
    say("x", "cloud")
    say("y", "local")  # a continuation by another backend: its own value
    think("c", "local")
    assert ls.values == []  # nothing before the turn ends
    await asyncio.sleep(0)
    assert ls.values == [
        {"reasoning": "ab", "backend": "cloud"},
        {"delta": "x", "backend": "cloud"},
        {"delta": "y", "backend": "local"},
        {"reasoning": "c", "backend": "local"},
    ]
    say("z", "local")  # a later turn: a value of its own
    stream.flush()  # the request's end: sent now, not after its response
    assert ls.values[-1] == {"delta": "z", "backend": "local"} and len(ls.values) == 5
    await asyncio.sleep(0)
    assert len(ls.values) == 5  # the turn's scheduled flush finds nothing left
