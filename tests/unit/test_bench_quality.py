"""The quality benchmark's instrument: holes, the naive multi-line cut, the scores."""

from __future__ import annotations

from bench.quality import (
    _cut,
    _dedent_at,
    _multi_holes,
    bootstrap_ci,
    edit_similarity,
    make_holes,
    score,
)

SRC = """import os


def f(x):
    if x:
        return 1

    return 2
""".split("\n")


def test_edit_similarity_is_normalised_levenshtein() -> None:
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "abc") == 0.0
    assert edit_similarity("kitten", "sitting") == 1 - 3 / 7


def test_a_multi_line_hole_is_the_body_below_its_header() -> None:
    holes = list(_multi_holes(SRC, "python"))
    assert holes == [(3, 8), (4, 6)]  # def f(x): ... return 2; if x: ... return 1
    text, offset, answer = _cut(SRC, 4, len(SRC[4]), 6)
    assert text[:offset].endswith("    if x:")
    assert answer == "\n        return 1"
    assert text[offset:].startswith("\n\n    return 2")


def test_a_single_line_hole_is_the_rest_of_the_line() -> None:
    text, offset, answer = _cut(SRC, 5, 11, None)
    assert (text[:offset].split("\n")[-1], answer) == ("        ret", "urn 1")
    assert text[offset:].startswith("\n\n    return 2")


def test_a_share_of_single_holes_is_cut_at_the_line_start_after_its_indentation() -> None:
    holes = [h for h in make_holes("python", 20) if h.kind == "single"]
    starts = [h for h in holes if h.line_start]
    assert 0 < len(starts) < len(holes)
    for h in starts:  # the cursor after Enter in an editor that indents: the line's code is due
        before = h.text[: h.offset].split("\n")[-1]
        assert not before.strip() and h.answer.strip() and not h.answer[0].isspace()
    for h in holes:
        if not h.line_start:  # inside the code, at least one character into it
            assert h.text[: h.offset].split("\n")[-1].strip()


def test_naive_multi_line_stops_at_the_first_line_no_deeper_than_the_header() -> None:
    out = "\n        y = 1\n\n        return y\n    z = 2\n"
    assert out[: _dedent_at(out, 4)] == "\n        y = 1\n\n        return y"
    assert _dedent_at("\n        y = 1\n    z", 4) is None  # the dedented line is unfinished


def test_scores_ignore_trailing_whitespace_and_bootstrap_brackets_the_mean() -> None:
    assert score_of("return 1  \n", "return 1")["exact"]
    assert score_of("", "x")["empty"]
    lo, hi = bootstrap_ci([0.0, 0.5, 1.0, 0.5])  # type: ignore[misc]
    assert lo <= 0.5 <= hi


def score_of(got: str, answer: str) -> dict[str, object]:
    from bench.quality import Hole

    return score(Hole("h", "python", "python", "single", "p", "", 0, answer), got)


def test_files_are_taken_one_package_at_a_time() -> None:
    import random
    from pathlib import Path

    from bench.quality import _interleave

    files = [(f"big/{i}.py", Path(f"{i}")) for i in range(6)] + [("small/a.py", Path("a"))]
    order = [rel.split("/")[0] for rel, _ in _interleave(files, random.Random(1))]
    assert order[:2] == ["big", "small"]  # the package with one file is not drowned out


def test_a_loss_is_classified_by_its_cause() -> None:
    from bench.quality_trace import classify

    def row(text: str, sim: float, ms: float) -> dict[str, object]:
        return {"text": text, "sim": sim, "empty": not text, "latency_ms": ms}

    naive = {"text": "x", "sim": 0.5}
    result = {
        "holes": [
            {"id": "cap", "answer": "x", "naive": naive, "mlxd@3s": row("", 0.0, 1500)},
            {"id": "drop", "answer": "x", "naive": naive, "mlxd@3s": row("", 0.0, 300)},
            {"id": "worse", "answer": "x", "naive": naive, "mlxd@3s": row("y", 0.1, 900)},
            {"id": "win", "answer": "x", "naive": naive, "mlxd@3s": row("x", 1.0, 900)},
        ]
    }
    causes = {c["id"]: c["cause"] for c in classify(result, 1500)}
    assert causes == {"cap": "time cap", "drop": "empty", "worse": "worse text"}


def test_a_missing_corpus_package_stops_the_bench_unless_deselected(monkeypatch, tmp_path) -> None:
    import bench.quality as quality
    import pytest

    present = tmp_path / "present"
    present.mkdir()
    (present / "m.py").write_text("def f(x):\n    return x\n" * 40)
    sources = [("present", present, ("*.py",)), ("absent", tmp_path / "absent", ("*.py",))]
    monkeypatch.setitem(quality.SOURCES, "python", sources)
    monkeypatch.delenv("MLXD_BENCH_PACKAGES", raising=False)
    with pytest.raises(SystemExit, match="'absent' is not installed.*make bench"):
        quality._files("python")
    monkeypatch.setenv("MLXD_BENCH_PACKAGES", "present")
    assert [rel for rel, _ in quality._files("python")] == ["present/m.py"]
