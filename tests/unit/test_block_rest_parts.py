"""The local backend's parts of issue #16 item 2 (inline/rest.py): a continuation finds the
prompt its answer came from (Heads), and a job takes over the cut prefill it extends."""

from __future__ import annotations

from mlxd.backends.local import LocalBackend
from mlxd.backends.reuse import Heads
from mlxd.models import Job
from mlxd.types import Request


def _request(prefix: str, suffix: str = "", header: str = "# path: a.py\n") -> Request:
    return Request(kind="inline", prefix=prefix, suffix=suffix, language="python", header=header)


def test_heads_answer_the_same_text_only_and_keep_the_newest() -> None:
    heads = Heads(size=2)
    heads.add(_request("def f():"), [1, 2, 3])
    assert heads.get(_request("def f():")) == [1, 2, 3]
    assert heads.get(_request("def f(): ")) is None  # another position
    assert heads.get(_request("def f():", suffix="\nx")) is None  # another suffix
    assert heads.get(_request("def f():", header="# path: b.py\n")) is None
    heads.add(_request("a"), [4])
    heads.add(_request("b"), [5])
    assert heads.get(_request("def f():")) is None  # the oldest went
    assert (heads.get(_request("a")), heads.get(_request("b"))) == ([4], [5])


def _warming(tokens: list[int]) -> Job:
    return Job(tokens=tokens, max_tokens=0, temperature=0.0, stop=[], emit=print, background=True)


def test_a_job_takes_over_the_cut_prefill_its_prompt_extends() -> None:
    backend = LocalBackend("local", "tiny", pool=None)  # type: ignore[arg-type]
    backend._warming = warming = _warming([1, 2, 3])
    backend._take_over([1, 2, 4, 5])  # another prompt: the prefill goes on
    assert backend._warming is warming and not warming.cancelled.is_set()
    backend._take_over([1, 2, 3, 9])
    assert backend._warming is None and warming.cancelled.is_set()
