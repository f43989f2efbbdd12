"""backends/reuse.py: which prompt a local model gets so that its KV cache is reused (a
character-level tokenizer: one token a character, ids = code points)."""

from __future__ import annotations

from mlxd.backends.reuse import cached_start, continued
from mlxd.models import RecentPrompts


class Chars:
    """A tokenizer with one token per character."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def seen(*sequences: str) -> RecentPrompts:
    return RecentPrompts().plus([ids(s) for s in sequences])


def test_a_continued_answer_takes_the_kept_tokens_then_encodes_the_rest() -> None:
    head = ids("def f():")
    # The engine kept the prompt and a cut answer, split otherwise than encoding would (9999).
    kept = head + ids("  ret") + [9999]
    got = continued(Chars(), head, "  return 1", RecentPrompts().plus([kept]))
    assert got == head + ids("  ret") + ids("urn 1")  # 9999 decodes to no start of the text
    # The longest kept answer wins; another prompt's answer is not taken.
    many = seen("def f():  r", "def f():  retu", "def g():  return 1")
    assert continued(Chars(), head, "  return 1", many) == ids("def f():  return 1")
    assert continued(Chars(), head, "  x", seen()) == ids("def f():  x")


class Words(Chars):
    """Chars, and a few whole-word tokens (as a model may generate them)."""

    WORDS = {1000: "re", 1001: "return"}

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.WORDS.get(t) or chr(t) for t in tokens)


def test_a_healed_prompt_continues_from_the_heal_point() -> None:
    # The job's prompt ended mid-word ("re"): it was sent without that token, and the model
    # typed "re" again as part of a longer token ("return"). The kept sequence differs from
    # the prompt at its last token; the continuation (of "turn 1") is matched from there: it
    # missed from the heal point on, a full prefill of the answer (CI: 285 of 589 reused).
    head = ids("x = ") + [1000]
    kept = ids("x = ") + [1001] + ids(" 1")
    got = continued(Words(), head, "turn 1 + 2", RecentPrompts().plus([kept]))
    assert got == ids("x = ") + [1001] + ids(" 1 + 2")
    # A sequence that has not typed the healed text yet is not taken: the prompt stays whole.
    short = ids("x = ") + [ord("r")]
    assert continued(Words(), head, "turn", RecentPrompts().plus([short])) == head + ids("turn")
    # Nor one that typed something else there (another word).
    other = ids("x = ") + ids("rx")
    assert continued(Words(), head, "turn", RecentPrompts().plus([other])) == head + ids("turn")


class Lines(Chars):
    """Chars, and a line break glued to the next line's indentation (as BPE vocabularies do)."""

    WORDS = {2000: "\n   "}

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.WORDS.get(t) or chr(t) for t in tokens)


def test_an_answer_cut_after_its_healed_line_break_continues_from_the_generated_token() -> None:
    # The prompt ended with a line break, healed: the model typed it again glued to the
    # indentation (one token), and the time cap cut the answer right there ("   " shown). The
    # continuation takes that token, as generated: encoded anew, the prompt would end with a
    # lone line break and the indentation apart (the split healing avoids), and the KV cache
    # would miss it. It tied with encoding anew (one token each) and lost.
    head = ids("if a:\n")
    kept = ids("if a:") + [2000]
    got = continued(Lines(), head, "   ", RecentPrompts().plus([kept]))
    assert got == kept
    assert continued(Lines(), head, "   x", RecentPrompts().plus([kept])) == kept + ids("x")


class Bytes(Chars):
    """One token per UTF-8 byte (ids 0-255), decoded as a byte-level BPE does: a piece of a
    character is U+FFFD."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())

    def decode(self, tokens: list[int]) -> str:
        return bytes(tokens).decode(errors="replace")


def test_a_piece_of_a_character_is_never_taken_for_another() -> None:
    # The prompt ends in 😀 (4 byte tokens); a kept sequence has 😁 there (its last byte
    # differs) and goes on. Both last bytes alone decode to U+FFFD: taken for a heal, the
    # prompt became "x = 😁 = 1" (found by attacking the heal point; a heal never splits a
    # character).
    tok = Bytes()
    head = tok.encode("x = 😀")
    other = tok.encode("x = 😁 = 1")
    got = continued(tok, head, " = 1\n", RecentPrompts().plus([other]))
    assert tok.decode(got) == "x = 😀 = 1\n"
    own = head + tok.encode(" = 1")  # the job's own sequence too: taken, the text unchanged
    got = continued(tok, head, " = 1\n", RecentPrompts().plus([other, own]))
    assert got == head + tok.encode(" = 1\n")
    # An answer with bytes that are no character (a random model's): its text has U+FFFD
    # there, and it goes on from its own tokens, which the KV cache holds (refusing any tail
    # that decodes to U+FFFD re-encoded it: CI, 189 of 372 prompt tokens reused).
    broken = head + [0xF0, 0x9F] + tok.encode("!")
    got = continued(tok, head, "\ufffd!", RecentPrompts().plus([broken]))
    assert got == broken and tok.decode(got) == "x = 😀\ufffd!"


def test_a_wider_window_is_taken_only_when_it_leaves_less_to_prefill() -> None:
    recent = seen("HEADER line1 line2 line3 ")  # the last prompt started at line1
    full = (ids("HEADER line2 line3 line4 "), 8)  # the budget's window starts a line later
    widths = []

    def wider(b: int) -> tuple[list[int], int]:
        widths.append(b)
        return (ids("HEADER line1 line2 line3 line4 "), 8) if b >= 120 else full

    got = cached_start(full, wider, budget=100, limit=1000, recent=recent)
    assert got[0] == ids("HEADER line1 line2 line3 line4 ")
    assert max(widths) == 150  # never more than SLACK (50%) over the budget
    # A window the cache mostly holds is kept as it is: nothing else is tried.
    widths.clear()
    held = seen("HEADER line2 line3 ")  # all but the new line: less than budget // 8 to go
    assert cached_start(full, wider, budget=100, limit=1000, recent=held) == full
    assert widths == []
