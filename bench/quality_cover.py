"""Which prompts the didOpen warm-ups make KV-cache hits, on the quality benchmark's holes.

`python -m bench.quality_cover [--languages python,javascript,lua] [--runs N]`: for each hole
(same seeded holes as `bench quality`), the local backend's prompt at the hole (the full
`inline.context_tokens`, no time cap) against the prompts the daemon warms after didOpen:
the document's top window (Request.window = "top") and the prompt at the document's end. It
prints the share of prompt tokens, and of holes whose whole prompt (but the cursor line's last
few tokens) is a prefix of a warmed one: what the first request after opening finds in the KV
cache once the warm-ups are done. Tokens only: no wall clock, not affected by the load.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .quality import SEED, SOURCES, make_holes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality_cover")
    p.add_argument("--languages", default="python,javascript,lua")
    p.add_argument("--runs", type=int, default=20, help="holes per kind per language")
    p.add_argument("--model", default="smollm2-135m")
    args = p.parse_args(argv)

    from mlxd.backends.local_prompt import fit_window_for, render, top_window
    from mlxd.config import decode
    from mlxd.inline.engine import InlineEngine
    from mlxd.models import load_model
    from mlxd.models.budget import common_prefix as _common_prefix

    lm = load_model(args.model)
    cfg = decode({"inline": {}}).inline
    engine = InlineEngine(cfg, generate=None)  # type: ignore[arg-type]
    budget = cfg.context_tokens

    def tokens(text: str, offset: int, uri: str, language: str, top: bool = False) -> list[int]:
        ctx = engine.context_for(text, offset, uri, language)
        ctx.header = engine._header(ctx, ())
        req = engine._request(ctx)
        if top:
            req = replace(req, window="top")
            return render(lm, req, top_window(lm, req, budget, 0), 0)[0]
        return render(lm, req, fit_window_for(lm, req, budget, 0), 0)[0]

    for lang in [x for x in args.languages.split(",") if x in SOURCES]:
        holes = make_holes(lang, args.runs, SEED)
        total = end_only = both = whole_end = whole_both = 0
        for h in holes:
            uri = f"file:///src/{h.path}"
            cur = tokens(h.text, h.offset, uri, h.language_id)
            end = _common_prefix(cur, tokens(h.text, len(h.text), uri, h.language_id))
            top = _common_prefix(cur, tokens(h.text, len(h.text), uri, h.language_id, True))
            total, end_only, both = total + len(cur), end_only + end, both + max(end, top)
            whole_end += end >= len(cur) - 8
            whole_both += max(end, top) >= len(cur) - 8
        print(
            f"{lang}: {len(holes)} holes, mean prompt {total / len(holes):.0f} tokens; cached "
            f"after the warm-ups: at the end only {end_only / total:.0%} of the tokens, "
            f"{whole_end} whole prompts; top window, then the end {both / total:.0%}, "
            f"{whole_both} whole prompts",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
