"""One StopPolicy (issue #13): where an answer ends — stop strings, "one line only", max_lines,
end-of-text / FIM markers — is decided in models/stops.py and nowhere else. Before, "one line
only" lived in three places (the engine's "\\n" stop, the router counting finished lines,
post-processing's first_line_only / first_lines) and the end markers in post-processing."""

from __future__ import annotations

import ast

import pytest

from mlxd.models import StopPolicy, first_lines
from mlxd.types import Request
from tests.python_ast import parse
from tests.unit.import_rules import daemon_modules

HOME = "mlxd.models.stops"


# --- the policy ---------------------------------------------------------------------------------
def test_one_line_only_is_a_newline_stop_and_cuts_at_the_first_newline() -> None:
    policy = StopPolicy.inline(single_line=True, max_lines=3)
    assert policy.strings == ["\n"]
    assert policy.cut("a, b)\n    return x") == "a, b)"
    assert policy.cut("\nnext line") == ""


def test_max_lines_counts_lines_with_text_only() -> None:
    assert StopPolicy.inline(False, 1).cut("a, b)\n    return x") == "a, b)"
    assert StopPolicy.inline(False, 1).cut("\n\n    y = 2\n    z = 3") == "\n\n    y = 2"
    assert first_lines("x\n\ny\nz", 2) == "x\n\ny"
    assert first_lines("only", 3) == "only"
    assert StopPolicy.inline(False, None).strings == []


def test_enough_lines_once_max_lines_are_finished() -> None:
    policy = StopPolicy.inline(False, 2)
    assert not policy.enough_lines("a\n\nb")  # the second line is not finished yet
    assert policy.enough_lines("a\n\nb\n")
    assert not StopPolicy().enough_lines("a\nb\nc\n")  # no max_lines: never


def test_end_markers_that_came_through_as_text_end_the_answer() -> None:
    assert StopPolicy().cut("x + 1<|endoftext|>garbage") == "x + 1"
    assert StopPolicy().cut("a<file_sep>b<|im_end|>") == "a"
    assert StopPolicy().cut("<s>bold</s>") == "<s>bold</s>"  # HTML is not an end marker


def test_the_policy_of_a_request_is_the_one_the_engine_put_in() -> None:
    policy = StopPolicy.inline(single_line=True, max_lines=1)
    req = Request(kind="inline", stop=policy.strings, max_lines=policy.max_lines)
    assert StopPolicy.of(req) == policy


# --- in one place -------------------------------------------------------------------------------
# The pieces the policy is made of: outside models/ only StopPolicy itself may be used.
PIECES = {"finished_lines", "first_lines", "first_line_only", "END_MARKERS", "StopMatcher"}


def rule_sites(module: str, source: str) -> list[tuple[int, str]]:
    """(line, what) where `source` decides where an answer ends by itself: defines or uses a
    piece of the policy outside models/, or passes a "\\n" stop as a literal."""
    found = []
    outside_models = not module.startswith("mlxd.models")
    for node in ast.walk(parse(source)):
        name = (
            getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", None)
        )
        if outside_models and name in PIECES:
            found.append((node.lineno, name))
        if isinstance(node, ast.alias) and outside_models and node.name in PIECES:
            found.append((node.lineno, node.name))
        if isinstance(node, ast.keyword) and node.arg == "stop":
            consts = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
            if "\n" in consts:
                found.append((node.value.lineno, 'stop="\\n"'))
    return sorted(set(found))


def test_where_an_answer_ends_is_decided_in_the_stop_policy_only() -> None:
    sites = {
        module: found
        for module, path in daemon_modules().items()
        if module != HOME and (found := rule_sites(module, path.read_text()))
    }
    assert sites == {}


@pytest.mark.parametrize(
    ("module", "source", "what"),
    [
        ("mlxd.inline.engine", 'Request(stop=["\\n"] if single else [])', 'stop="\\n"'),
        ("mlxd.router.core", "from ..models import finished_lines", "finished_lines"),
        ("mlxd.inline.postprocess", "END_MARKERS = ('<EOT>',)", "END_MARKERS"),
        ("mlxd.inline.postprocess", "def first_line_only(text): ...", "first_line_only"),
    ],
)
def test_the_check_sees_a_rule_decided_elsewhere(module: str, source: str, what: str) -> None:
    assert [w for _, w in rule_sites(module, source)] == [what]
