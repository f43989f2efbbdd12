"""`make bench NAME` accepts every bench `python -m bench` knows: the names are no-op goals
in mk/bench.mk, and one missing there made `make bench open-files` fail after its report."""

from __future__ import annotations

import re
from pathlib import Path

from bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


def test_every_bench_is_a_make_goal() -> None:
    text = (ROOT / "mk" / "bench.mk").read_text()
    names = re.search(r"^BENCH_NAMES := (.*)$", text, re.M)
    assert names is not None
    assert set(names.group(1).split()) == {*BENCHMARKS, "all"}
